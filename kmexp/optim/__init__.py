"""Optimizers that Keras does not provide."""

from kmexp.optim.lbfgs import LBFGS
from kmexp.optim.schedules import LinearWarmupDecay, warmup_adamw

__all__ = ["LBFGS", "LinearWarmupDecay", "warmup_adamw"]
