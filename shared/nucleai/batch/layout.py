"""The output folder of a batch run: file names, the plan, one folder per slice and its marks.

A slice's folder holds ``output/`` (its default output folder), ``cellprofiler.log``, ``done``
(CellProfiler's done file), ``exit_status`` and, once :func:`nucleai.batch.checks.check_slice`
passed it, ``ok``: what a rerun reads to skip it.
"""
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nucleai

BATCH_FILE = "Batch_data.h5"
PLAN_FILE = "batch_plan.json"
BATCH_PIPELINE = "batch_pipeline.cppipe"
CREATE_LOG = "create_batch.log"
SLICES = "slices"
SLURM_SCRIPT = "slurm_slices.sh"
DEFAULT_PLUGINS = Path(nucleai.__file__).resolve().parents[2] / "plugins"


@dataclass(frozen=True)
class Slice:
    """Image sets ``first`` to ``last`` (1-based, inclusive) of the batch file: one job."""

    index: int
    first: int
    last: int

    @property
    def size(self):
        return self.last - self.first + 1

    def describe(self):
        return f"slice {self.index} (image sets {self.first}-{self.last})"


@dataclass
class Plan:
    """What a batch run is: its inputs' fingerprint, its slices and the modules each must run.

    ``modules`` lists the enabled modules of the batch pipeline as ``(number, name)``; a slice
    passes only if its log shows every one of them run on every image set of the slice.
    """

    key: str
    slices: list
    modules: list
    plugins_dir: str

    def to_json(self):
        return json.dumps({
            "key": self.key, "slices": [[s.index, s.first, s.last] for s in self.slices],
            "modules": self.modules, "plugins_dir": self.plugins_dir,
        }, indent=1)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(key=data["key"], slices=[Slice(*row) for row in data["slices"]],
                   modules=[tuple(row) for row in data["modules"]],
                   plugins_dir=data["plugins_dir"])


def slice_dir(output_dir, piece):
    return output_dir / SLICES / f"slice_{piece.index}"


def reset_slice(output_dir, piece):
    """An empty folder for ``piece`` (what a failed attempt left would be merged otherwise)."""
    folder = slice_dir(output_dir, piece)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "output").mkdir(parents=True)
    return folder


def mark_ok(output_dir, piece):
    (slice_dir(output_dir, piece) / "ok").write_text(f"{piece.first} {piece.last}\n")


def is_ok(output_dir, piece):
    marker = slice_dir(output_dir, piece) / "ok"
    return marker.is_file() and marker.read_text().split() == [str(piece.first), str(piece.last)]


def environment():
    """The environment of every CellProfiler process: ours, unbuffered (logs stay in order)."""
    return dict(os.environ, PYTHONUNBUFFERED="1")
