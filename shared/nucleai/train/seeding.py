"""Seeded network construction that leaves the caller's random generators as they were.

Keras draws the seeds of a new layer's initial weights from Python's ``random`` module, so
reproducible initial weights need a seeded ``random`` while the network is built
(``keras.utils.set_random_seed``, which also seeds numpy's global generator and TensorFlow's
global seed); and any network built to predict (a first-pass model, the trained model whose
thresholds are tuned) draws from it too. Training runs inside a host program (CellProfiler, a
notebook) whose own random sequences must not change because a network was trained:
:func:`seeded` and :func:`caller_random_state_kept` restore Python's and numpy's global states
afterwards. TensorFlow's global seed stays set (TensorFlow offers no way to read it back);
everything else in training draws from its own ``numpy.random.Generator``.
"""
import random
from contextlib import contextmanager

import numpy as np

from ..runtime import prepare_tensorflow


@contextmanager
def caller_random_state_kept():
    """On leaving the block, Python's ``random`` and numpy's global generator are back in the
    states they had on entering it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextmanager
def seeded(seed):
    """Within the block, Keras, TensorFlow, Python and numpy are seeded with ``seed``; on leaving
    it, Python's ``random`` and numpy's global generator are back in their earlier states.
    Every training run starts here, so this is where TensorFlow gets the process's settings."""
    prepare_tensorflow()
    import keras

    with caller_random_state_kept():
        keras.utils.set_random_seed(int(seed))
        yield
