"""Distributed linear models: LinearRegression, Ridge, their incremental forms, LogisticRegression."""
from ._linear import IncrementalLinearRegression, IncrementalRidge, LinearRegression, Ridge
from ._logistic import LogisticRegression

__all__ = [
    "LinearRegression", "Ridge", "IncrementalLinearRegression", "IncrementalRidge",
    "LogisticRegression",
]
