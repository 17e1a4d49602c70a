"""Which run a model folder holds: its settings and a fingerprint of its data, so that only the
same run is resumed.

Training resumes a folder that holds a checkpoint (:data:`nucleai.train.loop.STATE_FILE`). A
checkpoint of another run (other images, seed, patch size, ...) would make the best validation
loss compare different validation sets and the model card record only the last command, so the
first call of a run writes :data:`RECORD_FILE` with the settings and, per image, a digest of
its pixels and labels; a later call compares its own and refuses, saying what differs.
``epochs`` and ``minutes`` may change between the calls of one run (a budget per call; raising
the maximum continues a finished run).
"""
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models import CONFIG_FILE, METADATA_FILE, THRESHOLDS_FILE
from . import card, loop
from .styletransfer import STYLES_DIR

RECORD_FILE = "training_run.json"
#: Options that may differ between the calls of one run.
PER_CALL = ("minutes", "epochs")
#: What a run writes into its model folder (all of it is removed to start afresh).
RUN_FILES = (loop.STATE_FILE, loop.BEST_WEIGHTS, loop.LAST_WEIGHTS, loop.OPTIMIZER_FILE, loop.LOSS_CURVE,
             CONFIG_FILE, THRESHOLDS_FILE, METADATA_FILE, card.CARD_FILE, RECORD_FILE)
#: Options that only style augmentation uses (not part of a run without it).
STYLE_ONLY = ("n_styles", "min_per_style", "pairs_per_style", "synthetic_share", "generator_minutes",
              "generator_size")
#: Roles of the images in the data fingerprint, as the messages name them.
ROLES = ("training", "validation", "unannotated")


def has_checkpoint(out):
    """Whether ``out`` holds a run trained here (resumable, or finished)."""
    return (Path(out) / loop.STATE_FILE).is_file()


def run_settings(options, base=None, first_pass=None):
    """The settings that make a run itself: ``options`` but :data:`PER_CALL` (and
    :data:`STYLE_ONLY` without style augmentation), and the models."""
    unused = PER_CALL + (() if options.style else STYLE_ONLY)
    settings = {key: value for key, value in dataclasses.asdict(options).items() if key not in unused}
    settings["patch_size"] = list(options.patch_size)
    settings["base"] = None if base is None else str(base)
    settings["first_pass"] = None if first_pass is None or not options.style else str(first_pass)
    return settings


def _digest(sample):
    hashed = hashlib.sha256()
    for array in (sample.image, sample.labels):
        if array is not None:
            array = np.ascontiguousarray(array)
            hashed.update(f"{array.dtype.str}{array.shape}".encode())
            hashed.update(array.tobytes())
    return hashed.hexdigest()[:16]


def data_fingerprint(train, val, unlabeled):
    """Role -> {image name: digest of its pixels and labels}."""
    return {role: {sample.name: _digest(sample) for sample in samples}
            for role, samples in zip(ROLES, (train, val, unlabeled))}


def _read(out):
    path = Path(out) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot be read ({error})", "resume") from None


def _refuse(out, what):
    raise InputError(f"{out} holds a checkpoint of another training run ({what}); resume it with the same "
                     "settings and images, or start afresh", "resume")


def check_settings(out, settings):
    """Raise InputError (field ``resume``) when ``out`` holds a checkpoint of a run with other
    ``settings`` (:func:`run_settings`), or one without a record."""
    if not has_checkpoint(out):
        return
    record = _read(out)
    if record is None:
        _refuse(out, f"it has no {RECORD_FILE} saying which")
    stored = record.get("settings", {})
    changed = [f"{key} {_shown(stored.get(key))} -> {_shown(settings.get(key))}"
               for key in sorted(set(stored) | set(settings)) if stored.get(key) != settings.get(key)]
    if changed:
        _refuse(out, "settings differ: " + ", ".join(changed))


def check_data(out, fingerprint):
    """Raise InputError (field ``resume``) when ``out`` holds a checkpoint of a run on other images."""
    if not has_checkpoint(out):
        return
    stored = (_read(out) or {}).get("data", {})
    changes = []
    for role in ROLES:
        before, now = stored.get(role, {}), fingerprint.get(role, {})
        for word, names in (("added", sorted(set(now) - set(before))), ("removed", sorted(set(before) - set(now))),
                            ("changed", sorted(n for n in set(now) & set(before) if now[n] != before[n]))):
            if names:
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                changes.append(f"{role} images {word}: {', '.join(names[:3])}{more}")
    if changes:
        _refuse(out, "; ".join(changes))


def write_record(out, settings, fingerprint):
    """Record the run a new checkpoint in ``out`` belongs to (before its first epoch)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{RECORD_FILE}.partial"
    partial.write_text(json.dumps({"settings": settings, "data": fingerprint}, indent=1))
    partial.replace(out / RECORD_FILE)


def clear_run(out):
    """Remove what an earlier run wrote into ``out`` (checkpoints, model, card, styles), and
    nothing else, so that a run starts afresh there."""
    out = Path(out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if (out / STYLES_DIR).is_dir():
        shutil.rmtree(out / STYLES_DIR)


def _shown(value):
    return "none" if value is None else str(value)
