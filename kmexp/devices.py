"""Device placement: thread counts, a ``tf.distribute`` strategy and a precision policy.

Hardware that the user asked for but the machine lacks is an error, never a
silent fallback; ``auto`` picks what exists (one GPU when there is one, else the
CPU: see ``build_device``).

Everything here configures the TensorFlow runtime, which only takes thread
counts, visible devices and GPU memory growth before it initializes (the first
op, ``list_logical_devices``, or a multi-worker / TPU strategy initializes it).
``kmexp.train`` calls ``build_device`` first thing in a job, after seeding only
(which does not initialize the runtime). A later job of a sweep run in the same
process finds the runtime running: settings it cannot change are kept when they
match and are an error when they differ (``_set_threads``).
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf
from omegaconf import DictConfig

from kmexp.config.validation import check_device, raise_problems
from kmexp.errors import DeviceError

log = logging.getLogger(__name__)

# The environment variable MultiWorkerMirroredStrategy reads the cluster from.
TF_CONFIG = "TF_CONFIG"
TF_CONFIG_FORMAT = (
    '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}} '
    "(the same cluster on every worker, each with its own task index)"
)


def build_device(cfg: DictConfig) -> tf.distribute.Strategy:
    """Configure TensorFlow for ``cfg`` (the ``device`` subtree) and return the strategy.

    Must run before TensorFlow initializes its runtime, because thread counts,
    visible devices and GPU memory growth cannot be changed afterwards. The steps
    run in that order: threads, then devices, then the strategy (creating a
    multi-worker or TPU strategy initializes the runtime).
    """
    raise_problems(check_device(cfg))  # the rule validate() applies, for a caller that skipped it
    _set_threads(cfg.intra_op_threads, cfg.inter_op_threads)
    gpus = _usable_gpus(cfg.kind)
    for gpu in gpus:
        _grow_memory(gpu)
    _deterministic_ops_on_cpu()
    keras.config.set_dtype_policy(cfg.precision)
    strategy = _strategy(cfg, len(gpus))
    _reset_gpu_peaks(gpus)
    return strategy


def _strategy(cfg: DictConfig, n_gpus: int) -> tf.distribute.Strategy:
    if cfg.kind == "multi_gpu":
        return mirrored(_mirrored_devices(cfg.devices, n_gpus), cfg.all_reduce)
    if cfg.kind == "multi_worker":
        return _multi_worker()
    if cfg.kind == "tpu":
        return _tpu(cfg.tpu)
    # auto, cpu, gpu: one device. TensorFlow's default strategy places ops on the GPU when there is
    # one, and skips the per-epoch multi-device iterator that OneDeviceStrategy builds (~80 ms an
    # epoch). auto never mirrors over several GPUs on its own: that splits every batch across
    # replicas and needs dense features (see kmexp.config), so it is asked for with device=multi_gpu.
    return tf.distribute.get_strategy()


def _usable_gpus(kind: str) -> list:
    """The physical GPUs this kind trains on: all visible ones, or none for device=cpu."""
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "gpu" and len(gpus) == 0:
        raise DeviceError("device=gpu was requested but no GPU is visible to TensorFlow; use device=cpu or device=auto")
    if kind == "cpu" and len(gpus) > 0:
        _hide_gpus()
        return []
    return gpus


def _mirrored_devices(devices, n_gpus: int) -> list[str]:
    """device=multi_gpu's replicas: every visible GPU (``devices: null``), or the listed devices."""
    if devices is None:
        if n_gpus < 2:
            raise DeviceError(
                f"device=multi_gpu needs at least 2 GPUs but TensorFlow sees {n_gpus}; "
                "use device=gpu (one GPU) or device=cpu"
            )
        return [f"/gpu:{i}" for i in range(n_gpus)]
    devices = [str(name) for name in devices]
    # Listing logical devices initializes the runtime: every setting that must come first is done.
    known = {_short(device.name) for device in tf.config.list_logical_devices()}
    missing = [name for name in devices if _short(name) not in known]
    if len(devices) < 2 or len(missing) > 0:
        raise DeviceError(
            f"device.devices=[{','.join(devices)}] must name at least 2 visible devices"
            f"{'; not visible: ' + ', '.join(missing) if len(missing) > 0 else ''}; "
            f"visible: {', '.join(sorted(known))}"
        )
    return devices


def _short(name: str) -> str:
    """``/job:localhost/replica:0/task:0/device:GPU:1`` and ``/gpu:1`` both as ``gpu:1``."""
    return name.rsplit("/", 1)[-1].lower().removeprefix("device:")


def mirrored(devices: list[str], all_reduce: str) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over ``devices`` (GPUs for device=multi_gpu; the tests use logical CPUs)."""
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=_cross_device_ops(all_reduce))


def _cross_device_ops(all_reduce: str):
    if all_reduce == "nccl":
        return tf.distribute.NcclAllReduce()
    if all_reduce == "hierarchical_copy":
        return tf.distribute.HierarchicalCopyAllReduce()
    if all_reduce == "reduction_to_one":
        return tf.distribute.ReductionToOneDevice()
    return None  # auto: TensorFlow's choice (NCCL between GPUs where it is available)


def _multi_worker() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over the cluster that ``TF_CONFIG`` describes: checked, then refused.

    Keras 3.15's model.fit does not train under MultiWorkerMirroredStrategy: with 2 local
    workers it stops with "Attempt to convert a value (PerReplica...)" while it builds the
    model from the first distributed batch (keras-team/keras#20585). It is refused before
    the strategy exists, because creating it waits for every worker to join (and a worker
    stuck there ignores SIGTERM).
    """
    raw = os.environ.get(TF_CONFIG)
    if raw is None or raw.strip() == "":
        raise DeviceError(
            f"device=multi_worker needs the {TF_CONFIG} environment variable, a JSON cluster spec: {TF_CONFIG_FORMAT}"
        )
    try:
        spec = json.loads(raw)
        workers, task = spec["cluster"]["worker"], spec["task"]
        if not 0 <= int(task["index"]) < len(workers):
            raise ValueError(f"task index {task['index']} is not among the {len(workers)} workers")
    except (ValueError, KeyError, TypeError) as err:
        raise DeviceError(f"{TF_CONFIG} is not a cluster spec ({err}); expected JSON like {TF_CONFIG_FORMAT}") from None
    raise DeviceError(
        "device=multi_worker: Keras 3.15's model.fit cannot train under MultiWorkerMirroredStrategy "
        "(keras-team/keras#20585); train on one machine with device=multi_gpu or device=gpu"
    )


def _tpu(tpu: str) -> tf.distribute.TPUStrategy:
    """TPUStrategy on this TPU VM's chips (``tpu: local``) or on a named TPU / ``grpc://`` address."""
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        # TensorFlow's first sentence says what is missing; the rest lists kernel attributes.
        reason = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeviceError(
            f"device=tpu was requested but no TPU is visible to TensorFlow (device.tpu={tpu}: {reason}); "
            "use device=gpu, device=cpu or device=auto"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def _set_threads(intra_op: int | None, inter_op: int | None) -> None:
    """TensorFlow's thread pools: threads per op (intra) and ops run at once (inter); None keeps TensorFlow's default.

    Only possible before the runtime initializes. Afterwards (a later job of a sweep
    run in one process) the counts already in force are kept when they match, and
    a different count is an error rather than a run with threads it did not ask for.
    """
    for key, value, getter, setter in (
        ("intra_op_threads", intra_op, tf.config.threading.get_intra_op_parallelism_threads,
         tf.config.threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", inter_op, tf.config.threading.get_inter_op_parallelism_threads,
         tf.config.threading.set_inter_op_parallelism_threads),
    ):
        if value is None:
            continue
        try:
            setter(value)
        except RuntimeError:  # the runtime is initialized: only the same count passes
            raise DeviceError(
                f"device.{key}={value} cannot take effect: TensorFlow already runs with {getter()} in this process "
                "(thread counts are fixed when it starts); run each setting in its own process"
            ) from None


def _deterministic_ops_on_cpu() -> None:
    """Deterministic TensorFlow ops when no GPU is visible: the same config and seed give the same numbers.

    Not with a GPU: TensorFlow has no deterministic GPU kernel for sparse-dense matmul (the
    default char_ngram features), so determinism there would stop those runs with an error.
    Which GPUs are visible is fixed once TensorFlow starts, so a process that enabled it
    here (no GPU) never needs it switched off for a later job of the same sweep.
    """
    if not tf.config.get_visible_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


def _hide_gpus() -> None:
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialized its devices in this process
        pass


def _grow_memory(gpu) -> None:
    # Allocate GPU memory as needed instead of all at once, so sweeps can share a card
    # (and the peak recorded in metrics.json is what the run used, not the whole card).
    try:
        tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # already initialized: the setting from the first job stays
        pass


def _reset_gpu_peaks(gpus: list) -> None:
    """Start each GPU's peak-memory counter afresh, so a sweep's later job reports its own peak."""
    for i in range(len(gpus)):
        try:
            tf.config.experimental.reset_memory_stats(f"GPU:{i}")
        except (ValueError, RuntimeError):  # a GPU whose allocator keeps no statistics
            pass


def device_record(strategy: tf.distribute.Strategy) -> dict:
    """What the job ran on, for metrics.json: the strategy, its replicas, precision, threads and peak GPU memory.

    Thread counts of 0 mean TensorFlow's default (about one per core).
    """
    return {
        "strategy": "default" if _is_default(strategy) else type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "devices": _replica_devices(strategy),
        "precision": keras.config.dtype_policy().name,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "gpu_peak_bytes": _gpu_peaks(),
    }


def _replica_devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The devices the replicas run on; for the default strategy, where TensorFlow places ops (GPU 0, else the CPU)."""
    if _is_default(strategy):
        return ["/gpu:0" if len(tf.config.get_visible_devices("GPU")) > 0 else "/cpu:0"]
    return list(strategy.extended.worker_devices)


def _is_default(strategy: tf.distribute.Strategy) -> bool:
    """TensorFlow's default strategy: one device, no replicas (device=auto, cpu and gpu)."""
    return strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()


def _gpu_peaks() -> dict[str, int]:
    """Peak memory TensorFlow allocated on each visible GPU since ``build_device`` (empty without a GPU)."""
    peaks = {}
    for i in range(len(tf.config.get_visible_devices("GPU"))):
        try:
            peaks[f"GPU:{i}"] = int(tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"])
        except (ValueError, RuntimeError):
            pass
    return peaks
