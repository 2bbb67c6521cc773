"""pesfit: permutation-invariant global potential energy surface fits."""

__version__ = "0.1.0"
