"""Tests of nucleai.metrics: hand-made cases with answers worked out by hand, a brute-force
matching on small random cases, and stardist.matching where its definitions agree with ours.

Where they differ (documented in nucleai.metrics): stardist matches IoU >= t (in float32), we match
IoU > t; so stardist gets ``t + STRICT``, which is strict for every IoU a/b with b below ~77000
pixels and a two-decimal t (such an IoU is either exactly t or at least 1/(100 b) away from it).
Stardist scores an image with no objects on either side 0, we score it 1; those images are tested
on their own and kept out of the comparisons.
"""

import numpy as np
import pytest

from nucleai import metrics
from nucleai.errors import InputError

STRICT = 1e-7


def hand_made_pair():
    """Six ground-truth and six predicted objects whose IoUs are easy to count.

    truth 1 (4x4) vs pred 7 (4x5): IoU 16/20 = 0.8
    truth 5 (4x10) halves pred 3 and pred 4: IoU 20/40 = 0.5 each, not above 0.5 -> a split
    truth 9: nothing predicted (FN); pred 11: nothing there (FP)
    truths 20 and 21 (2x3 each) lumped into pred 12 (2x6): IoU 6/12 = 0.5 each -> a merge
    truth 30 (10x10) vs pred 13 (10x9): IoU 90/100 = 0.9
    Ids are not sequential and the dtypes differ.
    """
    truth = np.zeros((64, 40), np.uint16)
    pred = np.zeros((64, 40), np.int32)
    truth[0:4, 0:4] = 1
    pred[0:4, 0:5] = 7
    truth[10:14, 0:10] = 5
    pred[10:14, 0:5] = 3
    pred[10:14, 5:10] = 4
    truth[20:22, 20:22] = 9
    pred[30:33, 30:33] = 11
    truth[40:42, 0:3] = 20
    truth[40:42, 3:6] = 21
    pred[40:42, 0:6] = 12
    truth[50:60, 0:10] = 30
    pred[50:60, 0:9] = 13
    return truth, pred


def test_hand_made_pair():
    truth, pred = hand_made_pair()
    result = metrics.evaluate_image(truth, pred)

    np.testing.assert_array_equal(result.thresholds, metrics.DSB_THRESHOLDS)
    # IoU 0.8 matches up to t = 0.75 (6 thresholds), IoU 0.9 up to t = 0.85 (8 thresholds).
    tp = np.array([2, 2, 2, 2, 2, 2, 1, 1, 0, 0])
    np.testing.assert_array_equal(result.tp, tp)
    np.testing.assert_array_equal(result.fp, 6 - tp)
    np.testing.assert_array_equal(result.fn, 6 - tp)
    score = np.array([0.2] * 6 + [1 / 11] * 2 + [0.0] * 2)
    np.testing.assert_allclose(result.score, score)
    np.testing.assert_allclose(result.precision, tp / 6)
    np.testing.assert_allclose(result.recall, tp / 6)
    np.testing.assert_allclose(result.f1, 2 * tp / 12)
    assert result.dsb_score == pytest.approx((6 * 0.2 + 2 / 11) / 10)
    assert result.mean_precision == pytest.approx((12 / 6 + 2 / 6) / 10)
    assert result.mean_recall == pytest.approx(result.mean_precision)
    assert result.mean_f1 == pytest.approx(result.mean_precision)
    assert (result.n_truth, result.n_pred) == (6, 6)
    assert result.mean_matched_iou == pytest.approx((0.8 + 0.9) / 2)
    assert (result.n_splits, result.n_merges) == (1, 1)

    np.testing.assert_array_equal(result.truth_ids, [1, 5, 9, 20, 21, 30])
    np.testing.assert_allclose(result.truth_best_iou, [0.8, 0.5, 0, 0.5, 0.5, 0.9])
    np.testing.assert_array_equal(result.truth_matched, [1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(result.truth_match_id, [7, 0, 0, 0, 0, 13])
    np.testing.assert_array_equal(result.truth_split, [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(result.pred_ids, [3, 4, 7, 11, 12, 13])
    np.testing.assert_allclose(result.pred_best_iou, [0.5, 0.5, 0.8, 0, 0.5, 0.9])
    np.testing.assert_array_equal(result.pred_matched, [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(result.pred_match_id, [0, 0, 1, 0, 0, 30])
    np.testing.assert_array_equal(result.pred_merge, [0, 0, 0, 0, 1, 0])


def test_label_overlap_hand_made():
    truth, pred = hand_made_pair()
    overlap = metrics.label_overlap(truth, pred)
    np.testing.assert_array_equal(overlap.truth_areas, [16, 40, 4, 6, 6, 100])
    np.testing.assert_array_equal(overlap.pred_areas, [20, 20, 20, 9, 12, 90])
    pairs = {
        (int(overlap.truth_ids[i]), int(overlap.pred_ids[j])): n
        for i, j, n in zip(overlap.pair_truth, overlap.pair_pred, overlap.intersection)
    }
    assert pairs == {(1, 7): 16, (5, 3): 20, (5, 4): 20, (20, 12): 6, (21, 12): 6, (30, 13): 90}


def test_iou_equal_to_threshold_does_not_match():
    # IoU 11/20 = 0.55 exactly, and 7/10 = 0.7 exactly: strictly above is required.
    truth = np.zeros((1, 40), np.uint8)
    pred = np.zeros((1, 40), np.uint8)
    truth[0, 0:20] = 1
    pred[0, 0:11] = 1
    truth[0, 25:35] = 2
    pred[0, 25:32] = 2
    result = metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(thresholds=[0.5, 0.55, 0.65, 0.7]))
    np.testing.assert_array_equal(result.tp, [2, 1, 1, 0])


@pytest.mark.parametrize(
    "pieces, split",
    [
        ((30, 30), True),  # two pieces of exactly 30 % each
        ((29, 40), False),  # one of two under 30 %
        ((15, 15, 15), True),  # three of exactly 15 %
        ((20, 20), False),  # two pieces need 30 % each
        ((14, 20, 20), False),  # one of three under 15 %
        ((14, 30, 30), True),  # the two-piece rule holds
        ((15, 15, 15, 15), True),
        ((60, 30), False),  # the 60 % piece has IoU 0.6 > 0.5: matched, not split
    ],
)
def test_split_and_merge_rule(pieces, split):
    # A 1 x 100 ground-truth object cut by predictions of the given lengths (in % of it).
    truth = np.zeros((1, 120), np.uint16)
    truth[0, :100] = 1
    pred = np.zeros_like(truth)
    start = 0
    for piece_id, length in enumerate(pieces, start=1):
        pred[0, start:start + length] = piece_id
        start += length
    result = metrics.evaluate_image(truth, pred)
    assert result.n_splits == int(split)
    np.testing.assert_array_equal(result.truth_split, [split])
    assert result.n_merges == 0
    swapped = metrics.evaluate_image(pred, truth)
    assert swapped.n_merges == int(split)
    np.testing.assert_array_equal(swapped.pred_merge, [split])
    assert swapped.n_splits == 0


def test_both_empty_scores_one():
    empty = np.zeros((16, 16), np.uint16)
    result = metrics.evaluate_image(empty, empty)
    for name in ("score", "precision", "recall", "f1"):
        np.testing.assert_array_equal(getattr(result, name), 1.0)
    assert result.dsb_score == result.mean_f1 == 1.0
    np.testing.assert_array_equal(result.tp + result.fp + result.fn, 0)
    assert np.isnan(result.mean_matched_iou)
    assert result.truth_ids.size == result.pred_ids.size == result.truth_best_iou.size == 0
    assert (result.n_splits, result.n_merges) == (0, 0)


@pytest.mark.parametrize("empty_side", ["truth", "pred"])
def test_one_side_empty_scores_zero(empty_side):
    objects = np.zeros((16, 16), np.uint16)
    objects[2:5, 2:5] = 3
    objects[8:12, 8:12] = 9
    empty = np.zeros_like(objects)
    truth, pred = (empty, objects) if empty_side == "truth" else (objects, empty)
    result = metrics.evaluate_image(truth, pred)
    np.testing.assert_array_equal(result.tp, 0)
    np.testing.assert_array_equal(result.fp, 2 if empty_side == "truth" else 0)
    np.testing.assert_array_equal(result.fn, 0 if empty_side == "truth" else 2)
    for name in ("score", "precision", "recall", "f1"):
        np.testing.assert_array_equal(getattr(result, name), 0.0)
    assert result.dsb_score == 0.0
    assert np.isnan(result.mean_matched_iou)


def test_3d_stack():
    # A 2x2x2 cube against a 2x2x3 box: IoU 8/12 = 0.667, matched up to t = 0.65.
    truth = np.zeros((4, 6, 6), np.uint16)
    pred = np.zeros((4, 6, 6), np.uint8)
    truth[1:3, 1:3, 1:3] = 4
    pred[1:3, 1:3, 1:4] = 2
    result = metrics.evaluate_image(truth, pred)
    np.testing.assert_array_equal(result.tp, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert result.mean_matched_iou == pytest.approx(8 / 12)
    assert result.dsb_score == pytest.approx(0.4)


def test_below_half_is_an_optimal_assignment():
    # Truths A = cols 0-9, B = cols 10-19; preds Y = cols 0-2, X = cols 5-14.
    # IoU(A, X) = IoU(B, X) = 5/15, IoU(A, Y) = 3/10. Greedy on the best IoU could pair A with X
    # and leave B alone; the optimal one-to-one matching pairs A-Y and B-X.
    truth = np.zeros((1, 20), np.uint8)
    pred = np.zeros((1, 20), np.uint8)
    truth[0, 0:10] = 1
    truth[0, 10:20] = 2
    pred[0, 0:3] = 1
    pred[0, 5:15] = 2
    result = metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(thresholds=[0.25, 0.5], match_threshold=0.25))
    np.testing.assert_array_equal(result.tp, [2, 0])
    np.testing.assert_array_equal(result.truth_match_id, [1, 2])
    np.testing.assert_array_equal(result.pred_match_id, [1, 2])
    assert result.mean_matched_iou == pytest.approx((3 / 10 + 5 / 15) / 2)


def test_below_half_prefers_larger_iou_among_equal_counts():
    # One truth (cols 0-19), two disjoint candidate preds: X (cols 0-8, IoU 0.45) and
    # Y (cols 10-16, IoU 0.35). Only one can match; the larger IoU wins.
    truth = np.zeros((1, 20), np.uint8)
    pred = np.zeros((1, 20), np.uint8)
    truth[0, :] = 1
    pred[0, 0:9] = 5
    pred[0, 10:17] = 6
    result = metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(thresholds=[0.3], match_threshold=0.3))
    np.testing.assert_array_equal(result.tp, [1])
    np.testing.assert_array_equal(result.truth_match_id, [5])
    np.testing.assert_array_equal(result.pred_matched, [True, False])
    assert result.mean_matched_iou == pytest.approx(0.45)


def random_rectangles(rng, shape, n, size_range, ids=None):
    """Label image of n random rectangles; later ones paint over earlier ones."""
    labels = np.zeros(shape, np.int64)
    ids = np.arange(1, n + 1) if ids is None else ids
    for label in ids:
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(*size_range, size=2)
        labels[y:y + h, x:x + w] = label
    return labels


def brute_force(truth, pred, threshold):
    """Best one-to-one matching by enumeration, from IoUs of explicit masks.

    Returns (matched pair count, IoU sum): the most pairs with IoU > threshold, then the largest
    IoU sum, found by trying every matching. Only for a handful of objects.
    """
    truth_ids = [i for i in np.unique(truth) if i]
    pred_ids = [j for j in np.unique(pred) if j]
    iou = np.zeros((len(truth_ids), len(pred_ids)))
    for a, i in enumerate(truth_ids):
        for b, j in enumerate(pred_ids):
            both = np.sum((truth == i) & (pred == j))
            either = np.sum((truth == i) | (pred == j))
            iou[a, b] = both / either

    def best(a, used):
        if a == len(truth_ids):
            return (0, 0.0)
        options = [best(a + 1, used)]
        for b in range(len(pred_ids)):
            if b not in used and iou[a, b] > threshold:
                count, total = best(a + 1, used | {b})
                options.append((count + 1, total + iou[a, b]))
        return max(options)

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(30))
def test_matching_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth = random_rectangles(rng, (20, 20), rng.integers(1, 7), (3, 10))
    pred = random_rectangles(rng, (20, 20), rng.integers(1, 7), (3, 10))
    thresholds = [0.05, 0.15, 0.25, 0.35, 0.5, 0.7]
    result = metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(thresholds=thresholds))
    for i, threshold in enumerate(thresholds):
        count, total = brute_force(truth, pred, threshold)
        assert result.tp[i] == count
        at_t = metrics.evaluate_image(
            truth, pred, metrics.EvaluateOptions(thresholds=[threshold], match_threshold=threshold)
        )
        if count:
            assert at_t.mean_matched_iou == pytest.approx(total / count)
        assert at_t.truth_matched.sum() == at_t.pred_matched.sum() == count


def test_relabelling_and_dtypes_do_not_change_scores():
    rng = np.random.default_rng(7)
    truth = random_rectangles(rng, (64, 64), 25, (4, 14))
    extra = random_rectangles(rng, (64, 64), 5, (4, 14), ids=np.arange(100, 105))
    pred = np.maximum(np.roll(truth, (1, 1), axis=(0, 1)), extra)
    reference = metrics.evaluate_image(truth.astype(np.uint8), pred.astype(np.uint16))
    assert reference.tp[0] > 0 and reference.n_splits + reference.n_merges > 0
    # Huge, scattered ids in wide dtypes.
    big_truth = np.where(truth > 0, truth.astype(np.uint64) * 10**17 + 3, 0).astype(np.uint64)
    big_pred = np.where(pred > 0, 4_000_000_000 - pred, 0).astype(np.uint32)
    relabelled = metrics.evaluate_image(big_truth, big_pred)
    for name in ("tp", "fp", "fn", "score", "precision", "recall", "f1"):
        np.testing.assert_array_equal(getattr(relabelled, name), getattr(reference, name))
    assert relabelled.mean_matched_iou == reference.mean_matched_iou
    assert (relabelled.n_splits, relabelled.n_merges) == (reference.n_splits, reference.n_merges)
    # Per-object arrays follow the new id order: truth ids keep it, pred ids reverse it.
    big_ids = reference.truth_ids.astype(np.uint64) * 10**17 + 3
    np.testing.assert_array_equal(relabelled.truth_ids, big_ids)
    np.testing.assert_array_equal(relabelled.truth_best_iou, reference.truth_best_iou)
    np.testing.assert_array_equal(relabelled.pred_best_iou, reference.pred_best_iou[::-1])
    np.testing.assert_array_equal(relabelled.pred_matched, reference.pred_matched[::-1])


def test_match_ids_are_mutual():
    rng = np.random.default_rng(3)
    truth = random_rectangles(rng, (80, 80), 40, (4, 16))
    pred = random_rectangles(rng, (80, 80), 40, (4, 16))
    result = metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(match_threshold=0.3))
    pred_index = {int(j): k for k, j in enumerate(result.pred_ids)}
    matched = result.truth_matched
    for i, j in zip(result.truth_ids[matched], result.truth_match_id[matched]):
        assert result.pred_match_id[pred_index[int(j)]] == i
    assert np.all(result.truth_match_id[~result.truth_matched] == 0)
    assert np.all(result.truth_best_iou[result.truth_matched] > 0.3)


@pytest.mark.parametrize(
    "truth, pred, message",
    [
        (np.zeros((4, 4)), np.zeros((4, 4), np.uint8), "integers"),
        (np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8), "binary mask"),
        (np.full((4, 4), -1, np.int16), np.zeros((4, 4), np.uint8), "negative"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), "same shape"),
    ],
)
def test_bad_labels(truth, pred, message):
    with pytest.raises(InputError, match=message):
        metrics.evaluate_image(truth, pred)


@pytest.mark.parametrize("options, field, message", [
    ({"thresholds": []}, "thresholds", "non-empty"),
    ({"thresholds": [0.5, 1.0]}, "thresholds", r"in \[0, 1\), got 1.0"),
    ({"thresholds": [-0.1]}, "thresholds", r"in \[0, 1\), got -0.1"),
    ({"thresholds": [0.5, 0.5]}, "thresholds", "must not repeat"),
    ({"thresholds": [float("nan")]}, "thresholds", "finite number"),
    ({"match_threshold": 1.0}, "match_threshold", r"match_threshold must be in \[0, 1\)"),
    ({"report_thresholds": [0.52]}, "report_thresholds", "among the thresholds scored"),
    ({"thresholds": [0.5], "report_thresholds": [0.75]}, "report_thresholds", r"scored \(0.5\)"),
])
def test_bad_options_name_the_field(options, field, message):
    with pytest.raises(InputError, match=message) as error:
        metrics.EvaluateOptions(**options)
    assert error.value.field == field


def test_options_are_normalised_once():
    options = metrics.EvaluateOptions(thresholds=np.array([0.75, 0.5]), match_threshold=np.float32(0.5),
                                      report_thresholds=[0.75, 0.5, 0.75])
    assert options.thresholds == (0.75, 0.5) and all(type(t) is float for t in options.thresholds)
    assert options.match_threshold == 0.5 and options.report_thresholds == (0.5, 0.75)
    assert metrics.EvaluateOptions().thresholds == metrics.DSB_THRESHOLDS


def test_summarize_means_over_images():
    truth, pred = hand_made_pair()
    empty = np.zeros((8, 8), np.uint8)
    perfect = metrics.evaluate_image(truth, truth)
    hand = metrics.evaluate_image(truth, pred)
    nothing_found = metrics.evaluate_image(truth, np.zeros_like(truth))
    both_empty = metrics.evaluate_image(empty, empty)
    summary = metrics.summarize([perfect, hand, nothing_found, both_empty])
    assert summary.n_images == 4
    assert summary.n_empty_images == 1
    assert (summary.n_truth, summary.n_pred) == (18, 12)
    assert summary.dsb_score == pytest.approx((1 + hand.dsb_score + 0 + 1) / 4)
    np.testing.assert_allclose(summary.score, (1 + hand.score + 0 + 1) / 4)
    np.testing.assert_array_equal(summary.tp, 6 + hand.tp)
    np.testing.assert_array_equal(summary.fn, hand.fn + 6)
    assert summary.dsb_score == pytest.approx(summary.score.mean())
    # Images without a matched pair are left out of the mean matched IoU.
    assert summary.mean_matched_iou == pytest.approx((1 + 0.85) / 2)
    assert (summary.n_splits, summary.n_merges) == (1, 1)
    with pytest.raises(InputError):
        metrics.summarize([])
    with pytest.raises(InputError, match="same thresholds"):
        metrics.summarize([hand, metrics.evaluate_image(truth, pred, metrics.EvaluateOptions(thresholds=[0.5]))])


def perturbed_predictions(truth, rng):
    """Prediction-like label images from a ground truth: shifted, grown, merged, thinned out."""
    from scipy import ndimage as ndi

    shifted = np.roll(truth, (1, 2), axis=(0, 1))
    grown = ndi.grey_dilation(truth, size=(5, 5))
    merged = (truth + 1) // 2
    thinned = np.where(np.isin(truth, rng.choice(truth.max() + 1, truth.max() // 3)), 0, truth)
    thinned = np.maximum(thinned, random_rectangles(rng, truth.shape, 5, (5, 20)) * 1000)
    return [shifted, grown, merged, thinned]


def stardist_comparison_pairs():
    """Random pairs, and random truths with perturbed predictions."""
    rng = np.random.default_rng(12)
    pairs = []
    for _ in range(8):
        truth = random_rectangles(rng, (96, 96), 30, (4, 18))
        pairs.append((truth, random_rectangles(rng, (96, 96), 30, (4, 18))))
        pairs.extend((truth, pred) for pred in perturbed_predictions(truth, rng))
    return pairs


def dsb_comparison_pairs(dsb2018):
    """DSB validation labels with perturbed predictions."""
    from nucleai.labelio import read_labels

    rng = np.random.default_rng(12)
    pairs = []
    for path in sorted((dsb2018 / "val" / "labels").glob("*.tif"))[:6]:
        truth = read_labels(path)
        pairs.extend((truth, pred) for pred in perturbed_predictions(truth, rng))
    return pairs


THRESHOLDS = [0.1, 0.3, 0.5, 0.55, 0.7, 0.85, 0.95]


def test_against_stardist_matching_dataset():
    assert_matches_stardist_matching_dataset(stardist_comparison_pairs())


def test_against_stardist_matching_dataset_on_dsb_labels(dsb2018):
    assert_matches_stardist_matching_dataset(dsb_comparison_pairs(dsb2018))


def assert_matches_stardist_matching_dataset(pairs):
    matching = pytest.importorskip("stardist.matching")
    assert all(truth.any() or pred.any() for truth, pred in pairs)
    ours = metrics.summarize(metrics.evaluate_image(t, p, metrics.EvaluateOptions(thresholds=THRESHOLDS)) for t, p in pairs)
    theirs_t = [t + STRICT for t in THRESHOLDS]
    truths, preds = [t for t, _ in pairs], [p for _, p in pairs]
    by_image = matching.matching_dataset(
        truths, preds, thresh=theirs_t, by_image=True, show_progress=False
    )
    for i, theirs in enumerate(by_image):
        assert (ours.tp[i], ours.fp[i], ours.fn[i]) == (theirs.tp, theirs.fp, theirs.fn)
        assert ours.score[i] == pytest.approx(theirs.accuracy)
        assert ours.precision[i] == pytest.approx(theirs.precision)
        assert ours.recall[i] == pytest.approx(theirs.recall)
        assert ours.f1[i] == pytest.approx(theirs.f1)
    assert ours.tp.sum() > 0 and ours.fp.sum() > 0 and ours.fn.sum() > 0


def test_against_stardist_matching_per_image():
    matching = pytest.importorskip("stardist.matching")
    for truth, pred in stardist_comparison_pairs()[:20]:
        for threshold in THRESHOLDS:
            theirs = matching.matching(truth, pred, thresh=threshold + STRICT)
            ours = metrics.evaluate_image(
                truth, pred, metrics.EvaluateOptions(thresholds=[threshold], match_threshold=threshold)
            )
            assert (ours.tp[0], ours.fp[0], ours.fn[0]) == (theirs.tp, theirs.fp, theirs.fn)
            assert (ours.n_truth, ours.n_pred) == (theirs.n_true, theirs.n_pred)
            # Below 0.5 stardist's tie-break also sums the IoUs of assigned pairs that are not
            # matches, so its matched pairs may have a smaller IoU sum than ours (ours is checked
            # against brute force above); above 0.5 the matching is unique.
            if theirs.tp and threshold >= 0.5:
                assert ours.mean_matched_iou == pytest.approx(theirs.mean_matched_score, abs=1e-5)


def test_2048_image_with_3000_objects():
    # A 60 x 50 grid of rectangles (3000 objects), predicted shifted by 2 pixels along x: the IoU
    # of a w-wide rectangle and its shifted copy is (w - 2) / (w + 2), so the counts are known.
    rng = np.random.default_rng(0)
    rows, cols = 60, 50
    cell_h, cell_w = 2048 // rows, 2048 // cols
    heights = rng.integers(20, cell_h - 2, size=(rows, cols))
    widths = rng.integers(8, cell_w - 4, size=(rows, cols))
    y, x = np.mgrid[:rows * cell_h, :cols * cell_w]
    r, c = y // cell_h, x // cell_w
    inside = (y % cell_h < heights[r, c]) & (x % cell_w < widths[r, c])
    truth = np.zeros((2048, 2048), np.uint16)
    truth[: rows * cell_h, : cols * cell_w] = np.where(inside, r * cols + c + 1, 0)
    shifted = np.roll(truth, 2, axis=1).astype(np.uint32)
    pred = np.where(shifted > 0, shifted * 7 + 11, 0)  # other, non-sequential ids

    result = metrics.evaluate_image(truth, pred)
    assert result.n_truth == result.n_pred == 3000
    iou = (widths - 2) / (widths + 2)
    expected_tp = [(iou > t).sum() for t in metrics.DSB_THRESHOLDS]
    np.testing.assert_array_equal(result.tp, expected_tp)
    assert result.mean_matched_iou == pytest.approx(iou[iou > 0.5].mean())
