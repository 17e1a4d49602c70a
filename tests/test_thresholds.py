"""Threshold tuning: each grid point reproduces ``segment`` exactly, and the best point wins."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from nucleai import metrics, models, predict, thresholds
from nucleai.errors import InputError
from tiny_model import synthetic_image, tiny_model_dir


@pytest.fixture(scope="module")
def model():
    return models.load(tiny_model_dir())


@pytest.fixture(scope="module")
def validation():
    rng = np.random.default_rng(11)
    pairs = [synthetic_image(rng, (96, 128), n_objects=10) for _ in range(3)]
    return [image for image, _ in pairs], [labels for _, labels in pairs]


@pytest.mark.parametrize("prob_thresh, nms_thresh", [(0.4, 0.3), (0.6, 0.5)])
def test_a_grid_point_gives_what_segment_gives(model, validation, prob_thresh, nms_thresh):
    image = validation[0][0]
    candidates = thresholds.image_candidates(image, model, prob_thresh=0.3)
    swept = thresholds.labels_at(candidates, prob_thresh, nms_thresh, image.shape)
    direct = predict.segment(image, model, predict.SegmentOptions(prob_thresh=prob_thresh, nms_thresh=nms_thresh)).labels
    assert direct.max() > 0
    assert swept.max() == direct.max()
    # Same objects, possibly numbered differently: a perfect object-level match.
    assert metrics.evaluate_image(direct, swept).dsb_score == 1.0


def test_the_best_pair_has_the_highest_mean_score(model, validation):
    images, truths = validation
    search = thresholds.tune_thresholds(model, images, truths, prob_thresholds=(0.3, 0.5, 0.7), nms_thresholds=(0.3, 0.5))
    assert len(search.scores) == 6
    assert search.best_score == max(search.scores.values())
    assert search.scores[(search.prob_thresh, search.nms_thresh)] == search.best_score
    expected = np.mean([
        metrics.evaluate_image(truth, predict.segment(image, model, predict.SegmentOptions(prob_thresh=0.5, nms_thresh=0.3)).labels).dsb_score
        for image, truth in zip(images, truths)
    ])
    assert search.scores[(0.5, 0.3)] == pytest.approx(expected)


def test_bad_input_is_refused(model, validation):
    images, truths = validation
    with pytest.raises(InputError, match="same, non-zero number"):
        thresholds.tune_thresholds(model, images, truths[:2])
    with pytest.raises(InputError, match=r"prob_thresh must be in \(0, 1\), got 0.0") as error:
        thresholds.tune_thresholds(model, images, truths, prob_thresholds=(0.0, 0.5))
    assert error.value.field == "prob_thresh"


def test_cli_writes_the_best_pair_into_the_model_folder(validation, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir(), tmp_path / "model")
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for index, (image, truth) in enumerate(zip(*validation)):
        tifffile.imwrite(tmp_path / "images" / f"field{index}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"field{index}.tif", truth)
    result = subprocess.run(
        [Path(sys.executable).with_name("nucleai"), "tune-thresholds", "--model", model_dir,
         "--images", tmp_path / "images", "--labels", tmp_path / "labels",
         "--prob", "0.3", "0.6", "--nms", "0.4", "--write"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    written = json.loads((Path(model_dir) / "thresholds.json").read_text())
    assert f"prob_thresh {written['prob']:g}, nms_thresh {written['nms']:g}" in result.stdout
    spec = models.read_spec(model_dir)
    assert (spec.prob_thresh, spec.nms_thresh) == (written["prob"], written["nms"])
