"""Checks shared by the options objects of every operation.

Each backend operation takes one frozen dataclass of options (``SegmentOptions``,
``TTAOptions``, ``MergeOptions``, ``RefineOptions``, ``TrainOptions``, ``EvaluateOptions``) that
checks itself once, in ``__post_init__``, and raises :class:`~nucleai.errors.InputError` with the
name of the field at fault. The command line maps fields to flags and the CellProfiler modules map
them to settings, so a range or a choice is written down once, here or in the dataclass, and the
message a user reads is the same everywhere.
"""
import math
import numbers

from .errors import InputError


def check_number(value, field, *, low=None, high=None, low_open=False, high_open=False, integer=False):
    """``value`` as a float (or int with ``integer``), inside the given bounds.

    Parameters
    ----------
    value : number
    field : str
        The options field, named in the message and carried by the error.
    low, high : number, optional
        Bounds; inclusive unless ``low_open`` / ``high_open``.
    integer : bool
        Require a whole number and return an ``int``.

    Raises
    ------
    InputError
        For a non-number (booleans included), NaN or infinity, a fraction where a whole number is
        required, or a value outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{field} must be a finite number, got {value!r}", field)
    if integer:
        if value != int(value):
            raise InputError(f"{field} must be a whole number, got {value!r}", field)
        value = int(value)
    else:
        value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise InputError(f"{field} must be {_range_text(low, high, low_open, high_open)}, got {value!r}", field)
    return value


def check_choice(value, field, choices):
    """``value`` if it is one of ``choices``, else an :class:`InputError` listing them."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise InputError(f"{field} must be one of {listed}, got {value!r}", field)
    return value


def _range_text(low, high, low_open, high_open):
    if low is not None and high is not None:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        return f"in {left}{low}, {high}{right}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low}"
    return f"{'below' if high_open else 'at most'} {high}"
