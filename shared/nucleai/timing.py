"""Per-stage wall-clock accounting, shared by every operation that reports ``timings``."""
import time
from contextlib import contextmanager


@contextmanager
def timed(timings, key):
    """Add the seconds spent in the ``with`` block to ``timings[key]`` (no-op for ``None``).

    Operations take an optional ``timings`` dict so benchmarks and ``--timings`` can see where the
    time goes without a profiler; passing ``None`` costs one ``perf_counter`` call.
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
