"""EvaluateSegmentation in a real headless pipeline, checked against ``nucleai evaluate``.

The example pipeline loads the bundled images with their ground-truth label images as objects,
segments them with IdentifyPrimaryObjects and with RunStarConvex (bundled model), evaluates
each, and saves each method's labels to its own subfolder; the CLI then scores the same saved
files independently, and the two must agree.
"""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellprofiler_core.setting import ValidationError
from cellprofiler_run import PipelineFailed, run_pipeline
from testdata import EXAMPLES, GROUND_TRUTH, IMAGES

PIPELINE = EXAMPLES / "evaluate_nuclei.cppipe"
METHODS = {"classical": "ClassicalNuclei", "starconvex": "StarConvexNuclei"}


@pytest.fixture(scope="module")
def evaluation_run(tmp_path_factory):
    return run_pipeline(PIPELINE, EXAMPLES, tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="module", params=sorted(METHODS))
def method(request):
    """(output subfolder, object name, measurement-name template) of one segmentation method."""
    objects = METHODS[request.param]
    return request.param, objects, "Evaluation_{}_GroundTruth_" + objects


@pytest.fixture(scope="module")
def cli_rows(evaluation_run, method, tmp_path_factory):
    table = tmp_path_factory.mktemp("cli") / "per_image.csv"
    subprocess.run(
        [Path(sys.executable).with_name("nucleai"), "evaluate", "--pred", evaluation_run.output_dir / method[0],
         "--truth", GROUND_TRUTH, "--csv", table],
        check=True, capture_output=True,
    )
    with open(table, newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def test_module_scores_equal_the_cli_on_the_same_files(evaluation_run, method, cli_rows):
    _, objects, name = method
    rows = evaluation_run.tables["Image"]
    assert len(rows) == len(cli_rows) == len(list(IMAGES.glob("*.png")))  # the blank field too
    for row in rows:
        cli = cli_rows[Path(row["FileName_DNA"]).stem]
        assert float(row[name.format("DSBScore")]) == pytest.approx(float(cli["dsb_score"]), abs=1e-9)
        assert float(row[name.format("MeanF1")]) == pytest.approx(float(cli["mean_f1"]), abs=1e-9)
        assert float(row[name.format("TruePositivesIoU050")]) == float(cli["tp@0.5"])
        assert float(row[name.format("FalsePositivesIoU075")]) == float(cli["fp@0.75"])
        assert float(row[name.format("Splits")]) == float(cli["n_splits"])
        assert float(row[name.format("GroundTruthCount")]) == float(cli["n_truth"])
        assert float(row[name.format("PredictedCount")]) == float(row[f"Count_{objects}"])


def test_per_object_measurements_agree_with_the_image_counts(evaluation_run, method):
    _, predicted, name = method
    images = evaluation_run.tables["Image"]
    true_positives = sum(float(row[name.format("TruePositivesIoU050")]) for row in images)
    for objects, other in (("GroundTruth", predicted), (predicted, "GroundTruth")):
        matched = evaluation_run.column(objects, f"Evaluation_Matched_{other}")
        best_iou = evaluation_run.column(objects, f"Evaluation_BestIoU_{other}")
        assert ((best_iou >= 0) & (best_iou <= 1)).all()
        assert (best_iou[matched == 1] > 0.5).all() and (best_iou[matched == 0] <= 0.5).all()
        assert matched.sum() == true_positives
    assert f"Evaluation_Split_{predicted}" in evaluation_run.tables["GroundTruth"][0]
    assert "Evaluation_Merge_GroundTruth" in evaluation_run.tables[predicted][0]


def test_star_convex_beats_the_classical_pipeline(evaluation_run):
    score = {
        method: evaluation_run.column("Image", f"Evaluation_DSBScore_GroundTruth_{objects}").mean()
        for method, objects in METHODS.items()
    }
    assert score["starconvex"] > score["classical"], score


def test_summary_holds_the_means_over_images(evaluation_run, method):
    _, objects, name = method
    summary_file = evaluation_run.output_dir / f"EvaluateSegmentation_GroundTruth_{objects}.csv"
    with open(summary_file, newline="") as handle:
        summary = {row["feature"]: row for row in csv.DictReader(handle)}
    per_image = evaluation_run.column("Image", name.format("DSBScore"))
    assert float(summary["DSBScore"]["mean_over_images"]) == pytest.approx(np.mean(per_image))
    counts = evaluation_run.column("Image", name.format("FalseNegativesIoU050"))
    assert int(summary["FalseNegativesIoU050"]["total"]) == counts.sum()
    assert "DSB score" in evaluation_run.log


def test_a_threshold_off_the_dsb_grid_is_refused(tmp_path):
    setting = "IoU thresholds for precision, recall and F1:0.5, 0.75"
    text = PIPELINE.read_text()
    assert setting in text
    broken = tmp_path / "bad_threshold.cppipe"
    broken.write_text(text.replace(setting, "IoU thresholds for precision, recall and F1:0.52"))
    with pytest.raises(PipelineFailed, match=r"setting 'IoU thresholds for precision, recall and F1': "
                                             r"report_thresholds must be among the thresholds scored \(0.5, 0.55"):
        run_pipeline(broken, EXAMPLES, tmp_path / "out")


@pytest.mark.parametrize("line, setting, message", [
    ("IoU thresholds for precision, recall and F1:0.5, high", "report_thresholds", "finite number, got 'high'"),
    ("IoU thresholds for precision, recall and F1:", "report_thresholds", "among the thresholds scored"),
    ("IoU threshold for per-object matching:1.5", "match_threshold", r"in \[0, 1\), got 1.5"),
    ("IoU threshold for per-object matching:-0.1", "match_threshold", r"in \[0, 1\), got -0.1"),
])
def test_bad_settings_in_a_pipeline_fail_validation_naming_the_setting(line, setting, message):
    module, pipeline = evaluate_module(PIPELINE.read_text(), line)
    with pytest.raises(ValidationError, match=message) as error:
        module.validate_module(pipeline)
    assert error.value.get_setting() is getattr(module, setting)
    assert str(error.value).startswith(f"setting '{getattr(module, setting).text}'")


def evaluate_module(text, line):
    """The first EvaluateSegmentation of a pipeline text with the setting of ``line`` replaced."""
    import io

    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.utilities.core.modules import fill_modules

    name = line.split(":")[0]
    original = next(row for row in text.splitlines() if row.strip().startswith(name + ":"))
    fill_modules()
    pipeline = Pipeline()
    pipeline.load(io.StringIO(text.replace(original, "    " + line, 1)))
    module = next(m for m in pipeline.modules() if m.module_name == "EvaluateSegmentation")
    return module, pipeline


def test_the_display_outlines_every_object_and_fills_the_flagged_ones():
    from evaluatesegmentation import flagged_outlines

    labels = np.zeros((12, 12), np.uint16)
    labels[2:6, 2:6], labels[7:11, 7:11] = 3, 8
    view = flagged_outlines(labels, np.array([8]))
    assert view.shape == (12, 12, 3)
    np.testing.assert_array_equal(view[2, 2], [1, 1, 1])  # outline of object 3, white
    np.testing.assert_array_equal(view[3, 3], [0, 0, 0])  # its inside, not flagged
    np.testing.assert_array_equal(view[7, 7], [1, 1, 1])  # outline of the flagged object
    np.testing.assert_allclose(view[8, 8], [0.8, 0.1, 0.1])  # its inside, red
    np.testing.assert_array_equal(flagged_outlines(np.stack([labels, labels]), np.array([8])), view)
