"""Compiled networks kept across the jobs of one process, so that a job can reuse an earlier job's traced train step.

Keras traces a model's train step the first time the model fits, and a new model
means a new trace: every job of an in-process sweep paid for one, a sizeable
part of a short job (benchmarks/results/sweep_throughput.md). A job whose
network has the same layers, input shape, optimizer, loss and compile settings
as a kept one trains the kept network instead. Before it does, the kept
network's variables take the values of the job's own freshly built network,
and the kept optimizer's those of the job's own optimizer, freshly built: the
same seed gives the same initial values, so a job's numbers are the same
whether its network was kept or new (tests/test_kept_networks.py).

Bag encoders round their feature count (``round_features``) so that the
languages of a sweep share a few input shapes.
"""

from __future__ import annotations

import functools
import json
import math
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf

from kmexp import compat

# Networks kept per process, the most recently used first. Each holds its variables, its optimizer's
# slots and its traced step. A network with new shapes replaces the least recently used one: a
# 205-language sweep needs a few more than this (docs/benchmarks.md), so a few jobs trace again.
KEPT_NETWORKS = 8


class KeptNetworks:
    """At most ``size`` compiled networks, each reused by the next job whose network matches it."""

    def __init__(self, size: int = KEPT_NETWORKS):
        self.size = size
        self._kept: OrderedDict[str, keras.Model] = OrderedDict()
        self.reused = 0  # jobs that trained a kept network

    def __len__(self) -> int:
        """Networks kept now: their memory (variables, optimizer slots, traced steps) stays with the process."""
        return len(self._kept)

    def variable_bytes(self) -> int:
        """Bytes the kept networks' variables and optimizer slots hold: most of their memory, which grows with
        their input width (a bag encoder's feature count), so a wide network replacing a narrow one grows it."""
        networks = self._kept.values()
        variables = (v for network in networks for v in [*network.variables, *network.optimizer.variables])
        return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)

    def compiled(self, network: keras.Model, optimizer, loss, *, jit_compile: bool, steps_per_execution: int) -> keras.Model:
        """``network`` compiled for ``model.fit``, or a kept network in the state ``network`` and ``optimizer`` start in."""
        key = _signature(network, optimizer, loss, jit_compile, steps_per_execution)
        kept = self._kept.pop(key, None)
        if kept is None:
            network.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile, steps_per_execution=steps_per_execution)
            kept = network
        else:
            _start_as(kept, network, optimizer)
            self.reused += 1
        self._kept[key] = kept
        self._kept.move_to_end(key, last=False)
        while len(self._kept) > self.size:
            self._kept.popitem()
        return kept


@functools.cache
def process_networks() -> KeptNetworks:
    """The kept networks of this process, which the jobs of an in-process sweep (or a joblib worker) share."""
    return KeptNetworks()


def _signature(network: keras.Model, optimizer, loss, jit_compile: bool, steps_per_execution: int) -> str:
    """Everything a traced train step depends on. Only networks of the default (one-device) strategy are
    kept: each job builds its own multi-device strategy, whose variables are its own."""
    if network.distribute_strategy is not tf.distribute.get_strategy():
        return f"not kept: {id(network)}"
    return json.dumps(
        {
            "network": network.get_config(),
            "input": [list(spec.shape) + [spec.dtype, spec.sparse] for spec in network.inputs],
            "optimizer": [type(optimizer).__qualname__, keras.optimizers.serialize(optimizer)],
            "loss": keras.losses.serialize(loss),
            "jit_compile": jit_compile,
            "steps_per_execution": steps_per_execution,
        },
        sort_keys=True,
        default=repr,
    )


def _start_as(kept: keras.Model, fresh: keras.Model, optimizer) -> None:
    """Give ``kept`` and its optimizer the state that ``fresh`` and ``optimizer`` (not yet built) start in."""
    for variable, value in zip(kept.variables, fresh.variables, strict=True):
        variable.assign(value)
    optimizer.build(fresh.trainable_variables)
    for variable, value in zip(kept.optimizer.variables, optimizer.variables, strict=True):
        variable.assign(value)
    compat.set_initial_epoch(kept, None)  # a resumed job left its starting epoch on the model


def with_values_of(trained: keras.Model, network: keras.Model) -> keras.Model:
    """``network`` holding ``trained``'s values (the same network when they are one): what a job exports."""
    if network is not trained:
        for variable, value in zip(network.variables, trained.variables, strict=True):
            variable.assign(value)
    return network
