"""Matching of predicted to ground-truth objects and the DSB metric family.

The 2018 Data Science Bowl (DSB) metric compares two label images object by object. Everything here
is derived from one sparse overlap table (:func:`nucleai.labels.label_overlap`): the pixel count
of every (ground-truth object, predicted object) pair that overlaps at all, found with
``np.unique`` on the combined pair ids of the pixels. Nothing loops over objects in Python, so a 2048 x 2048 pair of
label images with 3000 objects each is scored in a fraction of a second.

Definitions and the decisions behind them
-----------------------------------------
IoU
    ``IoU(a, b) = |a & b| / |a | b|`` in pixels (voxels for 3-D stacks), computed in float64 as one
    correctly rounded division, so an IoU that equals a decimal threshold exactly (11/20 against
    0.55) compares as equal, not above.
Match
    A prediction and a ground-truth object match at threshold ``t`` when ``IoU > t`` (strict, as in
    the DSB definition; stardist uses ``>=``, which differs only for an IoU exactly equal to ``t``)
    and the matching is one-to-one. For ``t >= 0.5`` an IoU above ``t`` can be had with at most one
    object of the other side (two disjoint predictions with IoU > 0.5 would each cover more than
    half of the same object), so the pairs above ``t`` *are* the matching and no assignment is
    needed. Thresholds below 0.5 are allowed (stardist users often plot 0.1 ... 0.9): there one
    object can have several candidates, and the matching is a true optimal assignment: the most
    pairs and, among those, the largest IoU sum of the matched pairs, solved with
    ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` on the sparse candidate pairs
    only. At every threshold the assignment is only computed when some object has two
    candidates; otherwise the candidate pairs are already the optimum. ``stardist.matching``
    also maximises the number of pairs first, so the counts agree; its tie-break also adds the
    IoUs of assigned pairs that are not matches, so below 0.5 its mean matched IoU can be lower.
Per-threshold scores
    TP = matched pairs, FP = predictions left unmatched, FN = ground-truth objects left
    unmatched; ``score = TP / (TP + FP + FN)`` (the DSB score at one threshold; stardist calls it
    "accuracy"), ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``,
    ``F1 = 2 TP / (2 TP + FP + FN)``.
Zero denominators
    An image with no objects on either side scores 1 in all four ratios at every threshold: there
    was nothing to find and nothing was found falsely, and a method that correctly leaves an empty
    field empty should not be punished. Any other zero denominator (precision when nothing was
    predicted, recall when the ground truth is empty) gives 0, as in stardist, so predicting
    nothing is never rewarded. These images count like any other in the dataset means;
    :class:`DatasetEvaluation` reports how many there were.
Image and dataset scores
    The DSB score of an image is the mean over thresholds of its per-threshold scores (likewise
    mean precision, recall and F1). Dataset values are means over images of the per-image values
    (not pooled counts): every image weighs the same, however many objects it has.
Mean matched IoU
    Mean IoU of the pairs matched at ``match_threshold`` (default 0.5). It is NaN for an image
    without any matched pair (there is no overlap quality to report; the missing matches are
    already counted by the scores) and such images are left out of the dataset mean.
Splits and merges (nucleAIzer, Hollandi et al. 2020)
    A ground-truth object is *split* when no prediction matches it at IoU > 0.5 and either at
    least two predictions each cover >= 30 % of it or at least three predictions each cover
    >= 15 % of it; coverage = ``|pred & truth| / |truth|``. A prediction is a *merge* by the same
    rule with the sides swapped (coverage = ``|pred & truth| / |pred|``): several ground-truth
    objects lumped into one prediction.
Label images
    Any integer dtype (the two images may differ), any ids (not necessarily sequential or
    starting at 1), 0 is background, any number of dimensions (2-D images, 3-D stacks); the two
    images must have the same shape. Boolean arrays are refused rather than read as one object,
    because a binary mask passed by mistake would otherwise score as a single huge nucleus.
"""
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from .errors import InputError
from .labels import label_overlap
from .options import check_number

#: The DSB thresholds 0.50, 0.55, ..., 0.95, written out so that each is the double nearest to its
#: decimal value (``np.arange`` would give 0.7000000000000001 and compare wrongly with IoU 7/10).
DSB_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

#: IoU above which an object counts as matched for the split/merge rule.
SPLIT_MERGE_MATCH_IOU = 0.5
#: Coverage each of two pieces needs for a split (merge).
SPLIT_COVERAGE_TWO = 0.30
#: Coverage each of three or more pieces needs for a split (merge).
SPLIT_COVERAGE_MORE = 0.15


@dataclass(frozen=True, eq=False)
class ImageEvaluation:
    """Scores of one predicted label image against its ground truth.

    Per-threshold arrays have one entry per threshold, in the order given; per-object arrays one
    entry per object, in the order of ``truth_ids`` / ``pred_ids``.

    Attributes
    ----------
    thresholds : ndarray of float64
        IoU thresholds; a pair matches when its IoU is strictly above.
    tp, fp, fn : ndarray of int64
        True positives, false positives, false negatives per threshold.
    score, precision, recall, f1 : ndarray of float64
        ``TP/(TP+FP+FN)``, ``TP/(TP+FP)``, ``TP/(TP+FN)``, ``2TP/(2TP+FP+FN)`` per threshold
        (see the module docstring for zero denominators).
    dsb_score, mean_precision, mean_recall, mean_f1 : float
        Means of the above over the thresholds; ``dsb_score`` is the image's DSB score.
    n_truth, n_pred : int
        Object counts.
    match_threshold : float
        IoU threshold of the per-object ``matched`` flags and of ``mean_matched_iou``.
    mean_matched_iou : float
        Mean IoU of the pairs matched at ``match_threshold``; NaN when none matched.
    n_splits, n_merges : int
        Split ground-truth objects and merging predictions (nucleAIzer's rule).
    truth_ids, pred_ids : ndarray
        Label ids of the objects, increasing.
    truth_best_iou, pred_best_iou : ndarray of float64
        Highest IoU of each object with any object of the other side (0 when it overlaps none).
    truth_matched, pred_matched : ndarray of bool
        Whether each object is matched at ``match_threshold``.
    truth_match_id, pred_match_id : ndarray
        Id of the matched object of the other side at ``match_threshold``, 0 when unmatched.
    truth_split, pred_merge : ndarray of bool
        Whether each ground-truth object is split, each prediction a merge.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    score: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    dsb_score: float
    mean_precision: float
    mean_recall: float
    mean_f1: float
    n_truth: int
    n_pred: int
    match_threshold: float
    mean_matched_iou: float
    n_splits: int
    n_merges: int
    truth_ids: np.ndarray
    truth_best_iou: np.ndarray
    truth_matched: np.ndarray
    truth_match_id: np.ndarray
    truth_split: np.ndarray
    pred_ids: np.ndarray
    pred_best_iou: np.ndarray
    pred_matched: np.ndarray
    pred_match_id: np.ndarray
    pred_merge: np.ndarray


@dataclass(frozen=True, eq=False)
class DatasetEvaluation:
    """Scores of a set of images: means over images of the per-image values.

    Attributes
    ----------
    thresholds : ndarray of float64
        IoU thresholds shared by all images.
    n_images : int
        Number of images.
    n_empty_images : int
        Images with no object on either side (each scored 1 at every threshold).
    n_truth, n_pred : int
        Object counts summed over images.
    tp, fp, fn : ndarray of int64
        Per-threshold counts summed over images.
    score, precision, recall, f1 : ndarray of float64
        Per-threshold means over images.
    dsb_score, mean_precision, mean_recall, mean_f1 : float
        Means over images of the per-image means over thresholds (equal to the means over
        thresholds of ``score`` and the others, since both are plain averages).
    mean_matched_iou : float
        Mean over the images with at least one matched pair of their mean matched IoU; NaN when
        no image has one.
    n_splits, n_merges : int
        Summed over images.
    """

    thresholds: np.ndarray
    n_images: int
    n_empty_images: int
    n_truth: int
    n_pred: int
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    score: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    dsb_score: float
    mean_precision: float
    mean_recall: float
    mean_f1: float
    mean_matched_iou: float
    n_splits: int
    n_merges: int


@dataclass(frozen=True)
class EvaluateOptions:
    """How to score a segmentation, checked once when made.

    Attributes
    ----------
    thresholds : sequence of float
        IoU thresholds scored, each in ``[0, 1)`` (an IoU can never exceed 1, so ``t >= 1``
        could match nothing), none repeated (they would give duplicate table rows and CSV
        columns); default the DSB's 0.50, 0.55, ..., 0.95. Kept as a tuple of floats.
    match_threshold : float
        IoU threshold in ``[0, 1)`` of the per-object ``matched`` flags and match ids and of
        ``mean_matched_iou``; default 0.5, the loosest DSB threshold.
    report_thresholds : sequence of float, optional
        The thresholds, among ``thresholds``, whose per-threshold precision, recall, F1 and
        counts a report shows (None: all); kept sorted, without repeats.

    Raises
    ------
    InputError
        With ``field`` set to the option at fault.
    """

    thresholds: tuple = DSB_THRESHOLDS
    match_threshold: float = 0.5
    report_thresholds: tuple = None

    def __post_init__(self):
        thresholds = self.thresholds
        listed = {0: (thresholds,), 1: tuple(thresholds)}.get(np.ndim(thresholds), ())
        if not listed:
            raise InputError(f"thresholds must be a non-empty list of numbers, got {thresholds!r}", "thresholds")
        checked = tuple(_check_iou(value, "thresholds") for value in listed)
        if len(set(checked)) != len(checked):
            raise InputError(f"IoU thresholds must not repeat; got {list(checked)}", "thresholds")
        object.__setattr__(self, "thresholds", checked)
        object.__setattr__(self, "match_threshold", _check_iou(self.match_threshold, "match_threshold"))
        if self.report_thresholds is not None:
            reported = sorted({_check_iou(value, "report_thresholds") for value in self.report_thresholds})
            unknown = [value for value in reported if value not in checked]
            if not reported or unknown:
                raise InputError(
                    f"report_thresholds must be among the thresholds scored "
                    f"({', '.join(f'{t:g}' for t in checked)}), got {list(self.report_thresholds)}",
                    "report_thresholds",
                )
            object.__setattr__(self, "report_thresholds", tuple(reported))


def _check_iou(value, field):
    """An IoU threshold in [0, 1) as a float, or an InputError for ``field``."""
    return check_number(value, field, low=0, high=1, high_open=True)


def match_pairs(overlap, threshold):
    """One-to-one matching of objects at one IoU threshold.

    Parameters
    ----------
    overlap : nucleai.labels.Overlap
        From :func:`nucleai.labels.label_overlap`.
    threshold : float
        A pair can match only when its IoU is strictly above ``threshold``.

    Returns
    -------
    ndarray of bool, shape (n_pairs,)
        True for the pairs of ``overlap`` in the matching: the largest one-to-one set of pairs with
        IoU above ``threshold``, and among those the one with the largest IoU sum. For
        ``threshold >= 0.5`` that is simply every pair above the threshold.
    """
    candidate = overlap.iou > threshold
    cand = np.flatnonzero(candidate)
    rows, cols = overlap.pair_truth[cand], overlap.pair_pred[cand]
    truth_degree = np.bincount(rows, minlength=1)
    pred_degree = np.bincount(cols, minlength=1)
    if truth_degree.max() <= 1 and pred_degree.max() <= 1:
        return candidate

    # Only objects with candidates take part; give them local indices 0..m-1 and 0..k-1.
    truth_local_ids, rows = np.unique(rows, return_inverse=True)
    pred_local_ids, cols = np.unique(cols, return_inverse=True)
    m, k = truth_local_ids.size, pred_local_ids.size
    # A full matching must exist for the solver, so every object also gets a dummy partner
    # (truth i <-> dummy column k + i, prediction j <-> dummy row m + j), and the dummies of a
    # candidate pair (i, j) are linked (row m + j <-> column k + i) so both can be freed when i
    # and j match each other. Every perfect matching then costs
    #     2 (m + k) - 2 (matched pairs) - (IoU sum of matched pairs) / (2 min(m, k)),
    # and since the IoU sum is at most min(m, k), the most pairs win first, then the largest IoU
    # sum. All weights are positive, as the solver requires.
    tie_break = overlap.iou[cand] / (2 * min(m, k))
    arange_m, arange_k = np.arange(m), np.arange(k)
    graph = coo_matrix(
        (
            np.concatenate([1 - tie_break, np.full(m + k, 2.0), np.ones(cand.size)]),
            (
                np.concatenate([rows, arange_m, m + arange_k, m + cols]),
                np.concatenate([cols, k + arange_m, arange_k, k + rows]),
            ),
        ),
        shape=(m + k, k + m),
    ).tocsr()
    row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    real = (row_ind < m) & (col_ind < k)
    chosen = np.isin(rows * k + cols, row_ind[real] * k + col_ind[real])
    matched = np.zeros_like(candidate)
    matched[cand[chosen]] = True
    return matched


def _ratio(numerator, denominator, both_empty):
    """numerator / denominator, with 1 for an image empty on both sides and 0 for any other
    zero denominator (see the module docstring)."""
    safe = np.maximum(denominator, 1)
    return np.where(denominator > 0, numerator / safe, 1.0 if both_empty else 0.0)


def _split_flags(object_index, coverage, n_objects, matched):
    """nucleAIzer's split rule for the objects of one side (merges: called with the sides swapped).

    ``object_index`` and ``coverage`` are per overlapping pair: the object on this side and the
    fraction of it the other side's object covers; only the number of pieces per object counts.
    """
    two = np.bincount(object_index[coverage >= SPLIT_COVERAGE_TWO], minlength=n_objects)
    more = np.bincount(object_index[coverage >= SPLIT_COVERAGE_MORE], minlength=n_objects)
    return ~matched & ((two >= 2) | (more >= 3))


def evaluate_image(truth, pred, options=EvaluateOptions()):
    """Match a predicted label image to its ground truth and compute the DSB metric family.

    Parameters
    ----------
    truth, pred : ndarray of int
        Ground-truth and predicted label images of the same shape (2-D or 3-D, any integer
        dtypes, 0 = background, any ids). Either may have no objects.
    options : EvaluateOptions, optional
        The IoU thresholds and the per-object matching threshold; default the DSB's.

    Returns
    -------
    ImageEvaluation
        Per-threshold arrays, their means, per-object arrays for both sides, splits and merges.
        See the module docstring for every definition.

    Raises
    ------
    InputError
        For non-integer or negative labels or different shapes.
    """
    thresholds = np.asarray(options.thresholds, dtype=np.float64)
    match_threshold = options.match_threshold
    overlap = label_overlap(truth, pred)
    n_truth, n_pred = overlap.truth_ids.size, overlap.pred_ids.size
    both_empty = n_truth == 0 and n_pred == 0

    tp = np.array([match_pairs(overlap, t).sum() for t in thresholds], dtype=np.int64)
    fp = n_pred - tp
    fn = n_truth - tp
    score = _ratio(tp, tp + fp + fn, both_empty)
    precision = _ratio(tp, tp + fp, both_empty)
    recall = _ratio(tp, tp + fn, both_empty)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, both_empty)

    truth_best_iou = np.zeros(n_truth)
    pred_best_iou = np.zeros(n_pred)
    np.maximum.at(truth_best_iou, overlap.pair_truth, overlap.iou)
    np.maximum.at(pred_best_iou, overlap.pair_pred, overlap.iou)

    matched = match_pairs(overlap, match_threshold)
    truth_match_id = np.zeros(n_truth, dtype=overlap.pred_ids.dtype)
    pred_match_id = np.zeros(n_pred, dtype=overlap.truth_ids.dtype)
    truth_match_id[overlap.pair_truth[matched]] = overlap.pred_ids[overlap.pair_pred[matched]]
    pred_match_id[overlap.pair_pred[matched]] = overlap.truth_ids[overlap.pair_truth[matched]]
    truth_matched = np.zeros(n_truth, dtype=bool)
    pred_matched = np.zeros(n_pred, dtype=bool)
    truth_matched[overlap.pair_truth[matched]] = True
    pred_matched[overlap.pair_pred[matched]] = True
    mean_matched_iou = float(overlap.iou[matched].mean()) if matched.any() else float("nan")

    truth_split = _split_flags(
        overlap.pair_truth,
        overlap.intersection / overlap.truth_areas[overlap.pair_truth],
        n_truth,
        truth_best_iou > SPLIT_MERGE_MATCH_IOU,
    )
    pred_merge = _split_flags(
        overlap.pair_pred,
        overlap.intersection / overlap.pred_areas[overlap.pair_pred],
        n_pred,
        pred_best_iou > SPLIT_MERGE_MATCH_IOU,
    )

    return ImageEvaluation(
        thresholds=thresholds,
        tp=tp,
        fp=fp,
        fn=fn,
        score=score,
        precision=precision,
        recall=recall,
        f1=f1,
        dsb_score=float(score.mean()),
        mean_precision=float(precision.mean()),
        mean_recall=float(recall.mean()),
        mean_f1=float(f1.mean()),
        n_truth=int(n_truth),
        n_pred=int(n_pred),
        match_threshold=match_threshold,
        mean_matched_iou=mean_matched_iou,
        n_splits=int(truth_split.sum()),
        n_merges=int(pred_merge.sum()),
        truth_ids=overlap.truth_ids,
        truth_best_iou=truth_best_iou,
        truth_matched=truth_matched,
        truth_match_id=truth_match_id,
        truth_split=truth_split,
        pred_ids=overlap.pred_ids,
        pred_best_iou=pred_best_iou,
        pred_matched=pred_matched,
        pred_match_id=pred_match_id,
        pred_merge=pred_merge,
    )


def summarize(evaluations):
    """Dataset scores: means over images of the per-image values, counts summed.

    Parameters
    ----------
    evaluations : sequence of ImageEvaluation
        One per image, all computed with the same thresholds.

    Returns
    -------
    DatasetEvaluation

    Raises
    ------
    InputError
        If there are no evaluations or their thresholds differ.
    """
    evaluations = list(evaluations)
    if not evaluations:
        raise InputError("no images to summarize")
    thresholds = evaluations[0].thresholds
    if any(not np.array_equal(e.thresholds, thresholds) for e in evaluations):
        raise InputError("all images must be evaluated at the same thresholds to be summarized")

    def stacked(name):
        return np.stack([getattr(e, name) for e in evaluations])

    def mean_of(name):
        return float(np.mean([getattr(e, name) for e in evaluations]))

    matched_ious = [e.mean_matched_iou for e in evaluations if not np.isnan(e.mean_matched_iou)]
    return DatasetEvaluation(
        thresholds=thresholds,
        n_images=len(evaluations),
        n_empty_images=sum(e.n_truth == 0 and e.n_pred == 0 for e in evaluations),
        n_truth=sum(e.n_truth for e in evaluations),
        n_pred=sum(e.n_pred for e in evaluations),
        tp=stacked("tp").sum(axis=0),
        fp=stacked("fp").sum(axis=0),
        fn=stacked("fn").sum(axis=0),
        score=stacked("score").mean(axis=0),
        precision=stacked("precision").mean(axis=0),
        recall=stacked("recall").mean(axis=0),
        f1=stacked("f1").mean(axis=0),
        dsb_score=mean_of("dsb_score"),
        mean_precision=mean_of("mean_precision"),
        mean_recall=mean_of("mean_recall"),
        mean_f1=mean_of("mean_f1"),
        mean_matched_iou=float(np.mean(matched_ious)) if matched_ious else float("nan"),
        n_splits=sum(e.n_splits for e in evaluations),
        n_merges=sum(e.n_merges for e in evaluations),
    )
