"""Distributed empirical covariance."""
from ._empirical import EmpiricalCovariance, IncrementalEmpiricalCovariance

__all__ = ["EmpiricalCovariance", "IncrementalEmpiricalCovariance"]
