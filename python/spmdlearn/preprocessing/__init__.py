"""Distributed scalers: fit / partial_fit collective, transform local."""
from ._scalers import MaxAbsScaler, StandardScaler

__all__ = ["StandardScaler", "MaxAbsScaler"]
