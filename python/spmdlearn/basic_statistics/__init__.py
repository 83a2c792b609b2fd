"""Distributed basic statistics (min, max, sum, mean, variance, ... of every column)."""
from ._basic_statistics import BasicStatistics, IncrementalBasicStatistics

__all__ = ["BasicStatistics", "IncrementalBasicStatistics"]
