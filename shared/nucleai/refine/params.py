"""The six refinement parameters p1 ... p6: names, published values, limits, and ``refine.json``.

nucleAIzer (Hollandi et al. 2020) tuned its rules on the DSB data with a genetic algorithm and
published p1 0.17, p2 44, p3 0.9375, p4 1, p5 1, p6 0.8. A refinement model folder stores the
values tuned for its U-Net in ``refine.json`` (``nucleai refine --tune``); a folder without that
file uses the published values. Everything that reads or writes the parameters goes through
:func:`check_parameter` (the options of a refinement too), so a hand-edited ``refine.json`` with a
value out of range is refused with the file and the parameter named, before any image is
processed, and a range is written down once, in :data:`LIMITS`.
"""
import json
from pathlib import Path

from ..errors import InputError
from ..options import check_number

NAMES = ("p1", "p2", "p3", "p4", "p5", "p6")

#: The values published with nucleAIzer (tuned on DSB 2018 by a genetic algorithm).
PUBLISHED = {"p1": 0.17, "p2": 44, "p3": 0.9375, "p4": 1, "p5": 1, "p6": 0.8}

#: What each parameter does, in the order the rules run (for help texts and error messages).
DESCRIPTIONS = {
    "p1": "merge an object into a neighbour touching more than this fraction of its contour",
    "p2": "remove objects smaller than this many pixels",
    "p3": "threshold of the U-Net probability map for the contour move",
    "p4": "pixels a contour may move inwards",
    "p5": "pixels a contour may move outwards",
    "p6": "remove objects whose mean U-Net probability is below this",
}

#: Parameters that are whole numbers (pixel counts and distances).
INTEGERS = ("p2", "p4", "p5")

#: Largest contour band (p4, p5) accepted: a wider band is no longer a correction of a contour.
MAX_BAND = 10

#: Inclusive limits per parameter (None: unbounded): the one definition of the valid ranges, used
#: for refine.json, the options of :class:`nucleai.refine.apply.RefineOptions`, the CLI's
#: ``--p1`` ... ``--p6`` and the module's settings.
LIMITS = {
    "p1": (0.0, 1.0),
    "p2": (0, None),
    "p3": (0.0, 1.0),
    "p4": (0, MAX_BAND),
    "p5": (0, MAX_BAND),
    "p6": (0.0, 1.0),
}

PARAMETERS_FILE = "refine.json"


def check_parameter(name, value):
    """One parameter checked against :data:`LIMITS`: an int for p2, p4, p5, else a float.

    Raises
    ------
    InputError
        With ``field`` = ``name``, for a non-number, a fraction where a whole number is needed,
        or a value out of range.
    """
    low, high = LIMITS[name]
    return check_number(value, name, low=low, high=high, integer=name in INTEGERS)


def check_parameters(values, source="refinement parameters"):
    """A complete, validated parameter dict (missing keys from :data:`PUBLISHED`).

    Parameters
    ----------
    values : mapping
        Any subset of p1 ... p6; other keys are refused (a typo like ``P1`` must not be ignored
        silently).
    source : str
        Named in error messages (a file, a setting).

    Returns
    -------
    dict
        p1, p3, p6 as float; p2, p4, p5 as int.

    Raises
    ------
    InputError
        For an unknown key or a value :func:`check_parameter` refuses; the message names
        ``source`` and the parameter, and what it does.
    """
    unknown = sorted(set(values) - set(NAMES))
    if unknown:
        raise InputError(f"{source}: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(NAMES)}")
    result = {}
    for name in NAMES:
        try:
            result[name] = check_parameter(name, values.get(name, PUBLISHED[name]))
        except InputError as error:
            raise InputError(f"{source}: {error} ({name}: {DESCRIPTIONS[name]})") from None
    return result


def read_parameters(folder):
    """The parameters stored in a model folder's ``refine.json``, or the published ones.

    Returns
    -------
    params : dict
        Validated (see :func:`check_parameters`).
    source : str
        ``"refine.json"`` or ``"published"``.
    """
    path = Path(folder) / PARAMETERS_FILE
    if not path.is_file():
        return dict(PUBLISHED), "published"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot be read as JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
        raise InputError(f"{path}: expected an object with a 'parameters' object holding p1 ... p6")
    return check_parameters(data["parameters"], source=str(path)), PARAMETERS_FILE


def write_parameters(folder, params, record=None):
    """Store tuned parameters in ``folder/refine.json``; returns the file's path.

    Parameters
    ----------
    folder : path-like
        The refinement model folder (must exist).
    params : mapping
        p1 ... p6 (validated here).
    record : dict, optional
        How they were found (optimiser, images, scores), stored beside them under ``"tuning"``
        so the model card can be checked against the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder {folder} does not exist")
    data = {"parameters": check_parameters(params, source="tuned parameters")}
    if record:
        data["tuning"] = record
    path = folder / PARAMETERS_FILE
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
