"""Distributed PCA."""
from ._pca import PCA, IncrementalPCA

__all__ = ["PCA", "IncrementalPCA"]
