"""Process-level settings for TensorFlow, in one place.

Everything that imports TensorFlow calls :func:`quiet_tensorflow` first, so its C++ start-up
chatter stays off a CellProfiler user's console unless they set ``TF_CPP_MIN_LOG_LEVEL``
themselves.
"""
import os


def quiet_tensorflow():
    """Keep TensorFlow's C++ log below warnings unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
