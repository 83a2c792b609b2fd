"""Distributed PCA."""
from ._pca import PCA

__all__ = ["PCA"]
