"""nucleai.labels: label-image validation, compaction and the overlap table every operation uses."""
import numpy as np
import pytest

from nucleai.errors import InputError
from nucleai.labels import Compacted, check_labels, compact, label_overlap


@pytest.mark.parametrize("labels, kwargs, message", [
    (np.zeros((4, 4)), {}, "ground truth must be a label image of integers.*float64"),
    (np.zeros((4, 4), bool), {}, "label a binary mask first"),
    (np.full((4, 4), -2, np.int16), {}, r"negative label ids \(minimum -2\)"),
    (np.zeros((2, 4, 4), np.uint8), {"ndim": 2}, r"2-D label image is expected, got shape \(2, 4, 4\)"),
    (np.zeros((4, 5), np.uint8), {"shape": (4, 4)}, r"shape \(4, 5\) but \(4, 4\) is expected"),
])
def test_what_is_not_a_label_image_is_refused_naming_it_and_the_field(labels, kwargs, message):
    with pytest.raises(InputError, match=message) as error:
        check_labels(labels, "ground truth", field="truth", **kwargs)
    assert str(error.value).startswith("ground truth") and error.value.field == "truth"


def test_a_label_image_is_returned_as_an_array_unchanged():
    labels = [[0, 3], [3, 7]]
    checked = check_labels(labels, ndim=2, shape=(2, 2))
    assert isinstance(checked, np.ndarray)
    np.testing.assert_array_equal(checked, labels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint64])
def test_compact_renumbers_in_id_order_with_areas(dtype):
    labels = np.array([[0, 9, 9], [4, 4, 0], [0, 200, 9]], dtype)
    result = compact(labels)
    assert isinstance(result, Compacted) and result.labels.dtype == np.int32
    np.testing.assert_array_equal(result.labels, [[0, 2, 2], [1, 1, 0], [0, 3, 2]])
    np.testing.assert_array_equal(result.ids, [4, 9, 200])
    np.testing.assert_array_equal(result.areas, [2, 3, 1])
    assert result.ids.dtype == result.areas.dtype == np.int64


def test_sparse_huge_ids_take_the_sorting_path_with_the_same_result():
    dense = np.array([[0, 1, 1], [2, 2, 0], [0, 3, 1]], np.uint32)
    huge = np.where(dense > 0, dense.astype(np.uint64) * 10**15 + 7, 0)  # far more ids than pixels
    a, b = compact(dense), compact(huge)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.areas, b.areas)
    np.testing.assert_array_equal(b.ids, np.array([1, 2, 3]) * 10**15 + 7)
    # no background at all: the first object is still number 1
    full = compact(np.array([[5, 5], [10**12, 5]], np.int64))
    np.testing.assert_array_equal(full.labels, [[1, 1], [2, 1]])
    np.testing.assert_array_equal(full.ids, [5, 10**12])


def test_compact_of_empty_and_three_d_images():
    empty = compact(np.zeros((0, 3), np.uint16))
    assert empty.labels.shape == (0, 3) and empty.ids.size == 0 and empty.areas.size == 0
    background = compact(np.zeros((3, 3), np.uint16))
    assert background.labels.max() == 0 and background.ids.size == 0
    stack = np.zeros((2, 3, 3), np.uint16)
    stack[0, 0, 0], stack[1, 2, 2] = 8, 3
    result = compact(stack)
    assert result.labels.shape == stack.shape and result.labels[0, 0, 0] == 2 and result.labels[1, 2, 2] == 1


def test_label_overlap_lists_every_overlapping_pair_once():
    truth = np.array([[1, 1, 0, 0], [1, 1, 0, 5], [0, 0, 5, 5]], np.uint8)
    pred = np.array([[2, 2, 2, 0], [2, 2, 0, 9], [0, 0, 0, 9]], np.uint16)
    overlap = label_overlap(truth, pred)
    np.testing.assert_array_equal(overlap.truth_ids, [1, 5])
    np.testing.assert_array_equal(overlap.pred_ids, [2, 9])
    assert overlap.truth_ids.dtype == np.uint8 and overlap.pred_ids.dtype == np.uint16
    np.testing.assert_array_equal(overlap.truth_areas, [4, 3])
    np.testing.assert_array_equal(overlap.pred_areas, [5, 2])
    np.testing.assert_array_equal(overlap.pair_truth, [0, 1])
    np.testing.assert_array_equal(overlap.pair_pred, [0, 1])
    np.testing.assert_array_equal(overlap.intersection, [4, 2])
    np.testing.assert_allclose(overlap.iou, [4 / 5, 2 / 3])


def test_label_overlap_keeps_wide_ids_exactly_and_refuses_what_does_not_pair():
    truth = np.array([[0, 2**63 + 5]], np.uint64)
    overlap = label_overlap(truth, np.array([[0, 1]], np.uint8))
    assert overlap.truth_ids.dtype == np.uint64 and int(overlap.truth_ids[0]) == 2**63 + 5
    with pytest.raises(InputError, match="same shape"):
        label_overlap(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(InputError, match="pred must be a label image"):
        label_overlap(np.zeros((2, 2), np.uint8), np.zeros((2, 2)))
    empty = label_overlap(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
    assert empty.iou.size == 0 and empty.truth_ids.size == empty.pred_ids.size == 0
