"""RunStarConvex: the module in process (settings, measurements, errors) and in a real pipeline.

The in-process tests build a CellProfiler workspace around one module, as CellProfiler's own
module tests do. The integration test runs ``example_pipelines/starconvex_nuclei.cppipe``
headless on the bundled images with ``--plugins-directory plugins`` and the bundled model
``fluo_nuclei``, and checks that the downstream modules measured RunStarConvex's objects; another
runs ``brightfield_nuclei.cppipe`` (the *Automatic* model choice) on the brightfield examples.
"""
import io
import logging

import numpy as np
import pytest
import skimage.io
import tifffile

import runstarconvex
from _failure_policy import ON_FAILURE_FLAG, ON_FAILURE_STOP
from cellprofiler_core.image import Image
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_run import FakeFigure, run_module, run_pipeline
from nucleai import metrics, modality, models, predict, runtime
from nucleai.errors import InputError
from testdata import BLANK_FIELD, BRIGHTFIELD, EXAMPLES, HISTOLOGY, IMAGES, DEFAULT_PRECISION, ground_truth_of
from tiny_model import synthetic_image, tiny_model_dir

PIPELINE = EXAMPLES / "starconvex_nuclei.cppipe"


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture(scope="module")
def image():
    """A synthetic nucleus image as CellProfiler holds it: float in [0, 1]."""
    pixels = synthetic_image(np.random.default_rng(5), (140, 170), n_objects=20)[0]
    return (pixels - pixels.min()) / np.ptp(pixels)


def make_module(model_dir, **values):
    module = runstarconvex.RunStarConvex()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    module.model_source.value = runstarconvex.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{model_dir}"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def test_objects_and_measurements(model_dir, image):
    module = make_module(model_dir)
    workspace = run_module(module, {"DNA": image})
    expected = predict.segment(image, models.load(model_dir, precision=DEFAULT_PRECISION))
    objects = workspace.object_set.get_objects("Nuclei")
    np.testing.assert_array_equal(objects.segmented, expected.labels)
    m = workspace.measurements
    count = expected.count
    assert count > 5
    assert m.get_current_image_measurement("Count_Nuclei") == count
    for feature in ("Location_Center_X", "Location_Center_Y", "Number_Object_Number"):
        assert len(m.get_current_measurement("Nuclei", feature)) == count
    probability = m.get_current_measurement("Nuclei", "StarConvex_Probability")
    np.testing.assert_array_equal(probability, expected.probabilities)
    assert ((probability > 0.5) & (probability <= 1)).all()
    assert "NucleiProbability" not in workspace.image_set.names


@pytest.mark.parametrize("setting", ["Automatic", "float32", "bfloat16"])
def test_the_precision_setting_picks_the_network_and_is_recorded(model_dir, image, setting):
    module = make_module(model_dir, precision=setting)
    workspace = run_module(module, {"DNA": image})
    chosen = runtime.resolve_precision("auto" if setting == "Automatic" else setting).name
    model = models.load(model_dir, precision=chosen)
    assert model.precision == chosen
    np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented,
                                  predict.segment(image, model).labels)
    assert workspace.measurements.get_current_image_measurement("StarConvex_Precision_Nuclei") == chosen


def test_a_gpu_memory_cap_is_validated_and_harmless_without_a_gpu(model_dir, image):
    module = make_module(model_dir, gpu_memory="-5")
    with pytest.raises(ValidationError, match="Must be at least 0, was -5"):
        module.gpu_memory.test_valid(Pipeline())
    # without a GPU the cap is a no-op (tests/test_runtime.py checks it on a GPU)
    if not runtime_has_gpu():
        workspace = run_module(make_module(model_dir, gpu_memory="512"), {"DNA": image})
        assert workspace.measurements.get_current_image_measurement("Count_Nuclei") > 0


def runtime_has_gpu():
    return bool(runtime.prepare_tensorflow().config.list_physical_devices("GPU"))


def test_the_probability_map_can_be_saved_as_an_image(model_dir, image):
    module = make_module(model_dir, save_probability=True, probability_name="Prob")
    workspace = run_module(module, {"DNA": image})
    prob = workspace.image_set.get_image("Prob").pixel_data
    assert prob.shape == image.shape and 0 <= prob.min() and prob.max() <= 1


def test_thresholds_tiles_and_rescaling_reach_the_backend(model_dir, image):
    module = make_module(
        model_dir, use_model_thresholds=False, prob_thresh=0.7, nms_thresh=0.3,
        tiling=runstarconvex.TILES_FIXED, tiles_y=2, tiles_x=3,
        rescale=runstarconvex.RESCALE_GIVEN, object_diameter=18.0, use_model_diameter=False,
        model_diameter=15.0,
    )
    workspace = run_module(module, {"DNA": image})
    expected = predict.segment(image, models.load(model_dir, precision=DEFAULT_PRECISION), predict.SegmentOptions(
        prob_thresh=0.7, nms_thresh=0.3, tiles=(2, 3), object_diameter=18.0, model_diameter=15.0))
    np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented,
                                  expected.labels)


def test_a_mask_restricts_the_objects(model_dir, image):
    mask = np.zeros(image.shape, bool)
    mask[:, :80] = True
    module = make_module(model_dir, use_mask=True, mask_name="Mask")
    workspace = run_module(module, {"DNA": image, "Mask": mask})
    labels = workspace.object_set.get_objects("Nuclei").segmented
    assert labels.max() > 0 and not labels[:, 80:].any()
    expected = predict.segment(image, models.load(model_dir, precision=DEFAULT_PRECISION), mask=mask)
    np.testing.assert_array_equal(labels, expected.labels)


def test_the_images_own_mask_is_respected_and_combined_with_the_mask_setting(model_dir, image):
    own = np.zeros(image.shape, bool)
    own[:, :80] = True
    extra = np.zeros(image.shape, bool)
    extra[40:, :] = True
    masked = run_module(make_module(model_dir), {"DNA": Image(image, mask=own)})
    expected = predict.segment(image, models.load(model_dir, precision=DEFAULT_PRECISION), mask=own)
    np.testing.assert_array_equal(masked.object_set.get_objects("Nuclei").segmented, expected.labels)
    both = run_module(make_module(model_dir, use_mask=True, mask_name="Mask"),
                      {"DNA": Image(image, mask=own), "Mask": extra})
    expected = predict.segment(image, models.load(model_dir, precision=DEFAULT_PRECISION), mask=own & extra)
    np.testing.assert_array_equal(both.object_set.get_objects("Nuclei").segmented, expected.labels)


def test_a_colour_image_is_segmented_on_the_chosen_channel(model_dir, image):
    colour = np.stack([np.zeros_like(image), np.ones_like(image), image], axis=-1)
    grey = run_module(make_module(model_dir), {"DNA": image})
    chosen = run_module(make_module(model_dir, channel=3), {"DNA": colour})
    np.testing.assert_array_equal(chosen.object_set.get_objects("Nuclei").segmented,
                                  grey.object_set.get_objects("Nuclei").segmented)
    with pytest.raises(InputError, match=r"setting 'Channel to use for colour images' is 4 but the "
                                         r"image has 3 channels, 1 to 3$"):
        run_module(make_module(model_dir, channel=4, on_failure=ON_FAILURE_STOP), {"DNA": colour})


def test_a_blank_image_gives_no_objects_and_says_why(model_dir):
    for on_failure in (ON_FAILURE_FLAG, ON_FAILURE_STOP):  # never an error
        workspace = run_module(make_module(model_dir, on_failure=on_failure), {"DNA": np.zeros((64, 64))})
        assert workspace.object_set.get_objects("Nuclei").count == 0
        assert workspace.measurements["Image", "Count_Nuclei"] == 0
        assert workspace.measurements["Image", "StarConvex_Status_Nuclei"] == "blank"


def test_the_model_is_loaded_once_per_process(model_dir, image, monkeypatch):
    run_module(make_module(model_dir), {"DNA": image})
    built = []
    original = models.StarConvexModel.__init__
    monkeypatch.setattr(models.StarConvexModel, "__init__",
                        lambda self, spec: built.append(spec) or original(self, spec))
    for _ in range(3):
        run_module(make_module(model_dir), {"DNA": image})
    assert built == []


def test_a_missing_or_broken_model_fails_validation(model_dir, tmp_path, monkeypatch):
    module = make_module(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="does not exist") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_folder
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    module = make_module(tmp_path / "broken")
    with pytest.raises(ValidationError, match="config.json: not valid JSON"):
        module.validate_module(Pipeline())
    with pytest.raises(InputError, match="RunStarConvex: setting 'Model folder'.*not valid JSON"):
        run_module(module, {"DNA": np.random.default_rng(0).random((32, 32))})

    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    module = make_module(model_dir, model_source=runstarconvex.MODEL_BUNDLED,
                         bundled_model="fluo_nuclei")
    module.validate_module(Pipeline())
    module.bundled_model.value = "gone"
    with pytest.raises(ValidationError, match="no bundled model 'gone'") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.bundled_model


def test_rescaling_needs_a_declared_or_given_model_diameter(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "nucleai.json").unlink()
    module = make_module(folder, rescale=runstarconvex.RESCALE_AUTO)
    with pytest.raises(ValidationError, match="does not declare the nucleus diameter") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.use_model_diameter
    module.use_model_diameter.value = False
    module.validate_module(Pipeline())


def test_visible_settings_show_only_what_applies(model_dir):
    module = make_module(model_dir)
    visible = module.visible_settings()
    assert module.model_folder in visible and module.bundled_model not in visible
    for hidden in (module.prob_thresh, module.object_diameter, module.model_diameter,
                   module.tiles_y, module.mask_name, module.probability_name):
        assert hidden not in visible
    module.model_source.value = runstarconvex.MODEL_BUNDLED
    module.use_model_thresholds.value = False
    module.rescale.value = runstarconvex.RESCALE_GIVEN
    module.use_model_diameter.value = False
    module.tiling.value = runstarconvex.TILES_FIXED
    module.use_mask.value = True
    module.save_probability.value = True
    visible = module.visible_settings()
    assert module.bundled_model in visible and module.model_folder not in visible
    for shown in (module.prob_thresh, module.nms_thresh, module.object_diameter,
                  module.model_diameter, module.tiles_y, module.tiles_x, module.mask_name,
                  module.probability_name):
        assert shown in visible
    assert all(setting in module.settings() for setting in visible)


def test_settings_survive_saving_and_loading(model_dir):
    fill_modules()  # so that Pipeline.load finds the plugin
    module = make_module(model_dir, use_model_thresholds=False, prob_thresh=0.65,
                         rescale=runstarconvex.RESCALE_AUTO, tiling=runstarconvex.TILES_FIXED,
                         tiles_x=3, save_probability=True, probability_name="P")
    module.percentiles.value = (2.0, 99.5)
    pipeline = Pipeline()
    pipeline.add_module(module)
    text = io.StringIO()
    pipeline.dump(text, save_image_plane_details=False)
    loaded = Pipeline()
    loaded.load(io.StringIO(text.getvalue()))
    (copy,) = loaded.modules()
    assert copy.variable_revision_number == 3
    assert [s.value_text for s in copy.settings()] == [s.value_text for s in module.settings()]
    values = [s.value_text for s in module.settings()]
    assert module.upgrade_settings(values, 3, "RunStarConvex") == (values, 3)
    # revision 2 (before precision and GPU memory) loads with their defaults appended, revision 1
    # (before the failure setting too) with all three
    revision_2 = values[:-2]
    assert module.upgrade_settings(revision_2, 2, "RunStarConvex") == (revision_2 + ["Automatic", "0"], 3)
    assert module.upgrade_settings(revision_2[:-1], 1, "RunStarConvex") == (
        revision_2[:-1] + [ON_FAILURE_FLAG, "Automatic", "0"], 3)


def test_measurement_columns_and_categories(model_dir):
    module = make_module(model_dir)
    pipeline = Pipeline()
    columns = module.get_measurement_columns(pipeline)
    assert ("Nuclei", "StarConvex_Probability", "float") in columns
    assert ("Image", "Count_Nuclei", "integer") in columns
    assert ("Image", "StarConvex_Status_Nuclei", "varchar(255)") in columns
    assert ("Image", "StarConvex_Precision_Nuclei", "varchar(16)") in columns
    assert module.get_measurements(pipeline, "Image", "StarConvex") == ["Status", "Precision"]
    assert "StarConvex" in module.get_categories(pipeline, "Nuclei")
    assert module.get_measurements(pipeline, "Nuclei", "StarConvex") == ["Probability"]
    assert module.get_measurements(pipeline, "Nuclei", "Location") == [
        "Center_X", "Center_Y", "Center_Z"]
    assert module.volumetric() is False


# ------------------------------------------------------------------------------------------------
# The example pipeline, headless


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    return run_pipeline(PIPELINE, IMAGES, tmp_path_factory.mktemp("starconvex"))


def test_the_example_pipeline_is_the_classical_one_with_runstarconvex():
    classical = (EXAMPLES / "classical_nuclei.cppipe").read_text()
    starconvex = PIPELINE.read_text()
    assert "IdentifyPrimaryObjects:" in classical and "IdentifyPrimaryObjects:" not in starconvex
    assert "RunStarConvex:[module_num:5" in starconvex
    assert "Bundled model:fluo_nuclei" in starconvex
    assert "Name the output object:Nuclei" in starconvex
    # every other module block (blocks are separated by blank lines) is identical
    blocks = lambda text: [b for b in text.split("\n\n")[1:] if "module_num:5|" not in b]  # noqa: E731
    assert blocks(classical) == blocks(starconvex) and len(blocks(starconvex)) == 9


def test_downstream_modules_measure_runstarconvex_objects(example_run):
    rows = example_run.tables["Image"]
    assert sorted(r["FileName_DNA"] for r in rows) == sorted(p.name for p in IMAGES.glob("*.png"))
    counts = example_run.column("Image", "Count_Nuclei")
    blank = np.array([r["FileName_DNA"] == BLANK_FIELD for r in rows])
    assert (counts[~blank] > 0).all() and blank.sum() == 1 and counts[blank] == 0
    assert [r["StarConvex_Status_Nuclei"] for r in rows] == ["blank" if b else "ok" for b in blank]
    np.testing.assert_array_equal(example_run.column("Image", "Count_Cells"), counts)
    for objects in ("Nuclei", "Cells"):
        assert len(example_run.tables[objects]) == counts.sum()
        for column in ("Location_Center_X", "Location_Center_Y", "Number_Object_Number",
                       "Intensity_MeanIntensity_DNA", "Intensity_IntegratedIntensity_DNA"):
            assert np.isfinite(example_run.column(objects, column)).all(), (objects, column)
    probability = example_run.column("Nuclei", "StarConvex_Probability")
    assert ((probability > 0) & (probability <= 1)).all()
    assert (example_run.column("Cells", "Parent_Nuclei") > 0).all()
    assert (example_run.column("Nuclei", "Intensity_MeanIntensity_DNA") > 0).all()
    for row in rows:  # the bundled model: counts close to the annotations
        true_count = len(np.unique(tifffile.imread(ground_truth_of(row["FileName_DNA"])))) - 1
        assert 0.7 * true_count <= float(row["Count_Nuclei"]) <= 1.3 * true_count


def test_the_saved_labels_equal_the_backends(example_run):
    model = models.load("fluo_nuclei", precision=DEFAULT_PRECISION)
    saved = example_run.files("*_nuclei_labels.tiff")
    assert len(saved) == len(list(IMAGES.glob("*.png")))
    for path in saved:
        image = skimage.io.imread(IMAGES / path.name.replace("_nuclei_labels.tiff", ".png"))
        # the same code path on the same pixels (CellProfiler's are the PNG's divided by 255,
        # which the percentile normalisation undoes): identical labels
        np.testing.assert_array_equal(tifffile.imread(path), predict.segment(image, model).labels)


@pytest.mark.parametrize("colour", [False, True])
def test_display_shows_input_probability_and_outlines(model_dir, image, colour):
    module = make_module(model_dir, channel=2)
    module.show_window = True
    pixels = np.stack([np.zeros_like(image), image, image], axis=-1) if colour else image
    workspace = run_module(module, {"DNA": pixels})
    figure = FakeFigure()
    module.display(workspace, figure)
    shown = {call[1]: call for call in figure.calls[1:]}
    assert figure.calls[0] == ("set_subplots", ((2, 2),))
    assert shown[(0, 0)][2] == image.shape and "Input image" in shown[(0, 0)][3]
    assert shown[(1, 0)][3] == "Object probability" and shown[(1, 0)][2] == image.shape
    outlines = shown[(0, 1)]
    assert outlines[3] == "Nuclei outlines"
    labels = outlines[4]["cplabels"][0]["labels"][0]
    assert labels.max() == workspace.measurements.get_current_image_measurement("Count_Nuclei")
    assert "Objects" in shown[(1, 1)][4]["row_labels"]


# ------------------------------------------------------------------------------------------------
# The automatic model choice (nucleai.modality), its measurements, and the no-objects warning

BRIGHTFIELD_PIPELINE = EXAMPLES / "brightfield_nuclei.cppipe"


def automatic_module(**values):
    module = runstarconvex.RunStarConvex()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def test_new_modules_choose_automatically_and_saved_pipelines_keep_their_model():
    module = runstarconvex.RunStarConvex()
    assert module.model_source.value == runstarconvex.MODEL_BUNDLED
    assert module.bundled_model.value == runstarconvex.MODEL_AUTOMATIC
    assert module.bundled_model.choices[0] == runstarconvex.MODEL_AUTOMATIC
    assert {"fluo_nuclei", "histo_nuclei"} <= set(module.bundled_model.choices)
    assert module.model_is_automatic() and module.channel not in module.visible_settings()
    module.bundled_model.value = "fluo_nuclei"
    assert not module.model_is_automatic() and module.channel in module.visible_settings()
    fill_modules()
    pipeline = Pipeline()
    pipeline.load(str(PIPELINE))
    (saved,) = [m for m in pipeline.modules() if m.module_name == "RunStarConvex"]
    assert saved.bundled_model.value == "fluo_nuclei" and not saved.model_is_automatic()
    pipeline.load(str(BRIGHTFIELD_PIPELINE))
    (saved,) = [m for m in pipeline.modules() if m.module_name == "RunStarConvex"]
    assert saved.model_is_automatic()


def test_the_automatic_choice_declares_its_measurements(model_dir):
    pipeline = Pipeline()
    module = automatic_module()
    columns = module.get_measurement_columns(pipeline)
    for column in (("Image", "StarConvex_ImageKind_Nuclei", "varchar(64)"),
                   ("Image", "StarConvex_Model_Nuclei", "varchar(64)"),
                   ("Image", "StarConvex_Preparation_Nuclei", "varchar(64)")):
        assert column in columns
    assert module.get_measurements(pipeline, "Image", "StarConvex") == ["Status", "Precision", "ImageKind", "Model",
                                                                               "Preparation"]
    assert module.get_measurement_objects(pipeline, "Image", "StarConvex", "Model") == ["Nuclei"]
    chosen = make_module(model_dir)  # a chosen model records no decision
    assert not any("ImageKind" in column[1] for column in chosen.get_measurement_columns(pipeline))
    assert chosen.get_measurements(pipeline, "Image", "StarConvex") == ["Status", "Precision"]


def test_the_automatic_choice_segments_and_records_the_decision():
    for path, kind, model, seen in ((sorted(BRIGHTFIELD.glob("*.png"))[0], "brightfield", "histo_nuclei", "haematoxylin"),
                                    (sorted(HISTOLOGY.glob("*.png"))[0], "histology", "histo_nuclei", "none"),
                                    (IMAGES / "nuclei_05040e2e.png", "fluorescence", "fluo_nuclei", "none")):
        pixels = skimage.io.imread(path) / 255.0  # as CellProfiler holds it
        module = automatic_module()
        module.validate_module(Pipeline())
        workspace = run_module(module, {"DNA": pixels})
        m = workspace.measurements
        assert m["Image", "StarConvex_ImageKind_Nuclei"] == kind
        assert m["Image", "StarConvex_Model_Nuclei"] == model
        assert m["Image", "StarConvex_Preparation_Nuclei"] == seen
        assert m["Image", "StarConvex_Status_Nuclei"] == "ok"
        result, decision = modality.segment_auto(pixels, precision=DEFAULT_PRECISION)
        np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented, result.labels)
        assert m["Image", "Count_Nuclei"] == result.count > 5
    flagged = run_module(automatic_module(), {"DNA": np.full((40, 40), np.nan)})
    m = flagged.measurements
    assert m["Image", "StarConvex_Status_Nuclei"] == "error: image has NaN or infinite pixels"
    assert m["Image", "StarConvex_ImageKind_Nuclei"] == m["Image", "StarConvex_Model_Nuclei"] == "none"
    assert m["Image", "StarConvex_Preparation_Nuclei"] == "none"


def test_the_automatic_choice_needs_a_model_for_every_kind(tmp_path, monkeypatch):
    only_fluo = tmp_path / "models"
    only_fluo.mkdir()
    (only_fluo / "fluo_nuclei").symlink_to(models.bundled_model_dir("fluo_nuclei"))
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(only_fluo))
    module = automatic_module()
    with pytest.raises(ValidationError, match="no model for histology images") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.bundled_model


def test_no_objects_in_an_image_that_is_not_blank_is_logged_and_flagged(caplog):
    caplog.set_level(logging.WARNING)
    pixels = skimage.io.imread(sorted(BRIGHTFIELD.glob("*.png"))[0]) / 255.0
    module = automatic_module(bundled_model="fluo_nuclei", use_model_thresholds=False, prob_thresh=0.999)
    workspace = run_module(module, {"DNA": pixels})
    assert workspace.measurements["Image", "Count_Nuclei"] == 0
    assert workspace.measurements["Image", "StarConvex_Status_Nuclei"] == (
        "warning: no objects found although the image is not blank")
    assert "RunStarConvex: image 'DNA'" in caplog.text and "it looks like brightfield" in caplog.text
    assert "wrong polarity" in caplog.text
    caplog.clear()
    blank = run_module(automatic_module(), {"DNA": np.zeros((64, 64))})  # nothing to segment: no warning
    assert blank.measurements["Image", "StarConvex_Status_Nuclei"] == "blank"
    assert blank.measurements["Image", "StarConvex_ImageKind_Nuclei"] == "no contrast"
    assert "not blank" not in caplog.text


@pytest.fixture(scope="module")
def brightfield_run(tmp_path_factory):
    return run_pipeline(BRIGHTFIELD_PIPELINE, BRIGHTFIELD, tmp_path_factory.mktemp("brightfield"))


def test_the_brightfield_example_chooses_automatically_and_scores_itself(brightfield_run):
    assert "Bundled model:Automatic" in BRIGHTFIELD_PIPELINE.read_text()
    rows = brightfield_run.tables["Image"]
    assert sorted(row["FileName_Brightfield"] for row in rows) == sorted(p.name for p in BRIGHTFIELD.glob("*.png"))
    for row in rows:
        path = BRIGHTFIELD / row["FileName_Brightfield"]
        assert row["StarConvex_ImageKind_Nuclei"] == "brightfield"
        assert row["StarConvex_Model_Nuclei"] == "histo_nuclei" and row["StarConvex_Preparation_Nuclei"] == "haematoxylin"
        assert row["StarConvex_Status_Nuclei"] == "ok"
        result, _ = modality.segment_auto(skimage.io.imread(path), precision=DEFAULT_PRECISION)
        truth = tifffile.imread(path.with_suffix(".tif"))
        assert float(row["Count_Nuclei"]) == result.count > 0.5 * truth.max()
        dsb = float(row["Evaluation_DSBScore_GroundTruth_Nuclei"])
        assert dsb == pytest.approx(metrics.evaluate_image(truth, result.labels).dsb_score, abs=1e-9)
        assert dsb > 0.05  # fluo_nuclei on these images as they are scores 0
