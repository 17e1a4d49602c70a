"""Run this repo's plugins in real CellProfiler: a whole pipeline headless, or one module in process.

Every module's integration test goes through :func:`run_pipeline`: it starts
``python -m cellprofiler -c -r`` in a subprocess (exactly what a user's batch run does, with
``--plugins-directory plugins``), then reads back the CSV tables the pipeline's
ExportToSpreadsheet wrote and lists the other files in the output folder.

Headless CellProfiler keeps going (and may exit 0) after a module raises, so a run only counts
as successful when the exit code is 0 *and* the log and the Image table show no module error.

The in-process tests go through :func:`run_module`: one module, run on one image set in a
workspace built as CellProfiler's own module tests build it (``conftest.py`` has already set
CellProfiler headless with ``plugins/`` as its plugin folder).
"""
import csv
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cellprofiler_core.image import Image, ImageSetList
from cellprofiler_core.measurement import Measurements
from cellprofiler_core.object import Objects, ObjectSet
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.workspace import Workspace

from testdata import PLUGINS, REPO

MODULE_ERROR_MARK = "Error detected during run of module"


class PipelineFailed(AssertionError):
    """The pipeline did not run cleanly; the message carries the end of CellProfiler's log."""


@dataclass
class PipelineRun:
    """What one headless run produced.

    ``tables`` maps each CSV's stem (``Image``, ``Experiment``, one per object set) to its rows,
    each row a dict of column name -> string value as ExportToSpreadsheet wrote it.
    """

    output_dir: Path
    log: str
    tables: dict = field(default_factory=dict)

    def column(self, table, name):
        """One column of a table as a float array (``NaN`` where CellProfiler wrote ``NaN``)."""
        rows = self.tables[table]
        if rows and name not in rows[0]:
            raise KeyError(f"{table}.csv has no column {name!r}; it has {sorted(rows[0])}")
        return np.array([float(row[name]) for row in rows])

    def files(self, pattern="*"):
        """Files the pipeline wrote to its output folder, sorted by name."""
        return sorted(self.output_dir.glob(pattern))


def java_home():
    """The JDK the Java bridge needs, found by the same script the install step uses."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "find_java_home.sh")], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise RuntimeError("no JDK found; see scripts/find_java_home.sh")
    return found.stdout.strip()


def run_pipeline(pipeline, input_dir, output_dir, plugins_dir=PLUGINS, timeout=1200):
    """Run ``pipeline`` (a .cppipe path) headless on every file under ``input_dir``.

    Parameters
    ----------
    pipeline, input_dir, output_dir : path-like
        The pipeline file, the folder whose files form the file list (``-i``), and the default
        output folder (``-o``, created if missing).
    plugins_dir : path-like
        Passed as ``--plugins-directory``; this repo's ``plugins/`` by default.
    timeout : float
        Seconds before the run is killed and the test fails.

    Returns
    -------
    PipelineRun

    Raises
    ------
    PipelineFailed
        On a non-zero exit code, a module error in the log or a non-zero ``ModuleError_*``
        measurement.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "cellprofiler", "-c", "-r",
        "-p", str(pipeline), "-i", str(input_dir), "-o", str(output_dir),
        "--plugins-directory", str(plugins_dir), "--log-level", "INFO",
    ]
    env = dict(os.environ, JAVA_HOME=java_home(), PYTHONUNBUFFERED="1")
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=output_dir
    )
    log = completed.stdout + completed.stderr
    run = PipelineRun(output_dir=output_dir, log=log, tables=_read_tables(output_dir))

    problems = []
    if completed.returncode != 0:
        problems.append(f"exit code {completed.returncode}")
    if MODULE_ERROR_MARK in log:
        problems.append("a module raised an error")
    for row in run.tables.get("Image", []):
        # CellProfiler records ModuleError_<NN><Module> for every module: 0 ran fine, 1 raised.
        failed = [name for name, value in row.items() if name.startswith("ModuleError_") and float(value)]
        problems.extend(f"{name} in image set {row['ImageNumber']}" for name in failed)
    if problems:
        raise PipelineFailed(
            f"{Path(pipeline).name} failed ({'; '.join(problems)}). End of the log:\n{log[-4000:]}"
        )
    return run


def _read_tables(output_dir):
    tables = {}
    for path in sorted(Path(output_dir).glob("*.csv")):
        with open(path, newline="") as handle:
            tables[path.stem] = list(csv.DictReader(handle))
    return tables


def run_module(module, images=None, objects=None, measurements=None):
    """Run ``module`` alone on one image set, as a pipeline would; returns the workspace.

    Parameters
    ----------
    module : cellprofiler_core.module.Module
        Its settings already filled in.
    images : dict, optional
        Image name -> pixel array, or a ready ``cellprofiler_core.image.Image`` (to give it a
        ``scale`` or a mask).
    objects : dict, optional
        Object name -> label image, the objects of earlier modules.
    measurements : cellprofiler_core.measurement.Measurements, optional
        Pre-filled measurements (another image-set number, file names); new ones by default.
    """
    pipeline = Pipeline()
    pipeline.add_module(module)
    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    for name, pixels in (images or {}).items():
        image_set.add(name, pixels if isinstance(pixels, Image) else Image(pixels))
    object_set = ObjectSet()
    for name, labels in (objects or {}).items():
        found = Objects()
        found.segmented = labels
        object_set.add_objects(found, name)
    measurements = Measurements() if measurements is None else measurements
    workspace = Workspace(pipeline, module, image_set, object_set, measurements, image_set_list)
    module.run(workspace)
    return workspace


class FakeFigure:
    """Stands in for CellProfiler's figure in ``display()`` tests: records what it is asked to show.

    ``calls`` holds ``("set_subplots", args)`` and, for each ``subplot_*`` call,
    ``(method name, (x, y), image shape, title, other keyword arguments)``.
    """

    def __init__(self):
        self.calls = []

    def set_subplots(self, *args, **kwargs):
        self.calls.append(("set_subplots", args))

    def __getattr__(self, name):
        if not name.startswith("subplot_"):
            raise AttributeError(name)

        def record(x, y, image, title=None, **kwargs):
            self.calls.append((name, (x, y), np.asarray(image).shape, title, kwargs))
            return f"axes{x}{y}"
        return record
