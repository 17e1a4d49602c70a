"""StyleAugmentTrain: the module in process (staging, settings, validation, errors, what reaches
the backend) and end to end in two real headless pipelines.

The in-process tests build a CellProfiler workspace around the module, as CellProfiler's own
module tests do; the training backend is replaced by a recorder where only the arguments matter.
The integration test writes a few synthetic images with their label images (some empty: those
image sets are unannotated style input), trains with a tiny budget, fine-tuning the tiny test
model (``tiny_model``) with style augmentation on, then segments the images with RunStarConvex
loading the trained folder.
"""
import io
import json
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.io
import tifffile

import styleaugmenttrain
from cellprofiler_core.constants.measurement import IMAGE
from cellprofiler_core.constants.pipeline import EXIT_STATUS
from cellprofiler_core.image import Image, ImageSetList
from cellprofiler_core.measurement import Measurements
from cellprofiler_core.modules.inject_objects import InjectObjects
from cellprofiler_core.modules.injectimage import InjectImage
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_core.workspace import Workspace
from cellprofiler_run import FakeFigure
from cellprofiler_run import run_module as run_in_workspace
from cellprofiler_run import run_pipeline
from nucleai import models, predict
from nucleai.errors import InputError
from nucleai.labelio import write_labels
from nucleai.train import record, staging
from styleaugmenttrain import (
    BASE_NONE, CHANNELS_COLOUR, FIRST_PASS_BASE, MODEL_BUNDLED, MODEL_CUSTOM, StyleAugmentTrain,
)
from tiny_model import synthetic_image, tiny_model_dir


def make_module(folder, **values):
    module = StyleAugmentTrain()
    module.set_module_num(1)
    module.image_name.value = "DNA"
    module.truth_objects.value = "Truth"
    module.output_folder.value = f"Elsewhere...|{folder}"
    module.model_name.value = "model"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def run_module(module, pixels, labels=None, number=1, file_name=None, scale=None):
    """Run the module on one image set; ``labels`` None: no objects in the object set."""
    measurements = Measurements()
    if number != 1:
        measurements.next_image_set(number)
    if file_name is not None:
        measurements.add_image_measurement("FileName_DNA", file_name)
    objects = None if labels is None else {"Truth": labels}
    return run_in_workspace(module, {"DNA": Image(pixels, scale=scale)}, objects, measurements)


def providing_pipeline(module):
    """A pipeline in which earlier modules provide the image and objects the module subscribes to
    (its prepare_run checks every setting, subscriptions included)."""
    pipeline = Pipeline()
    for number, provider in enumerate((InjectImage("DNA", np.zeros((8, 8))),
                                       InjectObjects("Truth", np.zeros((8, 8), np.int32))), 1):
        provider.set_module_num(number)
        pipeline.add_module(provider)
    module.set_module_num(3)
    pipeline.add_module(module)
    return pipeline


def prepare(module, n_image_sets=8):
    """The pipeline and the workspace of prepare_run, after earlier modules listed the image sets."""
    pipeline = providing_pipeline(module)
    measurements = Measurements()
    for number in range(1, n_image_sets + 1):
        measurements.add_measurement(IMAGE, "FileName_DNA", f"img{number}.png", image_set_number=number)
    return pipeline, Workspace(pipeline, module, None, None, measurements, ImageSetList())


@pytest.fixture(scope="module")
def scene():
    image, labels = synthetic_image(np.random.default_rng(3), (80, 96), n_objects=6)
    return (image - image.min()) / np.ptp(image), labels


def staged(folder, sub):
    return sorted(p.name for p in (folder / "model" / "training_data" / sub).glob("*.tif"))


# ------------------------------------------------------------------------------------------------
# run(): staging


def test_an_annotated_image_set_is_staged_as_image_and_labels(tmp_path, scene):
    image, labels = scene
    module = make_module(tmp_path)
    workspace = run_module(module, image, labels, number=3, file_name="well A1.png")
    assert staged(tmp_path, "images") == ["00003_well_A1.tif"]
    assert staged(tmp_path, "labels") == ["00003_well_A1.tif"]
    assert staged(tmp_path, "unlabeled") == []
    root = tmp_path / "model" / "training_data"
    saved = tifffile.imread(root / "images" / "00003_well_A1.tif")
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, image.astype(np.float32))
    truth = tifffile.imread(root / "labels" / "00003_well_A1.tif")
    assert truth.dtype == np.uint16
    np.testing.assert_array_equal(truth, labels)
    assert (root / staging.MARKER).is_file()
    assert not [p for p in root.rglob(".*") if p.is_file()]  # no temporary files left
    assert workspace.measurements.get_current_image_measurement("StyleAugmentTrain_Annotated") == 1


def test_image_sets_with_zero_objects_are_unannotated(tmp_path, scene):
    image, labels = scene
    module = make_module(tmp_path)
    workspace = run_module(module, image, np.zeros_like(labels), number=12)
    assert staged(tmp_path, "unlabeled") == ["00012.tif"]  # no file name: the number alone
    assert staged(tmp_path, "images") == [] and staged(tmp_path, "labels") == []
    assert workspace.measurements.get_current_image_measurement("StyleAugmentTrain_Annotated") == 0


def test_8_and_16_bit_images_are_staged_as_cellprofiler_holds_them(tmp_path, scene):
    """No conversion back to the file's integers: training treats both alike (test_train_run)."""
    image, labels = scene
    for number, top in enumerate((255, 65535), 1):
        pixels = np.round(image * top) / top
        run_module(make_module(tmp_path), pixels, labels, number=number, file_name=f"x{number}.tif", scale=top)
        saved = tifffile.imread(tmp_path / "model" / "training_data" / "images" / f"{number:05d}_x{number}.tif")
        assert saved.dtype == np.float32
        np.testing.assert_array_equal(saved, pixels.astype(np.float32))


def test_colour_images_are_staged_as_rgb(tmp_path, scene):
    image, labels = scene
    colour = np.stack([image, image * 0.5, 1 - image], axis=-1)
    run_module(make_module(tmp_path), colour, labels, file_name="he.png")
    saved = tifffile.imread(tmp_path / "model" / "training_data" / "images" / "00001_he.tif")
    assert saved.shape == colour.shape
    np.testing.assert_allclose(saved, colour, rtol=1e-6)


def test_staged_names():
    assert staging.staged_name(7) == "00007"
    assert staging.staged_name(123456, "a/b/c d.e.png") == "123456_c_d.e"
    assert staging.staged_name(2, "ünïcode?.tif") == "00002_n_code"


def test_objects_of_another_size_are_refused_naming_the_setting(tmp_path, scene):
    image, labels = scene
    with pytest.raises(InputError, match=r"StyleAugmentTrain: the ground-truth objects has shape \(80, 95\) but "
                                         r"\(80, 96\) is expected.*\(setting 'Select the ground-truth objects'\)$"):
        run_module(make_module(tmp_path), image, labels[:, :95])


def test_prepare_run_empties_only_its_own_staging_folder(tmp_path, scene):
    image, labels = scene
    module = make_module(tmp_path, use_style=False)
    run_module(module, image, labels)
    pipeline, workspace = prepare(module)
    assert module.prepare_run(workspace) is True
    assert not (tmp_path / "model" / "training_data").exists()
    (tmp_path / "model" / "training_data").mkdir(parents=True)
    (tmp_path / "model" / "training_data" / "mine.txt").write_text("keep")
    errors = []
    pipeline.add_listener(lambda _, event: errors.append(event))
    assert module.prepare_run(workspace) is False
    assert "was not written by StyleAugmentTrain" in errors[0].message and "'Model name'" in errors[0].message
    assert (tmp_path / "model" / "training_data" / "mine.txt").is_file()


def test_too_few_image_sets_are_reported_before_the_run(tmp_path, scene):
    for values, n_image_sets, message in (
            ({}, 2, r"style augmentation needs unannotated image sets .* only 2 .*'Use style augmentation\?'"),
            ({"use_style": False}, 1, r"the run has 1 image set\(s\).*'Select the ground-truth objects'")):
        module = make_module(tmp_path, base_source=MODEL_BUNDLED, **values)
        pipeline, workspace = prepare(module, n_image_sets)
        errors = []
        pipeline.add_listener(lambda _, event: errors.append(event))
        assert module.prepare_run(workspace) is False
        assert re.search(message, errors[0].message), errors[0].message
    module = make_module(tmp_path, base_source=MODEL_BUNDLED)
    assert module.prepare_run(prepare(module, 3)[1]) is True


# ------------------------------------------------------------------------------------------------
# Settings and validation


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


def valid_module(folder, model_dir, **values):
    """Style augmentation on, fine-tuning the tiny model (also the first-pass model)."""
    values = {"base_source": MODEL_CUSTOM, "base_folder": f"Elsewhere...|{model_dir}",
              "generator_size": 64, **values}
    return make_module(folder, **values)


def test_a_sensible_module_validates(tmp_path, model_dir):
    valid_module(tmp_path, model_dir).validate_module(Pipeline())
    make_module(tmp_path, use_style=False).validate_module(Pipeline())  # a new network, no styles


@pytest.mark.parametrize("values, setting, message", [
    ({"base_source": BASE_NONE}, "first_pass_source", "give a base model to fine-tune, or a first-pass"),
    ({"base_folder": "Elsewhere...|/nowhere"}, "base_folder", "does not exist"),
    ({"first_pass_source": MODEL_CUSTOM, "first_pass_folder": "Elsewhere...|/nowhere"},
     "first_pass_folder", "does not exist"),
    ({"first_pass_source": MODEL_BUNDLED, "first_pass_bundled": "gone"}, "first_pass_bundled",
     "no bundled model 'gone'"),
    ({"share_percent": 60}, "share_percent", "synthetic_share must be in \\[0.1, 0.5\\]"),
    ({"generator_minutes": 0.0}, "generator_minutes", "generator_minutes must be above 0"),
    ({"generator_size": 97}, "generator_size", "generator_size must be even"),
    ({"patch_size": 72, "base_source": BASE_NONE, "use_style": False}, "patch_size",
     "must be a multiple of \\(16, 16\\)"),
    ({"model_name": "a/b"}, "model_name", "folder name"),
    ({"model_name": " "}, "model_name", "folder name"),
])
def test_validation_names_the_setting(tmp_path, model_dir, values, setting, message):
    module = valid_module(tmp_path, model_dir, **values)
    with pytest.raises(ValidationError, match=message) as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is getattr(module, setting)


def test_without_style_augmentation_no_first_pass_model_is_needed(tmp_path, model_dir):
    valid_module(tmp_path, model_dir, base_source=BASE_NONE, use_style=False).validate_module(Pipeline())
    valid_module(tmp_path, model_dir, base_source=BASE_NONE, first_pass_source=MODEL_CUSTOM,
                 first_pass_folder=f"Elsewhere...|{model_dir}").validate_module(Pipeline())


def test_a_folder_holding_a_foreign_model_is_refused(tmp_path, model_dir):
    shutil.copytree(model_dir, tmp_path / "model")  # a finished model, not trained here
    module = valid_module(tmp_path, model_dir)
    with pytest.raises(ValidationError, match="already holds a model .* not trained here") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_name
    workspace = Workspace(Pipeline(), module, None, None, Measurements(), ImageSetList())
    assert re.search("StyleAugmentTrain: .*already holds a model.*'Model name'", failed_post_run(module, workspace))
    (tmp_path / "model" / "train_state.json").write_text("{}")  # trained here, by this run: continued
    record.write_record(tmp_path / "model", record.run_settings(*module._inputs()), {})
    module.validate_module(Pipeline())
    module.seed.value = 7  # another run
    with pytest.raises(ValidationError, match="another training run .*seed 0 -> 7") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_name


def test_visible_settings_show_only_what_applies(tmp_path):
    module = make_module(tmp_path)
    visible = module.visible_settings()
    for hidden in (module.base_bundled, module.base_folder, module.first_pass_bundled,
                   module.first_pass_folder):
        assert hidden not in visible
    assert module.truth_objects in visible and module.share_percent in visible
    module.use_style.value = False
    visible = module.visible_settings()
    for hidden in (module.n_styles, module.share_percent, module.first_pass_source):
        assert hidden not in visible
    module = make_module(tmp_path, base_source=MODEL_BUNDLED, first_pass_source=MODEL_CUSTOM)
    visible = module.visible_settings()
    assert module.base_bundled in visible and module.first_pass_folder in visible
    assert module.base_folder not in visible and module.first_pass_bundled not in visible
    assert all(setting in module.settings() for setting in visible)
    assert all(setting.doc.strip() for setting in module.settings())


def test_settings_survive_saving_and_loading(tmp_path, model_dir):
    fill_modules()  # so that Pipeline.load finds the plugin
    module = valid_module(tmp_path, model_dir, channels=CHANNELS_COLOUR, steps_per_epoch=7, epochs=3,
                          minutes=1.5, patch_size=64, batch_size=2, val_fraction=0.3, seed=4,
                          invert_prob=0.2, n_styles=2, min_per_style=2, pairs_per_style=5,
                          share_percent=40, generator_minutes=0.5, first_pass_source=MODEL_BUNDLED,
                          first_pass_bundled="other")
    pipeline = Pipeline()
    pipeline.add_module(module)
    text = io.StringIO()
    pipeline.dump(text, save_image_plane_details=False)
    loaded = Pipeline()
    loaded.load(io.StringIO(text.getvalue()))
    (copy,) = loaded.modules()
    assert isinstance(copy, StyleAugmentTrain) and copy.variable_revision_number == 1
    assert [s.value_text for s in copy.settings()] == [s.value_text for s in module.settings()]
    values = [s.value_text for s in module.settings()]
    assert module.upgrade_settings(values, 1, "StyleAugmentTrain") == (values, 1)


def test_measurement_columns_and_categories(tmp_path):
    module = make_module(tmp_path)
    pipeline = Pipeline()
    assert module.get_measurement_columns(pipeline) == [("Image", "StyleAugmentTrain_Annotated", "integer"),
                                                        ("Image", "StyleAugmentTrain_Blank", "integer")]
    assert module.get_categories(pipeline, "Image") == ["StyleAugmentTrain"]
    assert module.get_categories(pipeline, "Nuclei") == []
    assert module.get_measurements(pipeline, "Image", "StyleAugmentTrain") == ["Annotated", "Blank"]
    assert module.category == "Advanced" and module.volumetric() is False


# ------------------------------------------------------------------------------------------------
# post_run(): what reaches the backend, and its errors


@pytest.fixture
def recorder(monkeypatch):
    """Replaces the training backend; records its arguments and returns a plausible result."""
    from nucleai.train import styletransfer

    calls = []

    def train_with_styles(train, val, out_dir, **kwargs):
        calls.append(SimpleNamespace(train=train, val=val, out_dir=out_dir, **kwargs))
        detector = SimpleNamespace(
            out_dir=out_dir, prob_thresh=0.55, nms_thresh=0.3,
            validation=SimpleNamespace(dsb_score=0.61, score=[0.8]),
            training=SimpleNamespace(epochs_done=2, stopped="epochs"),
        )
        styles = None if kwargs["style"] is None else SimpleNamespace(
            k=3, kept=[{"style": 0}], dropped=[(1, 1), (2, 1)], grids=[Path("style_0_real_vs_synthetic.png")],
            synthetic=[None] * 5,
        )
        return SimpleNamespace(detector=detector, styles=styles)

    monkeypatch.setattr(styletransfer, "train_with_styles", train_with_styles)
    return calls


def failed_post_run(module, workspace):
    """post_run of a headless run whose training fails: the error logged, nothing raised (the
    later modules still run), and the run's exit status removed when it ends (exit 1)."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("styleaugmenttrain").addHandler(handler)
    try:
        module.post_run(workspace)
    finally:
        logging.getLogger("styleaugmenttrain").removeHandler(handler)
    (error,) = [r for r in records if r.levelname == "ERROR"]
    workspace.measurements.add_experiment_measurement(EXIT_STATUS, "Complete")
    workspace.pipeline.end_run()
    assert not workspace.measurements.has_feature("Experiment", EXIT_STATUS)
    return error.getMessage()


def stage(module, scene, n_annotated, n_unannotated):
    """A run's staging: prepare_run (empties the staging folder), then one run() per image set."""
    image, labels = scene
    assert module.prepare_run(prepare(module)[1])
    for number in range(1, n_annotated + n_unannotated + 1):
        truth = labels if number <= n_annotated else np.zeros_like(labels)
        run_module(module, image, truth, number=number, file_name=f"img{number}.png")
    return Workspace(Pipeline(), module, None, None, Measurements(), ImageSetList())


def test_post_run_trains_on_the_staged_image_sets(tmp_path, model_dir, scene, recorder, caplog):
    module = valid_module(tmp_path, model_dir, steps_per_epoch=7, epochs=3, minutes=0.0, patch_size=64,
                          batch_size=2, val_fraction=0.25, seed=5, invert_prob=0.3, n_styles=0,
                          min_per_style=2, pairs_per_style=6, share_percent=20, generator_minutes=0.5)
    workspace = stage(module, scene, 4, 3)
    with caplog.at_level("INFO"):
        module.post_run(workspace)
    (call,) = recorder
    assert call.out_dir == tmp_path / "model"
    assert sorted(s.name for s in call.train + call.val) == [f"0000{i}_img{i}" for i in range(1, 5)]
    assert len(call.val) == 1 and all(s.labels is not None for s in call.train + call.val)
    assert [s.name for s in call.unlabeled] == [f"0000{i}_img{i}" for i in range(5, 8)]
    assert all(s.labels is None for s in call.unlabeled)
    np.testing.assert_array_equal(call.train[0].labels, scene[1])
    assert call.n_channels == 1  # grey images, grey base
    s = call.settings
    assert (s.patch_size, s.batch_size, s.steps_per_epoch, s.epochs, s.minutes, s.seed) == ((64, 64), 2, 7, 3, None, 5)
    st = call.style
    assert (st.k, st.min_cluster_size, st.pairs_per_style, st.share, st.seed) == (None, 2, 6, 0.2, 5)
    assert (st.generator.size, st.generator.minutes) == (64, 0.5)
    assert call.base == str(model_dir.resolve()) or Path(call.base) == model_dir
    assert call.first_pass is None  # the base model
    assert call.augmenter.invert_prob == 0.3 and call.progress is False and call.command is None
    assert any("validation: 1 of the 4 annotated images held out" in line for line in call.data_description)
    summary = dict(workspace.display_data.summary)
    assert summary["Validation DSB score"] == "0.6100" and summary["Probability threshold"] == "0.55"
    assert summary["Styles"] == "1 kept of 3 clusters, 2 dropped (too small)"
    assert summary["Model folder"] == str(tmp_path / "model")
    assert "StyleAugmentTrain: Validation DSB score: 0.6100" in caplog.text


def test_without_styles_unannotated_sets_are_ignored_with_a_note(tmp_path, scene, recorder, caplog):
    module = make_module(tmp_path, use_style=False, channels=CHANNELS_COLOUR, minutes=2.0)
    workspace = stage(module, scene, 3, 2)
    with caplog.at_level("INFO"):
        module.post_run(workspace)
    (call,) = recorder
    assert call.style is None and call.unlabeled == [] and call.base is None
    assert call.n_channels == 3 and call.settings.minutes == 2.0
    assert "2 unannotated images ignored" in caplog.text
    assert dict(workspace.display_data.summary)["Styles"] == "no style augmentation"


def test_automatic_channels_follow_colour_images(tmp_path, scene, recorder):
    image, labels = scene
    module = make_module(tmp_path, use_style=False)
    for number in (1, 2):
        run_module(module, np.stack([image, image * 0.5, image], axis=-1), labels, number=number)
    module.post_run(Workspace(Pipeline(), module, None, None, Measurements(), ImageSetList()))
    assert recorder[0].n_channels == 3


def test_post_run_errors_name_the_settings(tmp_path, model_dir, scene, recorder):
    module = valid_module(tmp_path, model_dir)
    workspace = stage(module, scene, 0, 3)
    assert re.search("no image set had ground-truth objects.*'Select the ground-truth objects'",
                     failed_post_run(module, workspace))
    workspace = stage(module, scene, 1, 2)
    assert re.search("a validation split needs at least 2.*'Validation fraction'", failed_post_run(module, workspace))
    workspace = stage(module, scene, 3, 0)
    assert re.search("style augmentation needs unannotated images.*'Use style augmentation\\?'",
                     failed_post_run(module, workspace))
    assert recorder == []


def test_backend_errors_are_raised_with_the_module_and_setting(tmp_path, model_dir, scene, monkeypatch):
    from nucleai.train import styletransfer

    def fail(*args, **kwargs):
        raise InputError("patch size (60, 60) must be a multiple of (4, 4) for this network", "patch_size")

    monkeypatch.setattr(styletransfer, "train_with_styles", fail)
    module = valid_module(tmp_path, model_dir, use_style=False)
    workspace = stage(module, scene, 3, 0)
    assert re.match(r"^StyleAugmentTrain: patch size .* \(setting 'Patch size \(pixels\)'\)$",
                    failed_post_run(module, workspace))


def test_display_shows_the_staged_image_set_and_the_training_summary(tmp_path, scene, recorder):
    image, labels = scene
    module = make_module(tmp_path, use_style=False)
    module.show_window = True
    workspace = run_module(module, image, labels)
    figure = FakeFigure()
    module.display(workspace, figure)
    shown = {call[1]: call for call in figure.calls[1:]}
    assert shown[(0, 0)][4]["cplabels"][0]["name"] == "Truth"
    assert shown[(1, 0)][4]["row_labels"][0] == "Staged as"
    assert shown[(1, 0)][2] == (3, 1) and shown[(1, 0)][4]["row_labels"][2] == "File"
    run_module(module, image, labels, number=2)
    module.post_run(workspace)
    figure = RecordingFigure()
    module.display_post_run(workspace, figure)
    assert figure.calls[0] == ("set_subplots", ((1, 1),)), "the image set's picture is cleared"
    assert "Validation DSB score" in figure.calls[1][4]["row_labels"]
    assert figure.calls[-1] == ("draw_idle",), "and the canvas redrawn"


class RecordingFigure(FakeFigure):
    """A FakeFigure that keeps a table's values, and records redraw requests of its canvas."""

    def __init__(self):
        super().__init__()
        self.figure = SimpleNamespace(canvas=SimpleNamespace(draw_idle=lambda: self.calls.append(("draw_idle",))))

    def subplot_table(self, x, y, statistics, **kwargs):
        self.calls.append(("subplot_table", (x, y), statistics, None, kwargs))


def test_the_staged_file_is_shown_inside_the_output_folder_and_long_values_are_wrapped(tmp_path, scene):
    image, labels = scene
    module = make_module(tmp_path / ("a_long_folder_name_" * 4), use_style=False)
    module.show_window = True
    workspace = run_module(module, image, labels, file_name="a very long file name of a well.png")
    path = "model/training_data/images/00001_a_very_long_file_name_of_a_well.tif"
    assert dict(workspace.display_data.statistics)["File"] == path
    figure = RecordingFigure()
    module.display(workspace, figure)
    name, _, values, _, keywords = figure.calls[-1]
    assert name == "subplot_table" and keywords["row_labels"] == ["Staged as", "Objects", "File"]
    shown = values[2][0]
    assert shown == "model/training_data/images/\n00001_a_very_long_file_name_of_a_well.tif"
    assert all(len(line) <= styleaugmenttrain.WRAP for line in shown.split("\n"))
    assert styleaugmenttrain._wrapped("x" * 100).split("\n") == ["x" * 44, "x" * 44, "x" * 12]


# ------------------------------------------------------------------------------------------------
# Stop Analysis and progress, through CellProfiler's analysis runner (the GUI's side without wx)


def analysis_workspace(module, workspace, cancel_when):
    """``workspace`` as CellProfiler's analysis runner hands it to ``post_run`` in the GUI (its
    post-run display handler is the runner's); the runner's event listener (the GUI's) records
    every post-run display request's rows and cancels the analysis, as Stop Analysis does
    (``Runner.cancel`` sets ``cancelled``; here no worker or thread is running to be stopped),
    when ``cancel_when(rows)``. Returns (workspace, the rows seen, the time of the cancel)."""
    from cellprofiler_core.analysis._runner import Runner
    from cellprofiler_core.analysis.request import DisplayPostRun

    seen, cancelled_at = [], []

    def listener(event):
        assert isinstance(event, DisplayPostRun) and event.module_num == module.module_num
        rows = dict(event.display_data.summary)
        seen.append(rows)
        if not runner.cancelled and cancel_when(rows):
            runner.cancelled = True
            cancelled_at.append(time.monotonic())

    runner = Runner("analysis", workspace.pipeline, b"", listener)
    workspace.post_run_display_handler = runner.post_run_display_handler
    return workspace, seen, cancelled_at


def stop_module(tmp_path, model_dir):
    module = valid_module(tmp_path, model_dir, use_style=False, steps_per_epoch=2, epochs=50, patch_size=32,
                          batch_size=1)
    module.show_window = True
    return module


def test_stop_analysis_during_training_keeps_the_best_epoch_as_a_complete_model(tmp_path, model_dir, scene):
    module = stop_module(tmp_path, model_dir)
    workspace, seen, cancelled_at = analysis_workspace(
        module, stage(module, scene, 3, 0), lambda rows: rows.get("Training", "").startswith("epoch 2 "))
    module.post_run(workspace)
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 30, "stopped within seconds"
    shown = seen[-1]
    assert shown["Training loss"] and shown["Time left"] and shown["Training"].endswith("of 50, step 2 of 2")
    summary = dict(workspace.display_data.summary)
    epochs = int(summary["Epochs"].split()[0])
    assert 1 <= epochs < 50 and summary["Epochs"].endswith("(stopped on request; best epoch so far kept, run "
                                                           "again to continue)")
    folder = tmp_path / "model"
    assert json.loads((folder / "train_state.json").read_text())["epochs_done"] == epochs
    assert "stopped on request" in (folder / "MODEL.md").read_text()
    assert models.read_spec(folder).prob_thresh == float(summary["Probability threshold"])
    assert predict.segment(scene[0], models.load(folder)).labels.shape == scene[1].shape


def test_stop_analysis_before_the_first_epoch_ends_keeps_no_model(tmp_path, model_dir, scene, caplog):
    module = stop_module(tmp_path, model_dir)
    workspace, seen, _ = analysis_workspace(module, stage(module, scene, 3, 0), lambda rows: True)
    with caplog.at_level("INFO"):
        module.post_run(workspace)
    assert dict(workspace.display_data.summary)["Training"] == ("stopped before its first epoch ended: no model "
                                                                "was kept")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["training_data"]
    assert "stopped on request before any epoch ended; nothing was kept" in caplog.text
    assert "ERROR" not in caplog.text


# ------------------------------------------------------------------------------------------------
# End to end: train headless, then segment with RunStarConvex loading the trained folder

N_ANNOTATED, N_UNANNOTATED = 4, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """``<stem>.png`` 16-bit images with ``<stem>.tif`` label images; the last ones are empty."""
    folder = tmp_path_factory.mktemp("style_images")
    rng = np.random.default_rng(21)
    for index in range(N_ANNOTATED + N_UNANNOTATED):
        image, labels = synthetic_image(rng, (96, 96), n_objects=8)
        image = (image - image.min()) / np.ptp(image)
        skimage.io.imsave(folder / f"blobs{index}.png", np.round(image * 65535).astype(np.uint16),
                          check_contrast=False)
        write_labels(folder / f"blobs{index}.tif", labels if index < N_ANNOTATED else np.zeros_like(labels))
    return folder


def write_pipeline(modules, path):
    import make_pipelines

    make_pipelines.load_cellprofiler()
    make_pipelines.write(modules, path)
    return path


@pytest.fixture(scope="module")
def trained(dataset, model_dir, tmp_path_factory):
    import make_pipelines as mp

    mp.load_cellprofiler()
    folder = tmp_path_factory.mktemp("train")
    train = mp.module(
        "StyleAugmentTrain", image_name="DNA", truth_objects="GroundTruth", model_name="trained",
        base_source=MODEL_CUSTOM, steps_per_epoch=4, epochs=2, patch_size=64, batch_size=2,
        val_fraction=0.25, seed=1, use_style=True, n_styles=1, min_per_style=2, pairs_per_style=3,
        share_percent=30, generator_minutes=0.05, generator_size=64, first_pass_source=FIRST_PASS_BASE,
    )
    train.base_folder.value = f"Elsewhere...|{model_dir}"
    pipeline = write_pipeline([*mp.image_and_truth_input(), train, mp.export()], folder / "train.cppipe")
    run = run_pipeline(pipeline, dataset, folder / "out", timeout=600)
    return run, folder / "out" / "trained"


def test_a_headless_run_trains_a_model_with_styles(trained):
    run, model = trained
    assert "Failed to complete post_run" not in run.log, run.log[-4000:]
    annotated = {Path(r["FileName_DNA"]).stem: float(r["StyleAugmentTrain_Annotated"]) for r in run.tables["Image"]}
    assert annotated == {f"blobs{i}": float(i < N_ANNOTATED) for i in range(N_ANNOTATED + N_UNANNOTATED)}
    for name in ("config.json", "weights_best.h5", "thresholds.json", "nucleai.json", "MODEL.md"):
        assert (model / name).is_file(), name
    staging = model / "training_data"
    assert len(list((staging / "images").glob("*.tif"))) == N_ANNOTATED
    assert len(list((staging / "labels").glob("*.tif"))) == N_ANNOTATED
    assert len(list((staging / "unlabeled").glob("*.tif"))) == N_UNANNOTATED
    assert list((model / "styles").glob("style_*_real_vs_synthetic.png"))
    assert "StyleAugmentTrain: Validation DSB score" in run.log
    assert re.search(r"StyleAugmentTrain: epoch 1/2, step 1/4, training loss \d\.\d{4}, .* left", run.log)
    assert json.loads((model / "nucleai.json").read_text())["object_diameter"] > 0
    card = (model / "MODEL.md").read_text()
    assert "CellProfiler module StyleAugmentTrain" in card
    assert f"unannotated images (style input): {N_UNANNOTATED}" in card


def test_runstarconvex_loads_the_trained_model(trained, dataset, tmp_path_factory):
    import make_pipelines as mp

    _, model = trained
    mp.load_cellprofiler()
    folder = tmp_path_factory.mktemp("segment")
    segment = mp.module("RunStarConvex", x_name="DNA", y_name="Nuclei", model_source=MODEL_CUSTOM)
    segment.model_folder.value = f"Elsewhere...|{model}"
    inputs = mp.single_image_input()
    inputs[0].filter_choice.value = "Custom"  # apply its rule: the PNGs, not the label TIFFs beside them
    pipeline = write_pipeline([*inputs, segment, mp.export()], folder / "segment.cppipe")
    run = run_pipeline(pipeline, dataset, folder / "out", timeout=300)
    counts = {Path(row["FileName_DNA"]).stem: float(row["Count_Nuclei"]) for row in run.tables["Image"]}
    assert len(counts) == N_ANNOTATED + N_UNANNOTATED
    # RunStarConvex's defaults are the backend's: the same objects as segmenting the PNGs directly
    trained_model = models.load(model)
    expected = {stem: predict.segment(skimage.io.imread(dataset / f"{stem}.png"), trained_model).count
                for stem in counts}
    assert counts == expected and sum(counts.values()) > 0
