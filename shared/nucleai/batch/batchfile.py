"""The CellProfiler side of a batch run: the pipeline with CreateBatchFiles, the batch file.

The pipeline is loaded and CreateBatchFiles appended through CellProfiler's API; the batch file
is then written by one headless CellProfiler run, exactly as a user would write it.
"""
import logging
import subprocess
import sys

from ..errors import InputError
from .layout import BATCH_FILE, BATCH_PIPELINE, CREATE_LOG, DEFAULT_PLUGINS, environment


def _load_pipeline(pipeline_path, plugins_dir):
    """The pipeline as CellProfiler's API loads it, with this repository's plugin modules."""
    import cellprofiler_core.preferences as preferences

    preferences.set_headless()
    preferences.set_plugin_directory(str(plugins_dir), globally=False)
    from cellprofiler_core.pipeline import LoadException, Pipeline
    from cellprofiler_core.utilities.core.modules import fill_modules

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the scan warns of each plugin it meets twice: noise here
    try:
        fill_modules()
    finally:
        root.setLevel(level)
    pipeline = Pipeline()
    errors = []
    pipeline.add_listener(
        lambda _, event: errors.append(event) if isinstance(event, LoadException) else None)
    try:
        pipeline.load(str(pipeline_path))
    except Exception as error:  # CellProfiler raises bare Exceptions for unreadable pipelines
        raise InputError(f"--pipeline {pipeline_path}: CellProfiler cannot load it: {error}")
    if errors:
        raise InputError(f"--pipeline {pipeline_path}: CellProfiler cannot load it: "
                         f"{errors[0].error}")
    return pipeline


def batch_pipeline(pipeline_path, mappings, plugins_dir):
    """The pipeline with a CreateBatchFiles module last, holding ``mappings``.

    A CreateBatchFiles the pipeline already has is kept (moved last) and its own mappings are
    kept after ours. The batch file goes to the default output folder.

    Returns
    -------
    pipeline : cellprofiler_core.pipeline.Pipeline
    """
    from cellprofiler_core.utilities.core.modules import instantiate_module

    pipeline = _load_pipeline(pipeline_path, plugins_dir)
    existing = [module for module in pipeline.modules() if module.is_create_batch_module()]
    for module in existing:
        pipeline.remove_module(module.module_num)
    create = existing[0] if existing else instantiate_module("CreateBatchFiles")
    old = [(group.local_directory.value, group.remote_directory.value)
           for group in create.mappings] if existing else []
    create.mappings.clear()
    for local, remote in list(mappings) + old:
        create.add_mapping()
        create.mappings[-1].local_directory.value = str(local)
        create.mappings[-1].remote_directory.value = str(remote)
    create.wants_default_output_directory.value = True
    create.module_num = len(pipeline.modules()) + 1
    pipeline.add_module(create)
    return pipeline


def cellprofiler_command(*arguments, plugins_dir):
    """``python -m cellprofiler -c -r ARGUMENTS --plugins-directory PLUGINS --log-level INFO``.

    The INFO level is what :func:`nucleai.batch.checks.check_slice` needs: CellProfiler then logs
    one line per module and image set.
    """
    return [sys.executable, "-m", "cellprofiler", "-c", "-r", *map(str, arguments),
            "--plugins-directory", str(plugins_dir), "--log-level", "INFO"]


def write_batch_file(pipeline_path, output_dir, images=None, file_list=None, mappings=(),
                     plugins_dir=DEFAULT_PLUGINS):
    """Write ``output_dir/Batch_data.h5`` for ``pipeline_path`` over an image folder or file list.

    Parameters
    ----------
    pipeline_path : path-like
        A .cppipe (or .cpproj) pipeline; CreateBatchFiles is appended if it has none.
    output_dir : Path
        Where the batch file, the pipeline it was made from and CellProfiler's log go.
    images, file_list : path-like, optional
        Exactly one: a folder (``-i``, all files below it) or a CellProfiler file list
        (``--file-list``, one path or URL a line).
    mappings : sequence of (str, str)
        Local -> cluster folder prefixes, applied by CreateBatchFiles to image paths and to the
        path settings of every module that supports it.
    plugins_dir : path-like

    Returns
    -------
    list of (int, str)
        The enabled modules of the batch pipeline, as ``(module number, name)``.

    Raises
    ------
    InputError
        If CellProfiler could not load the pipeline or wrote no batch file (its log's end is in
        the message).
    """
    pipeline = batch_pipeline(pipeline_path, mappings, plugins_dir)
    pipeline_file = output_dir / BATCH_PIPELINE
    with open(pipeline_file, "w") as handle:
        pipeline.dump(handle)
    batch_file = output_dir / BATCH_FILE
    batch_file.unlink(missing_ok=True)
    source = ["-i", images] if file_list is None else ["--file-list", file_list]
    command = cellprofiler_command("-p", pipeline_file, *source, "-o", output_dir,
                                   plugins_dir=plugins_dir)
    with open(output_dir / CREATE_LOG, "w") as log:
        # Exit 1 is normal here: CellProfiler stops after CreateBatchFiles and records no exit
        # status; the batch file existing is what counts.
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=output_dir,
                       env=environment())
    if not batch_file.is_file():
        tail = (output_dir / CREATE_LOG).read_text(errors="replace")[-3000:]
        raise InputError(f"CellProfiler wrote no {BATCH_FILE} for {pipeline_path}; the end of "
                         f"its log ({output_dir / CREATE_LOG}):\n{tail}")
    return [(module.module_num, module.module_name) for module in pipeline.modules()
            if module.enabled]


def batch_units(batch_file):
    """The batch file's image sets as ``[(first, last), ...]`` units a slice must not split.

    One unit per group when the pipeline groups its images (CreateBatchFiles then records
    ``Group_Number``), else one per image set.
    """
    from cellprofiler_core.measurement import Measurements

    measurements = Measurements(filename=str(batch_file), mode="r")
    try:
        numbers = [int(n) for n in measurements.get_image_numbers()]
        if not measurements.has_feature("Image", "Group_Number"):
            return [(n, n) for n in numbers]
        groups = measurements.get_measurement("Image", "Group_Number", numbers)
    finally:
        measurements.close()
    units = []
    for number, group in zip(numbers, groups):
        if units and units[-1][2] == group and units[-1][1] == number - 1:
            units[-1][1] = number
        else:
            units.append([number, number, group])
    return [(first, last) for first, last, _ in units]
