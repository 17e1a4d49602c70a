"""nucleai.tta: exact transforms and inverses, the merge rules on hand-made label images, the
options, segmentation under TTA with the tiny model, and ``nucleai segment --tta``."""
import numpy as np
import pytest
import skimage.io
import tifffile

from nucleai import metrics, models, predict, tta
from nucleai.cli import main
from nucleai.errors import InputError
from nucleai.predict import SegmentOptions
from nucleai.tta import MergeOptions, TTAOptions
from testdata import DEFAULT_PRECISION
from tiny_model import synthetic_image, tiny_model_dir


def box(labels, value, rows, cols):
    labels[rows[0] : rows[1], cols[0] : cols[1]] = value
    return labels


def same_partition(a, b):
    """Equal up to the numbering of the objects."""
    overlap = metrics.label_overlap(a, b)
    return (
        overlap.truth_ids.size == overlap.pred_ids.size == overlap.iou.size
        and bool(np.all(overlap.iou == 1))
    )


# ------------------------------------------------------------------------------------------------
# Transforms


@pytest.mark.parametrize("shape", [(5, 7), (6, 4, 3), (1, 9)])
def test_every_transform_is_undone_exactly_also_for_non_square_images(shape):
    array = np.arange(np.prod(shape)).reshape(shape)
    results = set()
    for name in tta.TRANSFORMS:
        moved = tta.transform(array, name)
        swaps = name in ("rot90", "rot270", "transpose", "transverse")
        assert moved.shape[:2] == ((shape[1], shape[0]) if swaps else shape[:2])
        assert moved.shape[2:] == shape[2:]  # channels stay last
        np.testing.assert_array_equal(tta.invert(moved, name), array)
        results.add(moved.tobytes() + bytes(str(moved.shape), "ascii"))
    assert len(results) == (8 if min(shape[:2]) > 1 else 4)  # a single row has 4 versions


def test_transforms_are_the_usual_flips_and_rotations():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(tta.transform(a, "flip_y"), [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_array_equal(tta.transform(a, "flip_x"), [[3, 2, 1], [6, 5, 4]])
    np.testing.assert_array_equal(tta.transform(a, "rot90"), [[3, 6], [2, 5], [1, 4]])
    np.testing.assert_array_equal(tta.transform(a, "transpose"), [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(tta.transform(a, "transverse"), [[6, 3], [5, 2], [4, 1]])
    for name in tta.TRANSFORMS:  # the inverse table is a true inverse
        np.testing.assert_array_equal(tta.transform(tta.transform(a, name), tta.INVERSE[name]), a)


def test_transform_names_are_checked():
    assert tta.check_transforms("identity, rot90") == ("identity", "rot90")
    assert tta.check_transforms(["flip_x"]) == ("flip_x",)
    with pytest.raises(InputError, match=r"unknown transform 'rot45'; choose from identity, flip_y"):
        tta.check_transforms("identity,rot45")
    with pytest.raises(InputError, match="rot90 given more than once"):
        tta.check_transforms(["rot90", "identity", "rot90"])
    with pytest.raises(InputError, match="no transforms given"):
        tta.check_transforms(" , ")
    with pytest.raises(InputError, match="unknown transform 'mirror'"):
        tta.transform(np.zeros((2, 2)), "mirror")
    with pytest.raises(InputError, match="unknown transform 'mirror'"):
        tta.invert(np.zeros((2, 2)), "mirror")


# ------------------------------------------------------------------------------------------------
# Merging label images


def test_identical_versions_merge_into_the_same_objects():
    labels = synthetic_image(np.random.default_rng(2), (64, 80), n_objects=8)[1]
    merged = tta.merge_instances([labels, labels.astype(np.int32), labels])
    assert same_partition(merged.labels, labels)
    np.testing.assert_array_equal(merged.votes, 3)
    np.testing.assert_array_equal(merged.mean_iou, 1.0)
    assert merged.labels.dtype == np.uint16 and merged.n_versions == 3 and merged.min_votes == 2


def test_objects_need_at_least_half_of_the_votes_by_default():
    a = box(np.zeros((20, 40), np.uint8), 1, (2, 8), (2, 8))  # A in all four versions
    box(a, 2, (2, 8), (12, 18))  # B in two of four: a tie, kept by default
    box(a, 3, (12, 18), (2, 8))  # C in one of four: dropped
    b = box(box(np.zeros_like(a), 5, (2, 8), (2, 8)), 6, (2, 8), (12, 18))
    c = box(np.zeros_like(a), 9, (2, 8), (2, 8))
    versions = [a, b, c, c.copy()]
    merged = tta.merge_instances(versions)
    assert merged.min_votes == 2
    np.testing.assert_array_equal(merged.votes, [4, 2])
    assert merged.labels[4, 4] == 1 and merged.labels[4, 14] == 2 and merged.labels[14, 4] == 0
    strict = tta.merge_instances(versions, MergeOptions(min_votes=3))  # a strict majority drops the tie
    np.testing.assert_array_equal(strict.votes, [4])
    assert not strict.labels[:, 10:].any()
    union = tta.merge_instances(versions, MergeOptions(min_votes=1))
    np.testing.assert_array_equal(union.votes, [4, 2, 1])
    assert tta.default_min_votes(6) == 3 and tta.default_min_votes(3) == 2
    assert tta.default_min_votes(2) == 1 and tta.default_min_votes(1) == 1


def test_the_mask_is_a_per_pixel_vote_of_the_versions_that_found_the_object():
    # three versions of one object: columns 2-9 in all, column 10 in two, column 11 in one
    versions = [box(np.zeros((10, 16), np.uint16), 1, (2, 8), (2, stop)) for stop in (10, 11, 12)]
    merged = tta.merge_instances(versions)
    np.testing.assert_array_equal(np.flatnonzero(merged.labels[4]), np.arange(2, 11))
    ious = [48 / 54, 54 / 54, 54 / 60]  # each version against the merged 6 x 9 box
    np.testing.assert_allclose(merged.mean_iou, [np.mean(ious)])
    # two versions: a tie at every pixel one of them covers, kept: the union
    pair = tta.merge_instances(versions[::2], MergeOptions(min_votes=2))
    np.testing.assert_array_equal(np.flatnonzero(pair.labels[4]), np.arange(2, 12))


def test_objects_match_at_iou_of_at_least_one_half_and_only_their_best_match():
    a = box(np.zeros((10, 20), np.uint16), 1, (0, 4), (0, 8))  # 32 pixels
    b = box(np.zeros_like(a), 1, (0, 4), (0, 4))  # its left half: IoU exactly 0.5
    box(b, 2, (0, 4), (4, 8))  # its right half: IoU 0.5 too, but the higher id
    merged = tta.merge_instances([a, b], MergeOptions(min_votes=1))
    # A matches the left half only; the right half, alone, loses its pixels to A's group
    # (one version each claims them, and A's group has more votes)
    np.testing.assert_array_equal(merged.votes, [2])
    np.testing.assert_array_equal(merged.labels, (a > 0).astype(np.uint16))
    np.testing.assert_allclose(merged.mean_iou, [(1 + 0.5) / 2])
    c = box(np.zeros_like(a), 1, (0, 4), (0, 3))  # IoU 12/32 < 0.5: no match
    below = tta.merge_instances([a, c], MergeOptions(min_votes=1))
    np.testing.assert_array_equal(below.votes, [1])  # c lies under a and loses every pixel
    assert (below.labels > 0).sum() == 32
    assert tta.merge_instances([a, c], MergeOptions(min_votes=1, iou_threshold=0.3)).votes.tolist() == [2]


def test_contested_pixels_go_to_the_object_more_versions_put_them_in():
    # X: found by all three versions; in versions 0 and 1 it covers column 6, in version 2 the
    # single-vote object Y does. Both keep the column by their own pixel vote.
    v0 = box(np.zeros((8, 12), np.uint16), 1, (1, 7), (1, 7))
    v1 = v0.copy()
    v2 = box(box(np.zeros_like(v0), 1, (1, 7), (1, 6)), 2, (1, 7), (6, 10))
    merged = tta.merge_instances([v0, v1, v2], MergeOptions(min_votes=1))
    np.testing.assert_array_equal(merged.votes, [3, 1])
    assert (merged.labels[1:7, 6] == 1).all() and (merged.labels[1:7, 7:10] == 2).all()
    assert set(np.unique(merged.labels)) == {0, 1, 2}  # one owner per pixel


def test_merged_objects_are_numbered_in_order_of_first_appearance():
    v0 = box(box(np.zeros((10, 30), np.uint16), 7, (1, 5), (20, 25)), 3, (1, 5), (1, 5))
    v1 = box(box(np.zeros_like(v0), 1, (6, 9), (10, 14)), 2, (1, 5), (1, 5))
    merged = tta.merge_instances([v0, v1], MergeOptions(min_votes=1))
    # version 0 in id order (3, then 7), then version 1's object version 0 did not find
    assert merged.labels[2, 2] == 1 and merged.labels[2, 22] == 2 and merged.labels[7, 12] == 3
    np.testing.assert_array_equal(merged.votes, [2, 1, 1])


def test_any_integer_ids_and_the_sparse_counting_path_give_the_same_merge(monkeypatch):
    labels = synthetic_image(np.random.default_rng(3), (60, 60), n_objects=7)[1]
    other = np.roll(labels, 1, axis=1)
    big = np.where(other > 0, other.astype(np.int64) + 2**40, 0)  # ids far above the size
    expected = tta.merge_instances([labels, other, labels[::-1, :][::-1, :]])
    merged = tta.merge_instances([labels.astype(np.uint8), big, labels])
    np.testing.assert_array_equal(merged.labels, expected.labels)
    monkeypatch.setattr(tta, "_DENSE_PAIR_LIMIT", 0)
    sparse = tta.merge_instances([labels, other, labels])
    np.testing.assert_array_equal(sparse.labels, expected.labels)
    np.testing.assert_array_equal(sparse.votes, expected.votes)
    np.testing.assert_allclose(sparse.mean_iou, expected.mean_iou)


def test_empty_and_single_versions():
    empty = np.zeros((5, 6), np.uint16)
    merged = tta.merge_instances([empty, empty])
    assert merged.count == 0 and not merged.labels.any() and merged.labels.shape == (5, 6)
    one = box(np.zeros((5, 6), np.uint16), 4, (1, 3), (1, 3))
    merged = tta.merge_instances([one])
    np.testing.assert_array_equal(merged.labels, (one > 0).astype(np.uint16))
    assert merged.votes.tolist() == [1] and merged.mean_iou.tolist() == [1.0]


def test_bad_label_images_and_parameters_are_refused_with_clear_messages():
    a = np.zeros((4, 5), np.uint16)
    with pytest.raises(InputError, match=r"label image 1 has shape \(5, 4\) but \(4, 5\) is expected"):
        tta.merge_instances([a, a.T])
    with pytest.raises(InputError, match="label image 1 must be a label image of integers.*got dtype float64"):
        tta.merge_instances([a, a.astype(float)])
    with pytest.raises(InputError, match="label image 0 must be a label image of integers.*got dtype bool"):
        tta.merge_instances([a > 0, a])
    with pytest.raises(InputError, match="label image 0 has negative label ids"):
        tta.merge_instances([a.astype(np.int32) - 1])
    with pytest.raises(InputError, match="label image 0: a 2-D label image is expected"):
        tta.merge_instances([np.zeros((2, 3, 4), np.uint16)])
    with pytest.raises(InputError, match="no label images"):
        tta.merge_instances([])
    with pytest.raises(InputError, match=r"min_votes must be from 1 to 2 \(the number of versions\), got 3") as error:
        tta.merge_instances([a, a], MergeOptions(min_votes=3))
    assert error.value.field == "min_votes"


@pytest.mark.parametrize("values, field", [
    ({"min_votes": 0}, "min_votes"),
    ({"min_votes": 1.5}, "min_votes"),
    ({"min_votes": True}, "min_votes"),
    ({"iou_threshold": 0}, "iou_threshold"),
    ({"iou_threshold": 1.01}, "iou_threshold"),
])
def test_bad_merge_options_are_refused_naming_the_field(values, field):
    with pytest.raises(InputError) as error:
        MergeOptions(**values)
    assert error.value.field == field
    with pytest.raises(InputError) as error:
        TTAOptions(**values)
    assert error.value.field == field


def test_tta_options_check_the_transforms_and_the_vote_against_them():
    assert TTAOptions("identity, rot90").transforms == ("identity", "rot90")
    assert TTAOptions().merge == MergeOptions() and TTAOptions().merge.votes_needed(6) == 3
    for transforms in ("", "identity,rot45", ["rot90", "rot90"]):
        with pytest.raises(InputError) as error:
            TTAOptions(transforms)
        assert error.value.field == "transforms"
    with pytest.raises(InputError, match="from 1 to 2") as error:
        TTAOptions(["identity", "rot90"], min_votes=3)
    assert error.value.field == "min_votes"


def test_probability_maps_are_averaged():
    maps = [np.full((2, 3), 0.2), np.full((2, 3), 0.9), np.full((2, 3), 0.7)]
    maps[0][0, 0] = 0.0
    mean = tta.merge_probability_maps(maps)
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean[1, 1], 0.6)
    np.testing.assert_allclose(mean[0, 0], 1.6 / 3)
    with pytest.raises(InputError, match="different shapes"):
        tta.merge_probability_maps([np.zeros((2, 3)), np.zeros((3, 2))])


# ------------------------------------------------------------------------------------------------
# Segmentation under TTA (tiny model)


@pytest.fixture(scope="module")
def model():
    return models.load(tiny_model_dir())


@pytest.fixture(scope="module")
def blobs():
    """A non-square synthetic image and its labels."""
    return synthetic_image(np.random.default_rng(11), (112, 150), n_objects=18)


def test_tta_with_the_identity_alone_is_plain_segmentation(model, blobs):
    image = blobs[0]
    result = tta.segment_tta(image, model, TTAOptions(["identity"]))
    plain = predict.segment(image, model)
    np.testing.assert_array_equal(result.labels, plain.labels)
    assert result.counts == (plain.count,) and result.transforms == ("identity",)
    np.testing.assert_array_equal(result.votes, 1)


def test_tta_merges_one_prediction_per_transform(model, blobs):
    image, truth = blobs
    timings = {}
    result = tta.segment_tta(image, model, return_prob_map=True, timings=timings)
    assert result.transforms == tta.PAPER_TRANSFORMS and len(result.counts) == 6
    assert result.labels.shape == image.shape and result.min_votes == 3
    assert ((result.votes >= 3) & (result.votes <= 6)).all() and result.count == result.labels.max()
    assert ((result.mean_iou > 0.5) & (result.mean_iou <= 1)).all()
    # the versions really differ (else TTA could not help), and the merge is as good as one
    separate = [predict.segment(tta.transform(image, t), model).labels for t in tta.PAPER_TRANSFORMS]
    assert len({labels.tobytes() for labels in separate}) > 1
    plain = predict.segment(image, model)
    assert metrics.evaluate_image(truth, result.labels).dsb_score >= (
        metrics.evaluate_image(truth, plain.labels).dsb_score - 0.05)
    # probability maps: the average of the versions', transforms undone
    maps = [tta.invert(predict.segment(tta.transform(image, t), model, return_prob_map=True).prob_map, t)
            for t in tta.PAPER_TRANSFORMS]
    np.testing.assert_allclose(result.prob_map, np.mean(maps, axis=0), atol=1e-6)
    assert {"network", "nms", "merge", "transform"} <= set(timings)


def test_tta_over_all_eight_transforms_commutes_with_the_transforms(model, blobs):
    """The 8 transforms form a group: TTA of a rotated image is the rotated TTA result.

    The versions are the same label images in another order, so the results may differ only
    where the order breaks a tie (a pixel two objects claim equally): the same objects, with
    nearly the same masks.
    """
    image = blobs[0]
    reference = tta.segment_tta(image, model, TTAOptions(tta.TRANSFORMS))
    for name in ("rot90", "flip_x"):
        moved = tta.segment_tta(tta.transform(image, name), model, TTAOptions(tta.TRANSFORMS))
        back = tta.invert(moved.labels, name)
        evaluation = metrics.evaluate_image(reference.labels, back, metrics.EvaluateOptions(thresholds=[0.9]))
        assert evaluation.tp[0] == reference.count == moved.count
        np.testing.assert_array_equal(np.sort(moved.votes), np.sort(reference.votes))


def test_tta_passes_the_segmentation_options_and_transforms_the_mask(model, blobs):
    image = blobs[0]
    mask = np.zeros(image.shape, bool)
    mask[:, :70] = True
    result = tta.segment_tta(image, model, TTAOptions(["identity", "rot90"]), SegmentOptions(prob_thresh=0.6),
                             mask=mask)
    assert result.labels.max() > 0 and not result.labels[:, 70:].any()
    assert result.prob_thresh == 0.6
    auto = tta.segment_tta(image, model, TTAOptions(["identity", "flip_y"]), SegmentOptions(object_diameter="auto"))
    assert auto.scale > 0  # estimated once, by the first version, and reused by the others
    at_that_scale = tta.segment_tta(image, model, TTAOptions(["identity", "flip_y"]), SegmentOptions(scale=auto.scale))
    np.testing.assert_array_equal(auto.labels, at_that_scale.labels)
    with pytest.raises(InputError, match=r"mask has shape \(150, 112\)"):
        tta.segment_tta(image, model, mask=mask.T)


# ------------------------------------------------------------------------------------------------
# nucleai segment --tta


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tta_images")
    rng = np.random.default_rng(4)
    for name, shape in (("a", (96, 128)), ("b", (80, 80))):
        image = synthetic_image(rng, shape)[0]
        skimage.io.imsave(folder / f"{name}.png",
                          np.round((image - image.min()) / np.ptp(image) * 255).astype(np.uint8),
                          check_contrast=False)
    return folder


def test_segment_tta_writes_the_merged_labels(image_dir, tmp_path, capsys):
    model_dir = tiny_model_dir()
    out = tmp_path / "out"
    assert main(["segment", "--model", str(model_dir), "--input", str(image_dir),
                 "--output", str(out), "--tta", "--tta-transforms", "identity,flip_x,rot90",
                 "--tta-min-votes", "2"]) == 0
    assert "TTA identity,flip_x,rot90, min votes 2" in capsys.readouterr().out
    model = models.load(model_dir, precision=DEFAULT_PRECISION)
    for stem in "ab":
        image = skimage.io.imread(image_dir / f"{stem}.png")
        expected = tta.segment_tta(image, model, TTAOptions(["identity", "flip_x", "rot90"], min_votes=2))
        np.testing.assert_array_equal(tifffile.imread(out / f"{stem}.tif"), expected.labels)


@pytest.mark.parametrize("arguments, message", [
    (["--tta", "--tta-transforms", "identity,rot45"], "--tta-transforms: unknown transform 'rot45'"),
    (["--tta-transforms", "identity"], "--tta-transforms needs --tta"),
    (["--tta-min-votes", "2"], "--tta-min-votes needs --tta"),
    (["--tta", "--tta-min-votes", "7"], "--tta-min-votes: min_votes must be from 1 to 6"),
    (["--tta", "--tta-min-votes", "0"], "--tta-min-votes: min_votes must be at least 1"),
])
def test_segment_tta_options_are_checked_before_any_image_is_read(image_dir, tmp_path, capsys,
                                                                  arguments, message):
    out = tmp_path / "out"
    assert main(["segment", "--model", str(tiny_model_dir()), "--input", str(image_dir),
                 "--output", str(out), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
