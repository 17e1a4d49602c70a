"""What a batch run is: its inputs' fingerprint, its slices, and the plan a rerun resumes."""
import hashlib
import json
import re
import sys
from pathlib import Path

from ..errors import InputError
from .batchfile import batch_units, write_batch_file
from .layout import BATCH_FILE, BATCH_PIPELINE, CREATE_LOG, DEFAULT_PLUGINS, PLAN_FILE, Plan, Slice


def fingerprint(pipeline, images, file_list, mappings, n_slices):
    """A key for the inputs of a batch run: equal keys mean a run can resume another's slices.

    The pipeline's text, the input files (names, sizes and modification times), the path
    mappings and the number of slices all enter it.
    """
    digest = hashlib.sha256(Path(pipeline).read_bytes())
    if file_list is not None:
        digest.update(Path(file_list).read_bytes())
        names = [line.strip() for line in Path(file_list).read_text().splitlines() if line.strip()]
        paths = [Path(name) for name in names if not re.match(r"^\w{2,}://", name)]
    else:
        paths = sorted(path for path in Path(images).rglob("*") if path.is_file())
    for path in paths:
        stat = path.stat() if path.exists() else None
        digest.update(f"{path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps([list(pair) for pair in mappings]).encode())
    digest.update(str(n_slices).encode())
    return digest.hexdigest()


def plan_slices(units, n_slices):
    """Cut ``units`` (contiguous ``(first, last)`` ranges) into at most ``n_slices`` slices.

    Slices hold whole units and about equal numbers of image sets; there are fewer slices than
    asked when there are fewer units.

    Returns
    -------
    list of Slice
    """
    total = sum(last - first + 1 for first, last in units)
    n_slices = min(n_slices, len(units))
    slices, start, done = [], 0, 0
    for position, (first, last) in enumerate(units):
        done += last - first + 1
        units_left = len(units) - position - 1
        slices_left = n_slices - len(slices) - 1
        if units_left == 0 or (slices_left > 0 and (done >= total * (len(slices) + 1) / n_slices
                                                     or units_left == slices_left)):
            slices.append(Slice(len(slices) + 1, units[start][0], last))
            start = position + 1
    return slices


def prepare(pipeline, output_dir, images=None, file_list=None, mappings=(), n_slices=1,
            plugins_dir=DEFAULT_PLUGINS, stream=sys.stderr):
    """The run's plan: the existing one when ``output_dir`` holds a run of the same inputs,
    else a new batch file and slicing.

    Raises
    ------
    InputError
        If ``output_dir`` holds a batch run of other inputs, or files that are not one, or the
        batch file has no image sets.
    """
    key = fingerprint(pipeline, images, file_list, mappings, n_slices)
    plan_file = output_dir / PLAN_FILE
    if plan_file.is_file():
        plan = Plan.from_json(plan_file.read_text())
        if plan.key == key and (output_dir / BATCH_FILE).is_file():
            return plan
        raise InputError(f"--output {output_dir} holds a batch run of other inputs (pipeline, "
                         "images, path mappings or --slices differ); use a new folder")
    own = {BATCH_PIPELINE, CREATE_LOG, BATCH_FILE}  # what a failed attempt to write it leaves
    if output_dir.is_dir() and any(path.name not in own for path in output_dir.iterdir()):
        raise InputError(f"--output {output_dir} is not empty and holds no batch run; "
                         "use a new folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"nucleai batch: writing {output_dir / BATCH_FILE}", file=stream, flush=True)
    modules = write_batch_file(pipeline, output_dir, images, file_list, mappings, plugins_dir)
    units = batch_units(output_dir / BATCH_FILE)
    if not units:
        raise InputError(f"the batch file has no image sets: the pipeline's input modules "
                         f"matched no files in {images or file_list}")
    plan = Plan(key=key, slices=plan_slices(units, n_slices), modules=modules,
                plugins_dir=str(Path(plugins_dir).resolve()))
    plan_file.write_text(plan.to_json())
    return plan
