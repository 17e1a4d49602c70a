"""RefineContoursUNet: the module in process (settings, provenance, measurements, errors) and in a
real headless pipeline refining RunStarConvex's objects.

The U-Net is the tiny one trained in seconds (``tiny_unet``), never the bundled model: the
headless test points ``NUCLEAI_MODELS_DIR`` at a temporary models folder holding the tiny U-Net as
``fluo_refine`` (with lenient parameters, since a network trained on synthetic blobs is unsure on
real images) beside the repository's star-convex ``fluo_nuclei``.
"""
import io
import json
import shutil

import numpy as np
import pytest
import scipy.ndimage as ndi

import refinecontoursunet
from _failure_policy import ON_FAILURE_FLAG, ON_FAILURE_STOP
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_run import FakeFigure
from cellprofiler_run import run_module as run_in_workspace
from cellprofiler_run import run_pipeline
from nucleai import models
from nucleai.errors import InputError
from nucleai.refine import apply, unet
from testdata import BLANK_FIELD, EXAMPLES, IMAGES, DEFAULT_PRECISION, REPO
from tiny_model import synthetic_image, tiny_model_dir
from tiny_unet import tiny_unet_dir

PIPELINE = EXAMPLES / "refine_nuclei.cppipe"

LENIENT = {"p1": 0.3, "p2": 10, "p3": 0.5, "p4": 1, "p5": 1, "p6": 0.3}


@pytest.fixture(scope="module")
def model_dir():
    return tiny_unet_dir()


@pytest.fixture(scope="module")
def scene():
    """A synthetic image (float in [0, 1]), its true labels, and detections to refine: every
    object grown by 2 px, one split in two, plus a speck and a spurious object in the background."""
    image, truth = synthetic_image(np.random.default_rng(11), (150, 180), n_objects=14)
    image = (image - image.min()) / np.ptp(image)
    distance, (iy, ix) = ndi.distance_transform_edt(truth == 0, return_indices=True)
    objects = np.where(distance <= 2, truth[iy, ix], 0).astype(np.int32)
    first = objects == 1
    ys, xs = np.nonzero(first)
    objects[first & (xs.mean() <= np.indices(objects.shape)[1])] = 50  # object 1 split in two
    free = np.argwhere(distance > 12)
    y, x = free[len(free) // 2]
    objects[y - 1 : y + 1, x - 1 : x + 1] = 60  # a 4-pixel speck
    y, x = free[len(free) // 3]
    objects[y - 4 : y + 4, x - 4 : x + 4] = 61  # an 8x8 square on background
    return image, truth, objects


def make_module(model_dir, **values):
    module = refinecontoursunet.RefineContoursUNet()
    module.set_module_num(2)
    module.x_name.value = "Detected"
    module.image_name.value = "DNA"
    module.model_source.value = refinecontoursunet.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{model_dir}"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def run_module(module, images, labels):
    """Run the module on one image set in which an earlier module detected ``labels``."""
    return run_in_workspace(module, images, {"Detected": labels})


def lenient(model_dir, **values):
    return make_module(model_dir, use_model_parameters=False, **LENIENT, **values)


def test_objects_equal_the_backends_and_parents_follow_the_provenance(model_dir, scene):
    image, truth, objects = scene
    workspace = run_module(lenient(model_dir), {"DNA": image}, objects)
    expected = apply.refine_image(image, objects, models.load(model_dir, kind="unet", precision=DEFAULT_PRECISION), apply.RefineOptions(**LENIENT)).refinement
    refined = workspace.object_set.get_objects("RefinedNuclei").segmented
    np.testing.assert_array_equal(refined, expected.labels)
    m = workspace.measurements
    count = expected.count
    assert count > 5 and m.get_current_image_measurement("Count_RefinedNuclei") == count
    # ObjectProcessing's parents (the input object an output object overlaps most) are the ones
    # the refinement names each output object after
    parents = m.get_current_measurement("RefinedNuclei", "Parent_Detected")
    np.testing.assert_array_equal(parents, expected.parents)
    children = m.get_current_measurement("Detected", "Children_RefinedNuclei_Count")
    assert len(children) == objects.max()  # one value per input object number (ids 1 ... 61)
    np.testing.assert_array_equal(children, np.bincount(expected.parents, minlength=objects.max() + 1)[1:])
    # the split object was merged back: one output object with two input objects
    merged = m.get_current_measurement("RefinedNuclei", "RefineContoursUNet_InputCount")
    assert merged.max() == 2 and merged.sum() == np.count_nonzero(expected.output_of)
    relationships = m.get_relationships(2, "Parent", "Detected", "RefinedNuclei")
    pairs = set(zip(relationships["ObjectNumber_First"], relationships["ObjectNumber_Second"]))
    assert pairs == {(int(i), int(o)) for i, o in zip(expected.input_ids, expected.output_of) if o}


def test_change_measurements(model_dir, scene):
    image, truth, objects = scene
    workspace = run_module(lenient(model_dir), {"DNA": image}, objects)
    expected = apply.refine_image(image, objects, models.load(model_dir, kind="unet", precision=DEFAULT_PRECISION), apply.RefineOptions(**LENIENT)).refinement
    m = workspace.measurements
    counts = expected.counts()
    assert counts["small"] >= 1  # the speck
    for feature, fate in refinecontoursunet.IMAGE_FATES:
        assert m.get_current_image_measurement(f"RefineContoursUNet_{feature}_RefinedNuclei") == counts[fate]
    shift = m.get_current_image_measurement("RefineContoursUNet_MeanBoundaryShift_RefinedNuclei")
    assert shift == pytest.approx(expected.mean_boundary_shift) and shift > 0
    removed = m.get_current_measurement("RefinedNuclei", "RefineContoursUNet_PixelsRemoved")
    np.testing.assert_array_equal(removed, expected.pixels_removed)
    probability = m.get_current_measurement("RefinedNuclei", "RefineContoursUNet_MeanProbability")
    assert (probability >= LENIENT["p6"]).all()
    # the 2-pixel margin of the detections is mostly taken back
    truth_score = _dsb(truth, expected.labels)
    assert truth_score > _dsb(truth, objects)


def _dsb(truth, labels):
    from nucleai.metrics import evaluate_image

    return evaluate_image(truth, labels).dsb_score


def test_the_model_parameters_are_used_unless_set(model_dir, scene, tmp_path):
    image, _, objects = scene
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "refine.json").write_text(json.dumps({"parameters": LENIENT}))
    from_model = run_module(make_module(folder), {"DNA": image}, objects)
    by_hand = run_module(lenient(model_dir), {"DNA": image}, objects)
    np.testing.assert_array_equal(from_model.object_set.get_objects("RefinedNuclei").segmented,
                                  by_hand.object_set.get_objects("RefinedNuclei").segmented)
    published = run_module(make_module(model_dir), {"DNA": image}, objects)  # no refine.json
    assert published.measurements.get_current_image_measurement("Count_RefinedNuclei") != \
        from_model.measurements.get_current_image_measurement("Count_RefinedNuclei")


def test_switching_to_own_parameters_starts_from_the_models_tuned_values(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "refine.json").write_text(json.dumps({"parameters": LENIENT}))
    module = make_module(folder)
    assert module.p2.value == 44  # the published value until the user switches
    module.use_model_parameters.value = False
    module.on_setting_changed(module.use_model_parameters, Pipeline())
    assert {name: getattr(module, name).value for name in LENIENT} == LENIENT
    module.p2.value = 12  # the user's own change is kept when other settings change
    module.on_setting_changed(module.tiling, Pipeline())
    assert module.p2.value == 12
    unusable = make_module(tmp_path / "nowhere")
    unusable.use_model_parameters.value = False
    unusable.on_setting_changed(unusable.use_model_parameters, Pipeline())
    assert unusable.p2.value == 44


def test_the_probability_map_can_be_saved(model_dir, scene):
    image, _, objects = scene
    workspace = run_module(lenient(model_dir, save_probability=True, probability_name="P"), {"DNA": image}, objects)
    prob = workspace.image_set.get_image("P").pixel_data
    assert prob.shape == image.shape and 0 <= prob.min() and prob.max() <= 1
    np.testing.assert_array_equal(prob, unet.predict_probability(image, models.load(model_dir, kind="unet", precision=DEFAULT_PRECISION)))


def test_tiles_and_colour_channel_reach_the_backend(model_dir, scene):
    image, _, objects = scene
    grey = run_module(lenient(model_dir), {"DNA": image}, objects)
    colour = np.stack([np.zeros_like(image), image, np.ones_like(image)], axis=-1)
    chosen = run_module(lenient(model_dir, channel=2, tiling=refinecontoursunet.TILES_FIXED, tiles_y=2, tiles_x=3),
                        {"DNA": colour}, objects)
    np.testing.assert_array_equal(chosen.object_set.get_objects("RefinedNuclei").segmented,
                                  grey.object_set.get_objects("RefinedNuclei").segmented)
    with pytest.raises(InputError, match=r"setting 'Channel to use for colour images' is 4 but the image "
                                         r"has 3 channels, 1 to 3"):
        run_module(lenient(model_dir, channel=4, on_failure=ON_FAILURE_STOP), {"DNA": colour}, objects)


def test_image_and_objects_of_different_size_are_refused_naming_both(model_dir, scene):
    image, _, objects = scene
    with pytest.raises(InputError, match=r"objects 'Detected' are 150x180 but image 'DNA' is 150x179.*"
                                         r"Select the input objects.*Select the image"):
        run_module(lenient(model_dir, on_failure=ON_FAILURE_STOP), {"DNA": image[:, :-1]}, objects)


def test_a_missing_or_broken_model_fails_validation(model_dir, tmp_path, monkeypatch):
    module = make_module(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="does not exist") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_folder
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    (folder / "refine.json").write_text(json.dumps({"parameters": {"p1": 3}}))
    with pytest.raises(ValidationError, match=r"refine.json: p1 must be in \[0.0, 1.0\], got 3.0"):
        make_module(folder).validate_module(Pipeline())
    with pytest.raises(InputError, match="RefineContoursUNet: setting 'Refinement model folder'.*p1"):
        run_module(make_module(folder), {"DNA": np.zeros((32, 32))}, np.zeros((32, 32), int))
    star_convex = tiny_model_dir()
    with pytest.raises(ValidationError, match="a star-convex model, not a contour-refinement U-Net"):
        make_module(star_convex).validate_module(Pipeline())
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    module = make_module(model_dir, model_source=refinecontoursunet.MODEL_BUNDLED, bundled_model="fluo_refine")
    module.validate_module(Pipeline())
    module.bundled_model.value = "gone"
    with pytest.raises(ValidationError, match="no bundled model 'gone'") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.bundled_model


def test_bundled_choices_list_refinement_models_only(model_dir, monkeypatch, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(model_dir, root / "fluo_refine")
    shutil.copytree(tiny_model_dir(), root / "fluo_nuclei")
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(root))
    assert refinecontoursunet._bundled_choices() == ["fluo_refine"]
    assert models.bundled_models() == ["fluo_nuclei"]


def test_visible_settings_show_only_what_applies(model_dir):
    module = make_module(model_dir)
    visible = module.visible_settings()
    assert module.model_folder in visible and module.bundled_model not in visible
    for hidden in (module.p1, module.p6, module.tiles_y, module.probability_name):
        assert hidden not in visible
    module.model_source.value = refinecontoursunet.MODEL_BUNDLED
    module.use_model_parameters.value = False
    module.tiling.value = refinecontoursunet.TILES_FIXED
    module.save_probability.value = True
    visible = module.visible_settings()
    assert module.bundled_model in visible and module.model_folder not in visible
    for shown in (module.p1, module.p2, module.p3, module.p4, module.p5, module.p6, module.tiles_y,
                  module.tiles_x, module.probability_name):
        assert shown in visible
    assert all(setting in module.settings() for setting in visible)


def test_settings_survive_saving_and_loading(model_dir):
    fill_modules()
    module = lenient(model_dir, save_probability=True, probability_name="P", tiling=refinecontoursunet.TILES_FIXED)
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
    assert module.upgrade_settings(values, 3, "RefineContoursUNet") == (values, 3)
    # revision 2 (before precision and GPU memory) loads with their defaults appended, revision 1
    # (before the failure setting too) with all three
    revision_2 = values[:-2]
    assert module.upgrade_settings(revision_2, 2, "RefineContoursUNet") == (revision_2 + ["Automatic", "0"], 3)
    assert module.upgrade_settings(revision_2[:-1], 1, "RefineContoursUNet") == (
        revision_2[:-1] + [ON_FAILURE_FLAG, "Automatic", "0"], 3)


def test_measurement_columns_categories_and_relationships(model_dir):
    module = make_module(model_dir)
    pipeline = Pipeline()
    columns = module.get_measurement_columns(pipeline)
    for column in [("RefinedNuclei", "Parent_Detected", "integer"), ("Detected", "Children_RefinedNuclei_Count", "integer"),
                   ("Image", "Count_RefinedNuclei", "integer"),
                   ("Image", "RefineContoursUNet_Merged_RefinedNuclei", "integer"),
                   ("Image", "RefineContoursUNet_MeanBoundaryShift_RefinedNuclei", "float"),
                   ("RefinedNuclei", "RefineContoursUNet_BoundaryShift", "float")]:
        assert column in columns
    assert "RefineContoursUNet" in module.get_categories(pipeline, "RefinedNuclei")
    assert "RefineContoursUNet" in module.get_categories(pipeline, "Image")
    assert "Parent" in module.get_categories(pipeline, "RefinedNuclei")
    assert "BoundaryShift" in module.get_measurements(pipeline, "RefinedNuclei", "RefineContoursUNet")
    assert "RemovedSmall" in module.get_measurements(pipeline, "Image", "RefineContoursUNet")
    assert "Precision" in module.get_measurements(pipeline, "Image", "RefineContoursUNet")
    assert ("Image", "RefineContoursUNet_Precision_RefinedNuclei", "varchar(16)") in columns
    assert module.get_measurement_objects(pipeline, "Image", "RefineContoursUNet", "Merged") == ["RefinedNuclei"]
    assert module.get_object_relationships(pipeline) == [
        ("Parent", "Detected", "RefinedNuclei", "AvailableEachCycle")]
    assert module.volumetric() is False


def test_display_shows_input_and_refined_outlines_probability_and_counts(model_dir, scene):
    image, _, objects = scene
    module = lenient(model_dir)
    module.show_window = True
    workspace = run_module(module, {"DNA": image}, objects)
    figure = FakeFigure()
    module.display(workspace, figure)
    shown = {call[1]: call for call in figure.calls[1:]}
    assert shown[(0, 0)][4]["cplabels"][0]["name"] == "Detected"
    assert shown[(1, 0)][3] == "U-Net nucleus probability"
    assert shown[(0, 1)][4]["cplabels"][0]["name"] == "RefinedNuclei"
    assert "Merged into another" in shown[(1, 1)][4]["row_labels"]


# ------------------------------------------------------------------------------------------------
# The example pipeline, headless


@pytest.fixture(scope="module")
def models_folder(model_dir, tmp_path_factory):
    """The repository's fluo_nuclei, and the tiny U-Net as fluo_refine."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(REPO / "models" / "fluo_nuclei", root / "fluo_nuclei")
    shutil.copytree(model_dir, root / "fluo_refine")
    (root / "fluo_refine" / "refine.json").write_text(json.dumps({"parameters": LENIENT}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(models.MODELS_DIR_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def example_run(models_folder, tmp_path_factory):
    return run_pipeline(PIPELINE, IMAGES, tmp_path_factory.mktemp("refine"))


def test_the_example_pipeline_is_the_star_convex_one_with_refinement():
    text = PIPELINE.read_text()
    assert "RunStarConvex:[module_num:5" in text and "RefineContoursUNet:[module_num:6" in text
    assert "Name the output object:StarConvexNuclei" in text
    assert "Select the input objects:StarConvexNuclei" in text and "Name the output objects:Nuclei" in text
    assert "Bundled refinement model:fluo_refine" in text


def test_downstream_modules_measure_the_refined_objects(example_run):
    counts = example_run.column("Image", "Count_Nuclei")
    detected = example_run.column("Image", "Count_StarConvexNuclei")
    blank = np.array([row["FileName_DNA"] == BLANK_FIELD for row in example_run.tables["Image"]])
    assert (counts[~blank] > 0).all() and counts[blank] == 0 and (counts <= detected).all()
    assert [row["RefineContoursUNet_Status_Nuclei"] for row in example_run.tables["Image"]] == [
        "blank" if b else "ok" for b in blank]
    np.testing.assert_array_equal(example_run.column("Image", "Count_Cells"), counts)
    removed = sum(example_run.column("Image", f"RefineContoursUNet_{feature}_Nuclei")
                  for feature, _ in refinecontoursunet.IMAGE_FATES)
    np.testing.assert_array_equal(detected - removed, counts)
    assert len(example_run.tables["Nuclei"]) == counts.sum()
    parents = example_run.column("Nuclei", "Parent_StarConvexNuclei")
    assert (parents > 0).all()
    for column in ("Intensity_MeanIntensity_DNA", "RefineContoursUNet_BoundaryShift",
                   "RefineContoursUNet_MeanProbability"):
        assert np.isfinite(example_run.column("Nuclei", column)).all(), column
    children = example_run.column("StarConvexNuclei", "Children_Nuclei_Count")
    assert set(np.unique(children)) <= {0, 1} and children.sum() >= counts.sum()
    assert len(example_run.files("*_nuclei_labels.tiff")) == len(list(IMAGES.glob("*.png")))
