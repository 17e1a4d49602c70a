"""TTAMerge: both modes in process (settings, measurements, relationships, errors) and the
example pipeline ``example_pipelines/ttamerge_nuclei.cppipe`` headless.

The in-process tests build a CellProfiler workspace around the module, as CellProfiler's own
module tests do, with the tiny test model. The integration test runs the example pipeline with
``--plugins-directory plugins`` on the bundled images with the bundled model ``fluo_nuclei``.
"""
import io

import numpy as np
import pytest
import skimage.io
import tifffile

import ttamerge
from _failure_policy import ON_FAILURE_FLAG, ON_FAILURE_STOP
from cellprofiler_core.constants.measurement import R_PARENT
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_run import FakeFigure, run_module, run_pipeline
from nucleai import models, tta
from nucleai.errors import InputError
from nucleai.predict import SegmentOptions
from testdata import BLANK_FIELD, EXAMPLES, IMAGES, DEFAULT_PRECISION
from tiny_model import synthetic_image, tiny_model_dir

PIPELINE = EXAMPLES / "ttamerge_nuclei.cppipe"


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture(scope="module")
def image():
    """A synthetic nucleus image as CellProfiler holds it: float in [0, 1], not square."""
    pixels = synthetic_image(np.random.default_rng(5), (140, 170), n_objects=20)[0]
    return (pixels - pixels.min()) / np.ptp(pixels)


def tta_module(model_dir, **values):
    module = ttamerge.TTAMerge()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    module.model_source.value = ttamerge.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{model_dir}"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def merge_module(names, **values):
    module = ttamerge.TTAMerge()
    module.set_module_num(3)
    module.mode.value = ttamerge.MODE_MERGE
    module.object_names.value = ", ".join(names)
    module.y_name.value = "Consensus"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def box(labels, value, rows, cols):
    labels[rows[0] : rows[1], cols[0] : cols[1]] = value
    return labels


@pytest.fixture
def two_sets():
    """Two object sets: a shared object (IoU 0.8), and one object only each set found."""
    a = box(box(np.zeros((30, 40), np.int32), 1, (2, 10), (2, 12)), 2, (15, 25), (20, 30))
    b = box(box(np.zeros((30, 40), np.int32), 1, (20, 28), (2, 8)), 2, (2, 10), (4, 12))
    return {"StarConvexNuclei": a, "ClassicalNuclei": b}


# ------------------------------------------------------------------------------------------------
# Test-time augmentation mode


def test_tta_objects_and_measurements_are_the_backends(model_dir, image):
    workspace = run_module(tta_module(model_dir), {"DNA": image})
    expected = tta.segment_tta(image, models.load(model_dir, precision=DEFAULT_PRECISION))
    labels = workspace.object_set.get_objects("Nuclei").segmented
    np.testing.assert_array_equal(labels, expected.labels)
    m = workspace.measurements
    count = expected.count
    assert count > 5 and m.get_current_image_measurement("Count_Nuclei") == count
    for feature in ("Location_Center_X", "Location_Center_Y", "Number_Object_Number"):
        assert len(m.get_current_measurement("Nuclei", feature)) == count
    np.testing.assert_array_equal(m.get_current_measurement("Nuclei", "TTAMerge_Votes"), expected.votes)
    np.testing.assert_allclose(m.get_current_measurement("Nuclei", "TTAMerge_MeanIoU"), expected.mean_iou)
    assert "NucleiTTAProbability" not in workspace.image_set.names


def test_transforms_thresholds_and_the_averaged_probability_map(model_dir, image):
    module = tta_module(model_dir, transforms="identity,rot90,transpose", use_model_thresholds=False,
                        prob_thresh=0.6, nms_thresh=0.35, save_probability=True, probability_name="P")
    workspace = run_module(module, {"DNA": image})
    expected = tta.segment_tta(image, models.load(model_dir, precision=DEFAULT_PRECISION), tta.TTAOptions(["identity", "rot90", "transpose"]),
                               SegmentOptions(prob_thresh=0.6, nms_thresh=0.35), return_prob_map=True)
    np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented, expected.labels)
    np.testing.assert_allclose(workspace.image_set.get_image("P").pixel_data, expected.prob_map)


@pytest.mark.parametrize("rule, number, expected", [
    (ttamerge.VOTES_HALF, 2, 3), (ttamerge.VOTES_MORE, 2, 4), (ttamerge.VOTES_ALL, 2, 6),
    (ttamerge.VOTES_NUMBER, 5, 5),
])
def test_the_vote_rule_sets_the_votes_an_object_needs(model_dir, image, rule, number, expected):
    workspace = run_module(tta_module(model_dir, vote_rule=rule, min_votes=number), {"DNA": image})
    reference = tta.segment_tta(image, models.load(model_dir, precision=DEFAULT_PRECISION), tta.TTAOptions(min_votes=expected))
    np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented,
                                  reference.labels)
    assert (workspace.measurements.get_current_measurement("Nuclei", "TTAMerge_Votes") >= expected).all()


def test_more_votes_than_versions_is_refused(model_dir, image):
    module = tta_module(model_dir, transforms="identity,flip_x", vote_rule=ttamerge.VOTES_NUMBER,
                        min_votes=3)
    message = r"setting 'Number of versions': min_votes must be from 1 to 2 \(the number of versions\), got 3"
    with pytest.raises(ValidationError, match=message) as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.min_votes
    with pytest.raises(ValidationError, match=message):
        run_module(module, {"DNA": image})
    module = tta_module(model_dir, transforms="")
    with pytest.raises(ValidationError, match="setting 'Transforms': no transforms given") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.transforms


def test_a_missing_model_or_a_wrong_channel_is_reported_with_its_setting(model_dir, image, tmp_path):
    module = tta_module(tmp_path / "nowhere")
    with pytest.raises(ValidationError, match="does not exist") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_folder
    with pytest.raises(InputError, match="TTAMerge: setting 'Model folder'.*does not exist"):
        run_module(module, {"DNA": image})
    colour = np.stack([image, image * 0.5, np.zeros_like(image)], axis=-1)
    with pytest.raises(InputError, match=r"setting 'Channel to use for colour images' is 4 but the "
                                         r"image has 3 channels, 1 to 3$"):
        run_module(tta_module(model_dir, channel=4, on_failure=ON_FAILURE_STOP), {"DNA": colour})
    tta_module(model_dir).validate_module(Pipeline())


# ------------------------------------------------------------------------------------------------
# Merging object sets


def test_merging_two_sets_keeps_either_by_default_and_both_for_a_consensus(two_sets):
    workspace = run_module(merge_module(list(two_sets)), objects=two_sets)
    labels = workspace.object_set.get_objects("Consensus").segmented
    expected = tta.merge_instances(list(two_sets.values()), tta.MergeOptions(min_votes=1))
    np.testing.assert_array_equal(labels, expected.labels)
    m = workspace.measurements
    np.testing.assert_array_equal(m.get_current_measurement("Consensus", "TTAMerge_Votes"), [2, 1, 1])
    np.testing.assert_allclose(m.get_current_measurement("Consensus", "TTAMerge_MeanIoU"),
                               [(1 + 64 / 80) / 2, 1, 1])
    # parents: the input object overlapping each merged object most; children counts
    np.testing.assert_array_equal(m.get_current_measurement("Consensus", "Parent_StarConvexNuclei"), [1, 2, 0])
    np.testing.assert_array_equal(m.get_current_measurement("Consensus", "Parent_ClassicalNuclei"), [2, 0, 1])
    np.testing.assert_array_equal(
        m.get_current_measurement("StarConvexNuclei", "Children_Consensus_Count"), [1, 1])
    relationships = m.get_relationships(3, R_PARENT, "ClassicalNuclei", "Consensus")
    assert sorted(zip(relationships["ObjectNumber_First"], relationships["ObjectNumber_Second"])) == [(1, 3), (2, 1)]

    both = run_module(merge_module(list(two_sets), vote_rule=ttamerge.VOTES_MORE), objects=two_sets)
    consensus = both.object_set.get_objects("Consensus").segmented
    assert consensus.max() == 1 and (consensus > 0).sum() == 80  # the union of the shared pair


def test_merging_needs_two_sets_of_the_same_size_and_a_new_name(two_sets):
    module = merge_module(["StarConvexNuclei"])
    with pytest.raises(ValidationError, match="at least two object sets") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.object_names
    module = merge_module(list(two_sets), y_name="ClassicalNuclei")
    with pytest.raises(ValidationError, match="need a new name") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.y_name
    merge_module(list(two_sets)).validate_module(Pipeline())
    two_sets["ClassicalNuclei"] = two_sets["ClassicalNuclei"][:, :35]
    with pytest.raises(InputError, match=r"differ in size \('StarConvexNuclei' 30x40, "
                                         r"'ClassicalNuclei' 30x35\).*Select the objects to merge"):
        run_module(merge_module(list(two_sets), on_failure=ON_FAILURE_STOP), objects=two_sets)


# ------------------------------------------------------------------------------------------------
# Settings, measurement declarations, display


def test_visible_settings_follow_the_mode(model_dir):
    module = tta_module(model_dir)
    visible = module.visible_settings()
    for shown in (module.x_name, module.model_folder, module.transforms, module.vote_rule,
                  module.save_probability):
        assert shown in visible
    for hidden in (module.object_names, module.bundled_model, module.prob_thresh,
                   module.min_votes, module.probability_name):
        assert hidden not in visible
    module.mode.value = ttamerge.MODE_MERGE
    module.vote_rule.value = ttamerge.VOTES_NUMBER
    visible = module.visible_settings()
    assert visible == [module.mode, module.object_names, module.y_name, module.vote_rule,
                       module.min_votes, module.on_failure]
    assert all(setting in module.settings() for setting in visible)


def test_settings_survive_saving_and_loading(model_dir):
    fill_modules()  # so that Pipeline.load finds the plugin
    modules = [
        tta_module(model_dir, transforms="identity,transverse", vote_rule=ttamerge.VOTES_NUMBER,
                   min_votes=2, save_probability=True, probability_name="P"),
        merge_module(["A", "B", "C"], vote_rule=ttamerge.VOTES_ALL),
    ]
    pipeline = Pipeline()
    for number, module in enumerate(modules, 1):
        module.set_module_num(number)
        pipeline.add_module(module)
    text = io.StringIO()
    pipeline.dump(text, save_image_plane_details=False)
    loaded = Pipeline()
    loaded.load(io.StringIO(text.getvalue()))
    for copy, module in zip(loaded.modules(), modules):
        assert copy.variable_revision_number == 3
        assert [s.value_text for s in copy.settings()] == [s.value_text for s in module.settings()]
    assert loaded.modules()[1].object_names.value == ["A", "B", "C"]
    values = [s.value_text for s in modules[0].settings()]
    assert modules[0].upgrade_settings(values, 3, "TTAMerge") == (values, 3)
    # revision 2 (before precision and GPU memory) loads with their defaults appended, revision 1
    # (before the failure setting too) with all three
    revision_2 = values[:-2]
    assert modules[0].upgrade_settings(revision_2, 2, "TTAMerge") == (revision_2 + ["Automatic", "0"], 3)
    assert modules[0].upgrade_settings(revision_2[:-1], 1, "TTAMerge") == (
        revision_2[:-1] + [ON_FAILURE_FLAG, "Automatic", "0"], 3)


def test_its_probability_image_name_differs_from_runstarconvexs():
    import runstarconvex

    assert ttamerge.TTAMerge().probability_name.value == "NucleiTTAProbability"
    assert runstarconvex.RunStarConvex().probability_name.value == "NucleiProbability"


def test_measurement_columns_categories_and_relationships(model_dir, two_sets):
    pipeline = Pipeline()
    module = tta_module(model_dir)
    columns = module.get_measurement_columns(pipeline)
    assert ("Nuclei", "TTAMerge_Votes", "integer") in columns
    assert ("Nuclei", "TTAMerge_MeanIoU", "float") in columns
    assert ("Image", "Count_Nuclei", "integer") in columns
    assert not any(column[1].startswith("Parent_") for column in columns)
    assert module.get_categories(pipeline, "Nuclei") == ["Location", "Number", "TTAMerge"]
    assert module.get_measurements(pipeline, "Nuclei", "TTAMerge") == ["Votes", "MeanIoU"]
    assert module.get_object_relationships(pipeline) == []

    module = merge_module(list(two_sets))
    columns = module.get_measurement_columns(pipeline)
    assert ("Consensus", "Parent_ClassicalNuclei", "integer") in columns
    assert ("StarConvexNuclei", "Children_Consensus_Count", "integer") in columns
    assert "Parent" in module.get_categories(pipeline, "Consensus")
    assert module.get_measurements(pipeline, "Consensus", "Parent") == list(two_sets)
    assert module.get_categories(pipeline, "ClassicalNuclei") == ["Children"]
    assert module.get_measurements(pipeline, "ClassicalNuclei", "Children") == ["Consensus_Count"]
    assert module.get_object_relationships(pipeline) == [
        ("Parent", name, "Consensus", "AvailableEachCycle") for name in two_sets]
    assert module.volumetric() is False


def test_display_shows_input_votes_outlines_and_a_table(model_dir, image, two_sets):
    for module, kwargs in ((tta_module(model_dir), {"images": {"DNA": image}}),
                           (merge_module(list(two_sets)), {"objects": two_sets})):
        module.show_window = True
        workspace = run_module(module, **kwargs)
        figure = FakeFigure()
        module.display(workspace, figure)
        shown = {call[1]: call for call in figure.calls[1:]}
        assert figure.calls[0] == ("set_subplots", ((2, 2),))
        assert shown[(1, 0)][3] == "Votes per object" and shown[(1, 0)][4]["vmax"] == workspace.display_data.n_versions
        labels = shown[(0, 1)][4]["cplabels"][0]["labels"][0]
        count = workspace.measurements.get_current_image_measurement(f"Count_{module.y_name.value}")
        assert labels.max() == count > 0
        assert "Objects" in shown[(1, 1)][4]["row_labels"]
    assert shown[(0, 0)][0] == "subplot_imshow_labels"  # merged sets without an image


# ------------------------------------------------------------------------------------------------
# The example pipeline, headless


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    return run_pipeline(PIPELINE, IMAGES, tmp_path_factory.mktemp("ttamerge"))


def test_the_example_pipeline_is_what_make_pipelines_writes(tmp_path):
    import make_pipelines

    make_pipelines.load_cellprofiler()
    make_pipelines.write(make_pipelines.tta_and_consensus(), tmp_path / "ttamerge.cppipe")
    assert (tmp_path / "ttamerge.cppipe").read_text() == PIPELINE.read_text()


def test_the_example_pipeline_measures_tta_and_consensus_objects(example_run):
    counts = example_run.column("Image", "Count_Nuclei")
    blank = np.array([row["FileName_DNA"] == BLANK_FIELD for row in example_run.tables["Image"]])
    assert len(counts) == len(list(IMAGES.glob("*.png"))) and (counts[~blank] > 0).all() and counts[blank] == 0
    assert [row["TTAMerge_Status_Nuclei"] for row in example_run.tables["Image"]] == [
        "blank" if b else "ok" for b in blank]
    votes = example_run.column("Nuclei", "TTAMerge_Votes")
    assert len(votes) == counts.sum() and ((votes >= 3) & (votes <= 6)).all()
    mean_iou = example_run.column("Nuclei", "TTAMerge_MeanIoU")
    assert ((mean_iou > 0) & (mean_iou <= 1)).all()
    assert (example_run.column("Cells", "Parent_Nuclei") > 0).all()
    assert np.isfinite(example_run.column("Nuclei", "Intensity_MeanIntensity_DNA")).all()
    # the consensus: objects both upstream modules found, each its parent in both sets
    consensus = example_run.column("Image", "Count_ConsensusNuclei")
    assert (consensus[~blank] > 0).all() and consensus[blank] == 0
    assert (consensus <= example_run.column("Image", "Count_StarConvexNuclei")).all()
    assert (consensus <= example_run.column("Image", "Count_ClassicalNuclei")).all()
    assert (example_run.column("ConsensusNuclei", "TTAMerge_Votes") == 2).all()
    for parent in ("Parent_StarConvexNuclei", "Parent_ClassicalNuclei"):
        assert (example_run.column("ConsensusNuclei", parent) > 0).all()
    children = example_run.column("StarConvexNuclei", "Children_ConsensusNuclei_Count")
    assert children.sum() == consensus.sum()


def test_the_saved_labels_equal_the_backends(example_run):
    model = models.load("fluo_nuclei", precision=DEFAULT_PRECISION)
    saved = example_run.files("*_nuclei_labels.tiff")
    assert len(saved) == len(list(IMAGES.glob("*.png")))
    for path in saved:
        image = skimage.io.imread(IMAGES / path.name.replace("_nuclei_labels.tiff", ".png"))
        # the same code path on the same pixels (CellProfiler's are the PNG's divided by 255,
        # which the percentile normalisation undoes): identical labels
        np.testing.assert_array_equal(tifffile.imread(path), tta.segment_tta(image, model).labels)


def test_the_automatic_model_choice_under_test_time_augmentation():
    """The default model choice, Automatic, decides per image as RunStarConvex does, through the
    same backend call (nucleai.modality.segment_auto with the TTA options)."""
    from nucleai import modality
    from testdata import BRIGHTFIELD

    module = ttamerge.TTAMerge()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    module.transforms.value = ["identity", "flip_x"]
    assert module.model_is_automatic() and module.records_model_choice()
    module.validate_module(Pipeline())
    pixels = skimage.io.imread(sorted(BRIGHTFIELD.glob("*.png"))[0]) / 255.0
    workspace = run_module(module, {"DNA": pixels})
    m = workspace.measurements
    assert m["Image", "TTAMerge_ImageKind_Nuclei"] == "brightfield"
    assert m["Image", "TTAMerge_Model_Nuclei"] == "histo_nuclei" and m["Image", "TTAMerge_Preparation_Nuclei"] == "haematoxylin"
    expected, _ = modality.segment_auto(pixels, tta=tta.TTAOptions(("identity", "flip_x")), precision=DEFAULT_PRECISION)
    np.testing.assert_array_equal(workspace.object_set.get_objects("Nuclei").segmented, expected.labels)
    assert ("Image", "TTAMerge_Model_Nuclei", "varchar(64)") in module.get_measurement_columns(Pipeline())
    module.mode.value = ttamerge.MODE_MERGE  # merging object sets runs no model: no decision recorded
    assert not module.records_model_choice() and module.get_measurements(Pipeline(), "Image", "TTAMerge") == ["Status"]
