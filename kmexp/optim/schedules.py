"""Learning-rate schedules that need the run's length, and the optimizers built on them.

Fine-tuning a pretrained backbone wants the usual recipe: the rate climbs
linearly from 0 to its peak over the first ``warmup_fraction`` of the steps, then
falls linearly to 0 at the last step. The number of steps is only known once the
data is loaded, so such an optimizer is a partial in conf/ (``_partial_: true``),
and ``kmexp.builders.build_optimizer`` completes it with ``total_steps``.
"""

from __future__ import annotations

import keras

from kmexp.config.validation import check_interval, check_positive, raise_problems


@keras.saving.register_keras_serializable(package="kmexp")
class LinearWarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> ``peak`` linearly over ``warmup_steps``, then ``peak`` -> 0 linearly at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), 1)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0  # the first update already uses a rate above 0
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        rising = self.peak * step / warmup
        falling = self.peak * keras.ops.maximum(self.total_steps - step, 0.0) / max(self.total_steps - self.warmup_steps, 1)
        return keras.ops.where(step <= self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def warmup_adamw(
    learning_rate: float,
    warmup_fraction: float,
    weight_decay: float,
    beta_1: float,
    beta_2: float,
    total_steps: int,
    gradient_accumulation_steps: int | None = None,
) -> keras.optimizers.AdamW:
    """AdamW whose rate warms up over ``warmup_fraction`` of ``total_steps``, then decays linearly to 0.

    ``gradient_accumulation_steps`` is Keras' own (``trainer.gradient_accumulation_steps``; None: off).
    """
    raise_problems([
        *check_positive("optimizer.learning_rate", learning_rate),
        *check_interval("optimizer.warmup_fraction", warmup_fraction, 0, 1),
    ])
    schedule = LinearWarmupDecay(learning_rate, round(warmup_fraction * total_steps), total_steps)
    return keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
