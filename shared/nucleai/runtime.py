"""Process-level settings for TensorFlow and the worker's threads, in one place.

Everything that runs a network calls :func:`prepare_tensorflow` instead of importing TensorFlow
itself, so three things hold in every process (a CellProfiler worker, ``nucleai`` on the command
line, a training run):

- TensorFlow's C++ start-up chatter stays off a user's console unless they set
  ``TF_CPP_MIN_LOG_LEVEL`` themselves;
- ``NUCLEAI_THREADS=n`` bounds the threads one worker computes with (TensorFlow's intra-op pool
  to ``n``, its inter-op pool to 1, and our OpenMP NMS to ``n``), so a screening node running
  several CellProfiler workers does not oversubscribe its cores;
- a GPU memory limit per worker (:func:`limit_gpu_memory`, the modules' "GPU memory per worker"
  setting, ``NUCLEAI_GPU_MEMORY_MB``) is applied before TensorFlow claims the GPU, so several
  workers can share one card.

These are process-wide by nature (TensorFlow fixes them when it starts), which is why they live
here and nowhere else.
"""
import contextlib
import functools
import logging
import os
from typing import NamedTuple

from .errors import InputError

THREADS_VARIABLE = "NUCLEAI_THREADS"
GPU_MEMORY_VARIABLE = "NUCLEAI_GPU_MEMORY_MB"

logger = logging.getLogger(__name__)

#: What has been applied to this process's TensorFlow: {"threads": n, "gpu_memory_mb": m}.
_applied = {}


def _whole_number(text, name, minimum):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {text!r}", name)
    return value


def worker_threads(environ=None):
    """The thread bound ``NUCLEAI_THREADS`` asks for, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(THREADS_VARIABLE, "").strip()
    return _whole_number(text, THREADS_VARIABLE, 1) if text else None


def gpu_memory_from_environment(environ=None):
    """``NUCLEAI_GPU_MEMORY_MB`` in megabytes, or None when unset or empty (0 = no limit)."""
    text = (os.environ if environ is None else environ).get(GPU_MEMORY_VARIABLE, "").strip()
    return _whole_number(text, GPU_MEMORY_VARIABLE, 0) if text else None


def prepare_tensorflow():
    """Import TensorFlow with this process's settings applied once; returns the module.

    Raises
    ------
    InputError
        ``NUCLEAI_THREADS`` or ``NUCLEAI_GPU_MEMORY_MB`` is not a whole number in range.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = worker_threads()
    gpu_memory = gpu_memory_from_environment()
    import tensorflow as tf

    if threads is not None and "threads" not in _applied:
        _apply_threads(tf, threads)
    if gpu_memory is not None and "gpu_memory_mb" not in _applied:
        limit_gpu_memory(gpu_memory)
    return tf


def _apply_threads(tf, threads):
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # something else in this process started TensorFlow first
        logger.warning("%s=%d not applied: TensorFlow was already running in this process",
                       THREADS_VARIABLE, threads)
    else:
        logger.info("TensorFlow limited to %d thread(s) per operation (%s)", threads,
                    THREADS_VARIABLE)
    _applied["threads"] = threads


def limit_gpu_memory(megabytes, field=GPU_MEMORY_VARIABLE):
    """Cap the GPU memory this process's TensorFlow may take, in megabytes (0: no cap, memory
    grows as needed instead of TensorFlow claiming the whole card at start).

    A no-op on a machine without a GPU. TensorFlow fixes its GPU set-up when it first uses the
    GPU, so a different cap later in the same process is refused (``InputError`` with
    ``field``), never silently ignored.
    """
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 0:
        raise InputError(f"{field} must be a whole number of megabytes >= 0, got {megabytes!r}",
                         field)
    if _applied.get("gpu_memory_mb") == megabytes:
        return
    if "gpu_memory_mb" in _applied:
        raise InputError(
            f"{field}: this process already runs TensorFlow with a GPU memory cap of "
            f"{_applied['gpu_memory_mb']} MB; a different cap ({megabytes} MB) needs a new "
            "process (restart CellProfiler or use one value in the whole pipeline)", field)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        for gpu in gpus:
            if megabytes:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=megabytes)])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as error:  # the GPU was initialised before this call
        raise InputError(
            f"{field}: TensorFlow already started on the GPU in this process, so its memory "
            f"cap cannot be set any more ({error}); set it before the first model loads", field
        ) from error
    _applied["gpu_memory_mb"] = megabytes
    if gpus:
        logger.info("GPU memory per worker: %s on %d GPU(s)",
                    f"{megabytes} MB" if megabytes else "grows as needed", len(gpus))


# --------------------------------------------------------------------------------------------
# Precision of the networks

#: What a user may ask for: ``auto`` is bfloat16 where the hardware computes it natively.
FLOAT32, BFLOAT16, AUTO = "float32", "bfloat16", "auto"
PRECISIONS = (AUTO, FLOAT32, BFLOAT16)
#: CPU flags (Linux ``/proc/cpuinfo``) of native bfloat16 arithmetic: Intel AMX and AVX512-BF16
#: (also AMD Zen 4 and later). Without them TensorFlow emulates bfloat16, slower than float32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: NVIDIA GPUs compute bfloat16 natively from compute capability 8.0 (Ampere) on.
BF16_GPU_CAPABILITY = (8, 0)


class Precision(NamedTuple):
    """The precision a network runs in (``name``: float32 or bfloat16) and why (``reason``)."""

    name: str
    reason: str

    def __str__(self):
        return f"{self.name} ({self.reason})"


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (empty where the file does not exist, e.g. off Linux)."""
    try:
        text = open(path).read()
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split())


def _gpu_capabilities():
    tf = prepare_tensorflow()
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def native_bfloat16(flags=None, gpu_capabilities=None):
    """Whether this machine computes bfloat16 natively, and the evidence, as (bool, text).

    The GPU decides when TensorFlow sees one (it runs the networks there); otherwise the CPU's
    flags. ``flags`` and ``gpu_capabilities`` default to this machine's; with neither given
    the answer is this machine's, read once per process (every model load and image set asks).
    """
    if flags is None and gpu_capabilities is None:
        return _this_machine_bfloat16()
    gpus = _gpu_capabilities() if gpu_capabilities is None else gpu_capabilities
    if gpus:
        capability = min(gpus)
        native = capability >= BF16_GPU_CAPABILITY
        return native, f"GPU compute capability {capability[0]}.{capability[1]}"
    found = [flag for flag in BF16_CPU_FLAGS if flag in (cpu_flags() if flags is None else flags)]
    return bool(found), ("CPU has " + ", ".join(found)) if found else "CPU has no AMX or AVX512-BF16"


@functools.lru_cache(maxsize=None)
def _this_machine_bfloat16():
    return native_bfloat16(cpu_flags(), _gpu_capabilities())


def resolve_precision(requested, field="precision", native=None):
    """The :class:`Precision` to run a network in for a user's choice (:data:`PRECISIONS`).

    ``auto`` is bfloat16 only where :func:`native_bfloat16` finds the hardware for it (emulated
    bfloat16 is slower than float32 and no more accurate); an explicit choice is kept. ``native``
    is the (bool, evidence) of :func:`native_bfloat16`, computed when not given.

    Raises
    ------
    InputError
        ``requested`` is not one of :data:`PRECISIONS` (naming ``field``).
    """
    if requested not in PRECISIONS:
        raise InputError(f"{field} must be one of {', '.join(PRECISIONS)}, got {requested!r}", field)
    if requested != AUTO:
        return Precision(requested, "chosen")
    has_native, evidence = native_bfloat16() if native is None else native
    return Precision(BFLOAT16 if has_native else FLOAT32, f"auto: {evidence}")


@contextlib.contextmanager
def dtype_policy(precision):
    """Keras layers built inside compute in ``precision`` (float32, or bfloat16 with float32
    weights: Keras' ``mixed_bfloat16``); the global policy is restored afterwards, so nothing
    built elsewhere changes."""
    if precision not in (FLOAT32, BFLOAT16):
        raise ValueError(f"precision must be {FLOAT32} or {BFLOAT16}, got {precision!r}")
    prepare_tensorflow()
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == BFLOAT16 else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
