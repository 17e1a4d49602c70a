"""nucleai: the backend of the nucleai CellProfiler plugins.

Plain functions on numpy arrays for star-convex nucleus detection and the nucleAIzer methods.
Nothing here imports CellProfiler; the plugin modules in ``plugins/`` only wire these functions.
"""
from ._version import __version__

__all__ = ["__version__"]
