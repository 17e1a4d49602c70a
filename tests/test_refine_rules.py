"""nucleai.refine.rules: each rule on hand-made label images, their order, provenance, errors, speed."""
import time

import numpy as np
import pytest

from nucleai.errors import InputError
from nucleai.refine import PUBLISHED, check_parameters, refine
from nucleai.refine.rules import band_offsets, contacts

#: Parameters under which no rule but "inside" changes anything.
NEUTRAL = {"p1": 1.0, "p2": 0, "p3": 0.5, "p4": 0, "p5": 0, "p6": 0.0}


def neutral(**changes):
    return {**NEUTRAL, **changes}


def square(labels, top, left, size, value):
    labels[top : top + size, left : left + size] = value
    return labels


def ones_like(labels):
    return np.ones(labels.shape, np.float32)


# ------------------------------------------------------------------------------------------------
# Contour rings


def test_contacts_count_each_ring_pixel_once_and_the_image_border():
    labels = np.zeros((8, 8), np.int32)
    square(labels, 2, 2, 3, 1)  # 3x3 square: ring of 12 pixels
    labels[2:5, 5] = 2  # a neighbour on its right side
    square(labels, 0, 0, 1, 3)  # a corner pixel: 2 ring pixels inside, 2 outside the image
    ring, a, b, count = contacts(labels, 3)
    assert ring[1] == 12 and ring[3] == 4
    pairs = {(int(x), int(y)): int(c) for x, y, c in zip(a, b, count)}
    assert pairs[(1, 2)] == 3 and pairs[(1, 0)] == 9
    assert pairs[(3, 4)] == 2 and pairs[(3, 0)] == 2  # label 4 = the frame around the image


# ------------------------------------------------------------------------------------------------
# Rule 1: inside


def ring_with_hole():
    labels = np.zeros((20, 20), np.int32)
    square(labels, 3, 3, 11, 7)
    square(labels, 6, 6, 5, 9)  # fills the hole of object 7
    return labels


def test_an_object_inside_another_is_removed_and_its_pixels_go_to_it():
    labels = ring_with_hole()
    result = refine(labels, ones_like(labels), neutral())
    expected = np.zeros_like(labels)
    square(expected, 3, 3, 11, 1)
    np.testing.assert_array_equal(result.labels, expected)
    assert list(result.input_ids) == [7, 9] and list(result.fate) == ["kept", "inside"]
    assert list(result.output_of) == [1, 0] and list(result.parents) == [7]
    assert list(result.sources(1)) == [7]


def test_nested_objects_go_to_the_outermost():
    labels = np.zeros((24, 24), np.int32)
    square(labels, 2, 2, 19, 1)
    square(labels, 5, 5, 13, 2)
    square(labels, 9, 9, 5, 3)
    result = refine(labels, ones_like(labels), neutral())
    assert result.count == 1 and (result.labels == 1).sum() == 19 * 19
    assert list(result.fate) == ["kept", "inside", "inside"]


@pytest.mark.parametrize("case", ["touches background", "touches the border", "two neighbours"])
def test_an_object_not_entirely_inside_one_other_stays(case):
    labels = ring_with_hole()
    if case == "touches background":
        labels[6, 3:6] = 0  # a channel from the inner object to the outside
    elif case == "touches the border":
        labels = labels[6:, 6:]  # the inner object now touches the image edge
    else:
        labels[11:14, 6:11] = 4  # part of its ring belongs to a third object
    result = refine(labels, ones_like(labels), neutral())
    assert "inside" not in list(result.fate)
    assert result.count == len(result.input_ids)


# ------------------------------------------------------------------------------------------------
# Rule 2: merge


def small_beside_large(p1):
    labels = np.zeros((16, 20), np.int32)
    square(labels, 2, 2, 10, 1)
    square(labels, 4, 12, 3, 2)  # 3x3 touching 1 along one side: 3 of its 12 ring pixels
    return refine(labels, ones_like(labels), neutral(p1=p1)), labels


def test_an_object_surrounded_beyond_p1_is_merged_into_its_neighbour():
    result, labels = small_beside_large(0.2)
    assert result.count == 1
    np.testing.assert_array_equal(result.labels, (labels > 0).astype(result.labels.dtype))
    assert list(result.fate) == ["kept", "merged"] and list(result.output_of) == [1, 1]
    assert list(result.sources(1)) == [1, 2] and list(result.parents) == [1]


def test_an_object_surrounded_at_most_p1_stays():
    result, labels = small_beside_large(0.25)  # share is exactly 0.25: not more than p1
    assert result.count == 2 and list(result.fate) == ["kept", "kept"]


def test_the_merged_object_is_named_after_its_largest_member():
    labels = np.zeros((16, 20), np.int32)
    square(labels, 4, 2, 3, 1)  # the small one has the lower id
    square(labels, 2, 5, 10, 2)
    result = refine(labels, ones_like(labels), neutral(p1=0.2))
    assert list(result.parents) == [2] and list(result.fate) == ["merged", "kept"]


def test_only_the_largest_neighbour_share_counts():
    labels = np.zeros((20, 20), np.int32)
    square(labels, 8, 8, 3, 1)  # 12 ring pixels
    labels[6:13, 11:18] = 2  # 3 of them on the right (3 of 2's 28 ring pixels touch 1)
    labels[6:13, 1:8] = 3  # 3 on the left: 0.25 each, 0.5 together
    result = refine(labels, ones_like(labels), neutral(p1=0.3))
    assert result.count == 3


def test_merges_are_decided_at_once_and_chains_merge_whole():
    labels = np.zeros((10, 30), np.int32)
    labels[2:6, 2:8] = 1
    labels[2:6, 8:14] = 2  # 4 of 2's 20 ring pixels touch 1, 4 touch 3
    labels[2:6, 14:20] = 3
    result = refine(labels, ones_like(labels), neutral(p1=0.15))
    assert result.count == 1 and list(result.sources(1)) == [1, 2, 3]
    assert result.counts()["merged"] == 2


def test_p1_of_one_switches_merging_off():
    labels = np.zeros((10, 10), np.int32)
    labels[2:8, 2:5] = 1
    labels[2:8, 5:8] = 2
    assert refine(labels, ones_like(labels), neutral(p1=1.0)).count == 2


# ------------------------------------------------------------------------------------------------
# Rule 3: small objects


def test_objects_under_p2_pixels_are_removed():
    labels = np.zeros((20, 20), np.int32)
    square(labels, 1, 1, 4, 1)  # 16 px
    square(labels, 10, 10, 5, 2)  # 25 px
    result = refine(labels, ones_like(labels), neutral(p2=17))
    assert list(result.fate) == ["small", "kept"] and list(result.parents) == [2]
    assert (result.labels > 0).sum() == 25
    assert refine(labels, ones_like(labels), neutral(p2=16)).count == 2  # 16 is not under 16


# ------------------------------------------------------------------------------------------------
# Rule 4: contour move


def one_square(size=10, at=5, shape=(20, 20)):
    labels = np.zeros(shape, np.int32)
    return square(labels, at, at, size, 1)


def prob_square(top, size, shape=(20, 20), inside=1.0, outside=0.0):
    prob = np.full(shape, outside, np.float32)
    prob[top : top + size, top : top + size] = inside
    return prob


def test_contours_grow_within_p5_into_the_thresholded_region():
    labels = one_square()
    prob = prob_square(3, 14)  # foreground 2 px beyond the object on every side
    one = refine(labels, prob, neutral(p5=1))
    # distance <= 1: a 12 x 12 square without its four corners (at distance sqrt(2))
    assert (one.labels == 1).sum() == 12 * 12 - 4
    assert one.labels[4, 4] == 0 and one.labels[4, 5] == 1
    two = refine(labels, prob, neutral(p5=2))
    expected_two = np.hypot(*np.mgrid[-2:12, -2:12] - np.clip(np.mgrid[-2:12, -2:12], 0, 9)) <= 2
    assert (two.labels == 1).sum() == expected_two.sum()
    assert one.pixels_added[0] == 40 and one.pixels_removed[0] == 0
    assert one.boundary_shift[0] == pytest.approx(40 / 36)  # 36 contour pixels of a 10x10 square


def test_contours_shrink_within_p4_to_the_thresholded_region():
    labels = one_square()
    prob = prob_square(7, 6)  # foreground 2 px inside the object's edge
    one = refine(labels, prob, neutral(p4=1))
    np.testing.assert_array_equal(one.labels[6:14, 6:14], 1)
    assert (one.labels == 1).sum() == 64 and one.pixels_removed[0] == 36
    two = refine(labels, prob, neutral(p4=2))
    assert (two.labels == 1).sum() == 36
    assert refine(labels, prob, neutral(p4=0)).labels.sum() == 100


def test_background_between_objects_goes_to_the_nearest_object_ties_above_then_left():
    labels = np.zeros((9, 11), np.int32)
    labels[2:7, 1:4] = 1
    labels[2:7, 6:10] = 2  # a two-pixel gap: columns 4 and 5
    result = refine(labels, ones_like(labels), neutral(p5=1, p1=1.0))
    np.testing.assert_array_equal(result.labels[2:7, 4], 1)
    np.testing.assert_array_equal(result.labels[2:7, 5], 2)
    gap = np.zeros((9, 11), np.int32)
    gap[2:7, 1:4] = 1
    gap[2:7, 5:9] = 2  # one-pixel gap, equally far from both: the object on the left wins
    tied = refine(gap, ones_like(gap), neutral(p5=1))
    np.testing.assert_array_equal(tied.labels[2:7, 4], 1)
    assert band_offsets(1).tolist() == [[-1, 0], [0, -1], [0, 1], [1, 0]]


def test_objects_never_take_pixels_from_each_other():
    labels = np.zeros((10, 14), np.int32)
    labels[2:8, 2:7] = 1
    labels[2:8, 7:12] = 2
    prob = ones_like(labels)
    prob[:, 6] = 0  # object 1's pixels along the contact are background in the map
    result = refine(labels, prob, neutral(p4=1, p5=1))
    assert (result.labels[2:8, 6] == 0).all()  # given up by 1, not taken by 2
    assert (result.labels[2:8, 7] == 2).all()


def test_the_image_edge_is_not_a_contour():
    labels = np.zeros((10, 10), np.int32)
    labels[2:8, 0:5] = 1  # cut by the left image edge
    prob = ones_like(labels)
    prob[:, 0] = 0
    result = refine(labels, prob, neutral(p4=1))
    assert (result.labels[3:7, 0] == 1).all()  # not a contour pixel: kept despite the map
    assert result.labels[2, 0] == 0  # the top row is a contour: dropped


def test_an_object_cut_in_pieces_keeps_its_largest_and_an_emptied_one_vanishes():
    labels = np.zeros((14, 24), np.int32)
    labels[2:10, 2:10] = 1  # 8x8
    labels[5, 10:14] = 1  # a one-pixel neck
    labels[4:8, 14:18] = 1  # 4x4
    square(labels, 10, 20, 2, 2)  # 2x2, all contour
    prob = ones_like(labels)
    prob[5, 10:14] = 0
    prob[10:12, 20:22] = 0
    result = refine(labels, prob, neutral(p4=1))
    assert result.count == 1 and list(result.fate) == ["kept", "vanished"]
    kept = result.labels == 1
    assert kept[4, 14:18].sum() == 0 and kept[2:10, 2:10].sum() > 0
    assert result.pixels_removed[0] == labels[labels == 1].size - kept.sum()


# ------------------------------------------------------------------------------------------------
# Rule 5: mean probability


def test_objects_with_mean_probability_below_p6_are_removed():
    labels = np.zeros((10, 20), np.int32)
    square(labels, 2, 2, 4, 1)
    square(labels, 2, 10, 4, 2)
    prob = np.zeros(labels.shape, np.float32)
    prob[labels == 1] = 0.79
    prob[labels == 2] = 0.8
    result = refine(labels, prob, neutral(p6=0.8))
    assert list(result.fate) == ["low_probability", "kept"]
    np.testing.assert_allclose(result.mean_probability, [0.8], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# The order of the rules


def test_inside_comes_before_merge():
    labels = ring_with_hole()
    result = refine(labels, ones_like(labels), neutral(p1=0.1))
    assert list(result.fate) == ["kept", "inside"]  # enclosed: removed, not merged


def test_merge_comes_before_the_size_filter():
    labels = np.zeros((10, 12), np.int32)
    labels[2:6, 2:5] = 1  # 12 px
    labels[2:6, 5:8] = 2  # 12 px; 4 of each one's 14 ring pixels touch the other
    result = refine(labels, ones_like(labels), neutral(p1=0.2, p2=20))
    assert result.count == 1 and list(result.fate) == ["kept", "merged"]


def test_the_size_filter_comes_before_the_contour_move():
    labels = one_square(size=4, at=8)  # 16 px; p5 = 1 would grow it to 32 px
    result = refine(labels, ones_like(labels), neutral(p2=20, p5=1))
    assert result.count == 0 and list(result.fate) == ["small"]


def test_the_contour_move_comes_before_the_probability_filter():
    labels = one_square()
    prob = prob_square(6, 8, inside=1.0, outside=0.3)
    # before the move: (64 * 1.0 + 36 * 0.3) / 100 = 0.748; after p4 = 1 the rim is gone: 1.0
    assert refine(labels, prob, neutral(p6=0.8)).count == 0
    assert refine(labels, prob, neutral(p4=1, p6=0.8)).count == 1


def test_a_merged_group_removed_later_takes_all_its_members():
    _, labels = small_beside_large(0.2)
    assert refine(labels, ones_like(labels), neutral(p1=0.2, p6=1.0)).count == 1  # 1 is not below 1
    low = np.full(labels.shape, 0.5, np.float32)
    gone = refine(labels, low, neutral(p1=0.2, p6=0.6))
    assert list(gone.fate) == ["low_probability", "low_probability"]
    assert list(gone.output_of) == [0, 0]


# ------------------------------------------------------------------------------------------------
# Ids, provenance, defaults


def test_arbitrary_ids_are_traced_and_outputs_numbered_in_input_order():
    labels = np.zeros((20, 30), np.int32)
    square(labels, 1, 1, 5, 300000)
    square(labels, 10, 1, 5, 17)
    square(labels, 1, 20, 5, 5)
    result = refine(labels, ones_like(labels), neutral())
    assert list(result.input_ids) == [5, 17, 300000]
    assert list(result.parents) == [5, 17, 300000] and list(result.output_of) == [1, 2, 3]
    assert result.labels.dtype == np.uint16
    np.testing.assert_array_equal(result.labels[labels == 300000], 3)
    assert result.mean_boundary_shift == 0


def test_fates_account_for_every_input_object():
    rng = np.random.default_rng(3)
    labels, prob = random_objects(rng, (256, 256), 120)
    result = refine(labels, prob)
    counts = result.counts()
    assert counts["input"] == sum(counts[f] for f in ("kept", "merged", "inside", "small",
                                                       "vanished", "low_probability"))
    assert counts["kept"] == counts["output"] == result.labels.max()
    inside = result.input_ids[result.fate == "inside"]
    for output_id in range(1, result.count + 1):
        sources = result.sources(output_id)
        assert result.parents[output_id - 1] in sources
        # output pixels that were object pixels come from its sources or objects inside them
        was = labels[(result.labels == output_id) & (labels > 0)]
        assert np.isin(was, np.concatenate([sources, inside])).all()


def test_an_empty_image_and_the_published_defaults():
    empty = np.zeros((32, 32), np.uint16)
    result = refine(empty, np.zeros((32, 32), np.float32))
    assert result.count == 0 and result.labels.shape == (32, 32) and result.mean_boundary_shift == 0
    assert result.params == PUBLISHED


# ------------------------------------------------------------------------------------------------
# Errors


def test_bad_inputs_are_refused_with_clear_messages():
    labels = one_square()
    with pytest.raises(InputError, match="probability map is 20x21 but the objects are 20x20"):
        refine(labels, np.zeros((20, 21), np.float32))
    with pytest.raises(InputError, match="between 0 and 1"):
        refine(labels, np.full((20, 20), 2.0))
    with pytest.raises(InputError, match="objects must be a label image of integers.*binary mask"):
        refine(labels > 0, ones_like(labels))
    with pytest.raises(InputError, match="2-D label image"):
        refine(labels[np.newaxis], ones_like(labels)[np.newaxis])


@pytest.mark.parametrize("params, message", [
    ({"p1": 1.5}, r"test: p1 must be in \[0.0, 1.0\], got 1.5 \(p1: merge an object"),
    ({"p2": -1}, "test: p2 must be at least 0, got -1"),
    ({"p4": 1.5}, "test: p4 must be a whole number"),
    ({"p5": 11}, r"test: p5 must be in \[0, 10\], got 11"),
    ({"p6": float("nan")}, "test: p6 must be a finite number"),
    ({"p3": "high"}, "test: p3 must be a finite number"),
    ({"P1": 0.2}, "unknown parameter.*P1"),
])
def test_parameters_out_of_range_are_refused(params, message):
    with pytest.raises(InputError, match=message):
        check_parameters(params, source="test")


def test_whole_number_parameters_are_ints():
    params = check_parameters({"p2": 44.0, "p4": np.int64(2), "p1": np.float32(0.5)})
    assert params["p2"] == 44 and isinstance(params["p2"], int) and isinstance(params["p4"], int)
    assert isinstance(params["p1"], float)


# ------------------------------------------------------------------------------------------------
# Speed


def random_objects(rng, shape, n, radius=(4.0, 12.0)):
    """Overlapping discs drawn in order (later on top) and a noisy probability map."""
    import skimage.draw

    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        r = rng.uniform(*radius)
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rr, cc = skimage.draw.disk((cy, cx), r, shape=shape)
        labels[rr, cc] = k
    prob = np.clip((labels > 0) * 0.9 + rng.normal(0.05, 0.1, shape), 0, 1).astype(np.float32)
    return labels, prob


def test_a_large_image_with_a_thousand_objects_is_refined_quickly():
    labels, prob = random_objects(np.random.default_rng(0), (1024, 1024), 1200, radius=(5, 12))
    assert len(np.unique(labels)) > 1000
    start = time.perf_counter()
    result = refine(labels, prob, {"p4": 2, "p5": 3})
    assert time.perf_counter() - start < 3.0  # about 0.3 s on a busy 2-core machine
    assert result.count > 100
