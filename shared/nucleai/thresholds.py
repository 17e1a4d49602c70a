"""Tuning a star-convex model's probability and NMS thresholds on annotated validation images.

The thresholds that give the best segmentation depend on the model and the data, so stardist
models store tuned values in ``thresholds.json``. stardist tunes them for its accuracy pooled
over all images; here they are tuned for the metric this suite reports, the DSB score averaged
over images (:mod:`nucleai.metrics`), so the tuned model scores best on what users measure.

The network runs once per image, at the lowest probability threshold of the grid; every
(probability, NMS) pair then only filters those candidates (keeping their order, so each pair
gives exactly what :func:`nucleai.predict.segment` would), suppresses and renders. A 10 x 3 grid
over 54 DSB images costs about one network pass plus a few seconds per pair.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .metrics import evaluate_image
from .predict import (
    PERCENTILES, Candidates, SegmentOptions, normalize, pad_to_multiple, predict_candidates, render, select_channels,
    suppress,
)

#: Default search grid: stardist's defaults (0.5, 0.4) lie on it.
PROB_THRESHOLDS = tuple(np.round(np.arange(0.30, 0.76, 0.05), 2))
NMS_THRESHOLDS = (0.3, 0.4, 0.5)


@dataclass(frozen=True)
class ThresholdSearch:
    """The grid's mean DSB scores and the best pair (ties go to the first pair in grid order)."""

    prob_thresh: float
    nms_thresh: float
    best_score: float
    scores: dict  # (prob_thresh, nms_thresh) -> mean DSB score over images


def image_candidates(image, model, prob_thresh, options=SegmentOptions()):
    """The network's candidates for one image at scale 1, as :func:`nucleai.predict.segment` gets them
    with ``options`` (its percentiles and channel; the tiling is left out, which changes nothing)."""
    x = select_channels(image, model.spec.n_channel_in, options.channel)
    x = normalize(x, *options.percentiles)
    shape = x.shape[:2]
    return predict_candidates(model, pad_to_multiple(x, model.spec.div_by), shape, prob_thresh)


def labels_at(candidates, prob_thresh, nms_thresh, shape):
    """The label image ``segment`` would give at these thresholds, from lower-threshold candidates."""
    keep = candidates.scores > prob_thresh
    kept = Candidates(
        points=candidates.points[keep], scores=candidates.scores[keep], dist=candidates.dist[keep],
        prob=candidates.prob,
    )
    points, scores, dist = suppress(kept, nms_thresh)
    return render(points, dist, scores, shape)


def tune_thresholds(model, images, truths, prob_thresholds=PROB_THRESHOLDS, nms_thresholds=NMS_THRESHOLDS,
                    percentiles=PERCENTILES):
    """Grid search for the (probability, NMS) thresholds with the best mean DSB score.

    Parameters
    ----------
    model : nucleai.models.StarConvexModel
    images : sequence of ndarray
        Validation images (grey or with channels, as the model expects), never training images.
    truths : sequence of ndarray
        Their ground-truth label images, same shapes (without channels).
    prob_thresholds, nms_thresholds : sequence of float
        The grid, each value in (0, 1).
    percentiles : (float, float)
        Normalisation percentiles, as used at prediction time.

    Raises
    ------
    InputError
        For no images, unequal numbers of images and labels, or thresholds or percentiles that
        :class:`nucleai.predict.SegmentOptions` refuses (``field`` names them).

    Returns
    -------
    ThresholdSearch
    """
    if len(images) == 0 or len(images) != len(truths):
        raise InputError(f"need the same, non-zero number of images and label images, got {len(images)} and {len(truths)}")
    pairs = [SegmentOptions(prob_thresh=p, nms_thresh=n, percentiles=percentiles)
             for n in nms_thresholds for p in prob_thresholds]
    grid = [(options.prob_thresh, options.nms_thresh) for options in pairs]
    lowest = min(p for p, _ in grid)
    candidates = [image_candidates(image, model, lowest, pairs[0]) for image in images]
    scores = {}
    for prob_thresh, nms_thresh in grid:
        per_image = [
            evaluate_image(truth, labels_at(found, prob_thresh, nms_thresh, truth.shape)).dsb_score
            for found, truth in zip(candidates, truths)
        ]
        scores[(prob_thresh, nms_thresh)] = float(np.mean(per_image))
    best = max(grid, key=lambda pair: scores[pair])
    return ThresholdSearch(prob_thresh=best[0], nms_thresh=best[1], best_score=scores[best], scores=scores)


def write_thresholds(model_dir, prob_thresh, nms_thresh):
    """Write stardist's ``thresholds.json`` (``{"prob": ..., "nms": ...}``) into a model folder."""
    path = Path(model_dir) / "thresholds.json"
    path.write_text(json.dumps({"prob": prob_thresh, "nms": nms_thresh}, indent=1) + "\n")
    return path
