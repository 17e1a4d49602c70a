"""nucleai.refine.tune and refine.json: the search on synthetic cases with known best parameters."""
import json

import numpy as np
import pytest
import scipy.ndimage as ndi

from nucleai.errors import InputError
from nucleai.refine import PUBLISHED, read_parameters, tune, write_parameters
from tiny_model import synthetic_image


def grown_detections(truth, rng, grow=2, specks=3):
    """Every true object grown by ``grow`` px, plus small specks: what refinement should undo."""
    distance, (iy, ix) = ndi.distance_transform_edt(truth == 0, return_indices=True)
    detections = np.where(distance <= grow, truth[iy, ix], 0).astype(np.int32)
    for k in range(specks):
        y, x = rng.integers(0, np.array(truth.shape) - 2)
        detections[y : y + 2, x : x + 2] = 1000 + k
    return detections


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(7)
    names, labels, probs, truths = [], [], [], []
    for i in range(4):
        _, truth = synthetic_image(rng, (96, 112), n_objects=8)
        names.append(f"image{i}")
        labels.append(grown_detections(truth, rng))
        probs.append(ndi.gaussian_filter((truth > 0).astype(np.float32), 0.8))
        truths.append(truth)
    return tune.make_cases(names, labels, probs, truths)


def test_the_search_improves_on_the_published_values_and_the_unrefined_objects(cases):
    messages = []
    result = tune.tune_parameters(cases, maxiter=4, popsize=3, seed=1, log=messages.append)
    assert result.score > 0.9 > result.unrefined_score
    assert result.score >= result.start_score and result.start_params == PUBLISHED
    assert result.score == pytest.approx(tune.mean_score(cases, result.params))
    for name, (low, high) in tune.BOUNDS.items():
        assert low <= result.params[name] <= high
    assert all(isinstance(result.params[name], int) for name in ("p2", "p4", "p5"))
    assert result.params["p4"] >= 1  # the 2-pixel margin must be taken back
    assert result.generations == len(result.history) == 4 and result.stopped == "maxiter"
    assert result.evaluations <= (4 + 1) * 3 * 6 + 6
    assert messages[0].startswith("4 images") and len(messages) == 5
    record = result.record(len(cases))
    assert record["images"] == 4 and record["optimizer"] == "scipy.optimize.differential_evolution"


def test_the_search_is_reproducible_and_parallel_workers_agree_on_the_score(cases):
    first = tune.tune_parameters(cases, maxiter=2, popsize=2, seed=3)
    again = tune.tune_parameters(cases, maxiter=2, popsize=2, seed=3)
    assert first.params == again.params and first.score == again.score
    parallel = tune.tune_parameters(cases, maxiter=2, popsize=2, seed=3, workers=2)
    assert parallel.score == pytest.approx(tune.mean_score(cases, parallel.params))


def test_the_fast_dsb_score_equals_the_metric(cases):
    from nucleai.metrics import evaluate_image
    from nucleai.refine import refine

    for case in cases:
        for params in ({}, {"p4": 2, "p6": 0.2}, {"p2": 100000}):
            pred = refine(case.objects, case.prob, params)
            assert tune.dsb_score(case.truth, case.n_truth, pred.labels, pred.count) == \
                evaluate_image(case.truth, pred.labels).dsb_score
    # IoU exactly at a threshold (11/20 = 0.55) is not a match, as in the metric
    truth = np.zeros((1, 20), np.int64)
    truth[0, :11] = 1
    pred = np.zeros((1, 20), np.uint16)
    pred[0, :20] = 1
    assert tune.dsb_score(truth, 1, pred, 1) == evaluate_image(truth, pred).dsb_score == 0.1
    empty = np.zeros((3, 3), np.int64)
    assert tune.dsb_score(empty, 0, empty.astype(np.uint16), 0) == 1.0
    assert tune.dsb_score(truth, 1, np.zeros((1, 20), np.uint16), 0) == 0.0


def test_the_time_budget_stops_after_a_generation(cases):
    result = tune.tune_parameters(cases, maxiter=50, popsize=2, minutes=1e-6)
    assert result.stopped == "time_budget" and result.generations == 1


def test_bad_cases_bounds_and_options_are_refused(cases):
    truth = np.zeros((10, 10), np.int32)
    with pytest.raises(InputError, match="b: the probability map is 10x11"):
        tune.make_cases(["b"], [truth], [np.zeros((10, 11))], [truth])
    with pytest.raises(InputError, match=r"c: ground truth has shape \(10, 9\) but \(10, 10\) is expected"):
        tune.make_cases(["c"], [truth], [np.zeros((10, 10))], [np.zeros((10, 9), np.int32)])
    with pytest.raises(InputError, match="d: ground truth must be a label image of integers"):
        tune.make_cases(["d"], [truth], [np.zeros((10, 10))], [np.zeros((10, 10))])
    with pytest.raises(InputError, match="no images"):
        tune.make_cases([], [], [], [])
    with pytest.raises(InputError, match="search bounds for p4"):
        tune.tune_parameters(cases, bounds={"p4": (0, 20)})
    with pytest.raises(InputError, match="unknown parameter"):
        tune.check_bounds({"p7": (0, 1)})
    with pytest.raises(InputError, match="must be >= 1"):
        tune.tune_parameters(cases, maxiter=0)


def test_start_values_outside_the_bounds_are_clipped(cases):
    result = tune.tune_parameters(cases, bounds={"p2": (0, 30)}, maxiter=1, popsize=1)
    assert result.start_params["p2"] == 30  # the published 44 lies outside


def test_parameters_round_trip_through_refine_json(tmp_path):
    assert read_parameters(tmp_path) == (PUBLISHED, "published")
    values = {"p1": 0.3, "p2": 20, "p3": 0.6, "p4": 2, "p5": 0, "p6": 0.5}
    path = write_parameters(tmp_path, values, {"score": 0.7})
    assert json.loads(path.read_text())["tuning"] == {"score": 0.7}
    assert read_parameters(tmp_path) == (values, "refine.json")
    with pytest.raises(InputError, match="does not exist"):
        write_parameters(tmp_path / "nowhere", values)
    with pytest.raises(InputError, match=r"p6 must be in \[0.0, 1.0\], got 2.0"):
        write_parameters(tmp_path, {**values, "p6": 2})
    path.write_text("{")
    with pytest.raises(InputError, match="refine.json: cannot be read as JSON"):
        read_parameters(tmp_path)
