"""Optimizers that Keras does not provide."""

from kmexp.optim.lbfgs import LBFGS

__all__ = ["LBFGS"]
