"""CreateBatchFiles' path mappings reach every path setting of every nucleai module.

A batch file made on one machine runs where folders are mounted elsewhere; CreateBatchFiles
rewrites paths only through each module's ``prepare_to_create_batch``. The end-to-end test makes
a batch file whose RunStarConvex uses a custom model folder under one root, hides that root and
runs a slice from the mapped root.
"""
import importlib
import io
import inspect
import shutil

import pytest
from cellprofiler_core.measurement import Measurements
from cellprofiler_core.module import Module
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.setting.text import Directory, Pathname
from cellprofiler_core.utilities.core.modules import fill_modules, instantiate_module

from _model_choice import MODEL_CUSTOM
from nucleai.batch import BATCH_FILE, Plan, Slice, run_slices
from nucleai.batch.batchfile import write_batch_file
from nucleai.batch.layout import slice_dir
from testdata import EXAMPLES, IMAGES, PLUGINS, REPO

PLUGIN_MODULES = ("RunStarConvex", "TTAMerge", "RefineContoursUNet", "EvaluateSegmentation",
                  "StyleAugmentTrain")


def plugin_classes():
    """Every CellProfiler module class defined in ``plugins/*.py``, by module name."""
    classes = {}
    for path in sorted(PLUGINS.glob("[!_]*.py")):
        module = importlib.import_module(path.stem)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, Module) and value.__module__ == path.stem:
                classes[value.module_name] = value
    return classes


def path_settings(module):
    return [setting for setting in module.settings() if isinstance(setting, (Directory, Pathname))]


def alter_path(local, cluster):
    """CreateBatchFiles' own ``alter_path`` with one mapping ``local`` -> ``cluster``."""
    create = instantiate_module("CreateBatchFiles")
    create.mappings[0].local_directory.value = local
    create.mappings[0].remote_directory.value = cluster
    return create.alter_path


def test_every_plugin_module_has_path_settings():
    """The parametrized test below covers all five modules (none silently dropped)."""
    fill_modules()
    classes = plugin_classes()
    assert set(PLUGIN_MODULES) <= set(classes)
    assert all(path_settings(classes[name]()) for name in PLUGIN_MODULES)


@pytest.mark.parametrize("name", PLUGIN_MODULES)
def test_create_batch_files_maps_every_path_setting(name):
    fill_modules()
    module = plugin_classes()[name]()
    settings = path_settings(module)
    for number, setting in enumerate(settings):
        if isinstance(setting, Directory):
            setting.value = Directory.static_join_string(ABSOLUTE_FOLDER_NAME,
                                                         f"/desktop/screen/folder{number}")
        else:
            setting.value = f"/desktop/screen/file{number}"
    assert module.prepare_to_create_batch(None, alter_path("/desktop/screen", "/mnt/screen"))
    for number, setting in enumerate(settings):
        mapped = setting.custom_path if isinstance(setting, Directory) else setting.value
        assert mapped.startswith("/mnt/screen/"), (setting.text, mapped)


def custom_model_pipeline(model_folder, path):
    """The demo pipeline with RunStarConvex reading ``model_folder`` (a custom model)."""
    fill_modules()
    pipeline = Pipeline()
    pipeline.load(str(EXAMPLES / "starconvex_nuclei.cppipe"))
    module = next(m for m in pipeline.modules() if m.module_name == "RunStarConvex")
    module.model_source.value = MODEL_CUSTOM
    module.model_folder.value = Directory.static_join_string(ABSOLUTE_FOLDER_NAME,
                                                             str(model_folder))
    with open(path, "w") as handle:
        pipeline.dump(handle)
    return path


def test_a_slice_runs_from_the_mapped_model_folder(tmp_path):
    desktop, cluster = tmp_path / "desktop", tmp_path / "cluster"
    shutil.copytree(REPO / "models" / "fluo_nuclei", desktop / "models" / "my_nuclei")
    pipeline = custom_model_pipeline(desktop / "models" / "my_nuclei", tmp_path / "custom.cppipe")
    output = tmp_path / "screen"
    output.mkdir()
    modules = write_batch_file(pipeline, output, images=IMAGES,
                                     mappings=[(str(desktop), str(cluster))], plugins_dir=PLUGINS)

    measurements = Measurements(filename=str(output / BATCH_FILE), mode="r")
    batch_pipeline = Pipeline()
    batch_pipeline.load(io.StringIO(measurements.get_experiment_measurement("Pipeline_Pipeline")))
    measurements.close()
    module = next(m for m in batch_pipeline.modules() if m.module_name == "RunStarConvex")
    assert module.model_folder.custom_path == str(cluster / "models" / "my_nuclei")

    desktop.rename(cluster)  # the desktop's folder is not there on the cluster
    plan = Plan(key="", slices=[Slice(1, 1, 1)], modules=modules, plugins_dir=str(PLUGINS))
    assert run_slices(output, plan, "local", jobs=1, retries=0) == {}
    image_table = (slice_dir(output, plan.slices[0]) / "output" / "Image.csv").read_text()
    assert "Count_Nuclei" in image_table
