"""Prediction: our labels against stardist's predict_instances, and each step on its own.

The match tests run the same tiny stardist model (tests/tiny_model.py) through
``StarDist2D.predict_instances`` and through :func:`nucleai.predict.segment` and compare the label
images object by object with the DSB score (:mod:`nucleai.metrics`). Our NMS computes polygon
overlaps exactly where stardist's clipper rounds, so a candidate whose overlap sits right at the
threshold can go the other way: the requirement is a DSB score >= 0.99, not identity.
"""
import numpy as np
import pytest

from nucleai import metrics, models, predict
from nucleai.errors import InputError
from nucleai.predict import SegmentOptions
from tiny_model import synthetic_image, tiny_model_dir

MATCH = 0.99


@pytest.fixture(scope="module")
def model():
    return models.load(tiny_model_dir())


@pytest.fixture(scope="module")
def images():
    """Synthetic test images (not the training ones), sizes not multiples of the grid."""
    rng = np.random.default_rng(123)
    shapes = [(128, 128), (150, 203), (97, 131), (256, 180)]
    return [synthetic_image(rng, shape, n_objects=int(np.prod(shape) / 1100)) for shape in shapes]


def stardist_labels(model, image, **kwargs):
    from csbdeep.utils import normalize

    thresholds = dict(prob_thresh=model.spec.prob_thresh, nms_thresh=model.spec.nms_thresh)
    labels, _ = model.stardist_model.predict_instances(
        normalize(image, 1, 99.8), show_tile_progress=False, **{**thresholds, **kwargs}
    )
    return labels


def dsb_score(reference, labels):
    return metrics.evaluate_image(reference, labels).dsb_score


def test_our_labels_match_stardists(model, images):
    scores = []
    for image, _ in images:
        reference = stardist_labels(model, image)
        ours = predict.segment(image, model)
        assert ours.count > 3
        assert abs(ours.count - (len(np.unique(reference)) - 1)) <= 1
        scores.append(dsb_score(reference, ours.labels))
    assert np.mean(scores) >= MATCH, scores


@pytest.mark.parametrize("scale", [0.6, 1.5])
def test_our_labels_match_stardists_when_rescaling(model, images, scale):
    image = images[1][0]
    reference = stardist_labels(model, image, scale=scale)
    ours = predict.segment(image, model, SegmentOptions(scale=scale))
    assert ours.labels.shape == image.shape and ours.scale == scale
    assert dsb_score(reference, ours.labels) >= MATCH


@pytest.mark.parametrize("prob_thresh, nms_thresh", [(0.6, 0.3), (0.7, 0.5)])
def test_our_labels_match_stardists_with_other_thresholds(model, images, prob_thresh, nms_thresh):
    image = images[3][0]
    reference = stardist_labels(model, image, prob_thresh=prob_thresh, nms_thresh=nms_thresh)
    ours = predict.segment(image, model, SegmentOptions(prob_thresh=prob_thresh, nms_thresh=nms_thresh))
    assert (ours.prob_thresh, ours.nms_thresh) == (prob_thresh, nms_thresh)
    assert dsb_score(reference, ours.labels) >= MATCH


def test_tiled_prediction_matches_untiled(model, images):
    image = images[3][0]
    whole = predict.segment(image, model, return_prob_map=True)
    tiled = predict.segment(image, model, SegmentOptions(tiles="3x2"), return_prob_map=True)
    assert whole.n_tiles == (1, 1) and tiled.n_tiles == (3, 2)
    np.testing.assert_allclose(tiled.prob_map, whole.prob_map, atol=1e-4)
    assert dsb_score(whole.labels, tiled.labels) >= MATCH
    # and against stardist's own tiling
    reference = stardist_labels(model, image, n_tiles=(2, 2))
    assert dsb_score(reference, tiled.labels) >= MATCH


def test_the_result_is_consecutive_labels_with_a_probability_each(model, images):
    image = images[0][0]
    result = predict.segment(image, model, return_prob_map=True)
    assert result.labels.dtype == np.uint16
    assert set(np.unique(result.labels)) == set(range(result.count + 1))
    assert result.probabilities.shape == (result.count,) == (len(result.points),)
    assert (result.probabilities > model.spec.prob_thresh).all()
    assert (result.probabilities <= 1).all()
    assert (np.diff(result.probabilities) <= 0).all()  # label 1 is the most probable
    assert result.prob_map.shape == image.shape and result.prob_map.dtype == np.float32
    assert 0 <= result.prob_map.min() and result.prob_map.max() <= 1
    assert predict.segment(image, model).prob_map is None


def test_intensity_scale_and_dtype_do_not_matter(model, images):
    image = images[0][0]
    as_uint16 = np.round((image - image.min()) / np.ptp(image) * 60000).astype(np.uint16)
    a = predict.segment(image, model).labels
    b = predict.segment(as_uint16, model).labels
    assert dsb_score(a, b) >= MATCH


def test_a_mask_restricts_the_objects(model, images):
    image = images[3][0]
    mask = np.zeros(image.shape, bool)
    mask[:, : image.shape[1] // 2] = True
    full = predict.segment(image, model)
    half = predict.segment(image, model, mask=mask)
    assert 0 < half.count < full.count
    assert not half.labels[~mask].any()
    nothing = predict.segment(image, model, mask=np.zeros(image.shape, bool), return_prob_map=True)
    assert nothing.count == 0 and not nothing.labels.any() and nothing.prob_map.shape == image.shape
    with pytest.raises(InputError, match="mask has shape"):
        predict.segment(image, model, mask=mask[:10])


def test_the_object_diameter_sets_the_scale(model, images):
    image = images[1][0]
    declared = model.spec.object_diameter
    given = predict.segment(image, model, SegmentOptions(object_diameter=declared / 0.8))
    assert given.scale == pytest.approx(0.8)
    other = predict.segment(image, model, SegmentOptions(object_diameter=20, model_diameter=30))
    assert other.scale == pytest.approx(1.5)
    # the synthetic nuclei are about the model's size: the estimate keeps the scale near 1
    auto = predict.segment(image, model, SegmentOptions(object_diameter="auto"))
    assert 0.7 < auto.scale < 1.4 and auto.count > 3
    # the same path at the same scale: the same labels
    np.testing.assert_array_equal(given.labels, predict.segment(image, model, SegmentOptions(scale=given.scale)).labels)


def test_estimate_object_diameter():
    labels = np.zeros((50, 50), int)
    labels[:10, :10] = 1  # area 100
    labels[20:30, 20:30] = 2
    labels[40:42, 40:42] = 3  # area 4
    assert predict.estimate_object_diameter(labels) == pytest.approx(2 * np.sqrt(100 / np.pi))
    assert np.isnan(predict.estimate_object_diameter(np.zeros((5, 5), int)))


def test_normalisation_is_csbdeeps():
    from csbdeep.utils import normalize

    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 255, (40, 30)).astype(np.uint8), rng.normal(size=(40, 30))):
        ours = predict.normalize(image[..., np.newaxis])[..., 0]
        np.testing.assert_array_equal(ours, normalize(image, 1, 99.8))
        assert ours.dtype == np.float32


@pytest.mark.parametrize("image, mask, reason", [
    (np.zeros((64, 64), np.uint8), None, predict.BLANK),
    (np.full((64, 64), 7, np.uint8), None, predict.CONSTANT),
    (np.pad(np.ones((1, 1)), ((0, 63), (0, 63))), None, predict.CONSTANT),  # one hot pixel: percentiles equal
    (np.random.default_rng(0).random((64, 64)), np.zeros((64, 64), bool), predict.ALL_MASKED),
    (np.where(np.eye(64) > 0, 5.0, np.random.default_rng(0).random((64, 64))), np.eye(64) > 0, predict.CONSTANT),
])
def test_an_image_with_nothing_to_segment_gives_no_objects_and_says_why(model, image, mask, reason):
    for options in (predict.SegmentOptions(), predict.SegmentOptions(object_diameter="auto", model_diameter=20)):
        result = predict.segment(image, model, options, mask=mask, return_prob_map=True)
        assert result.count == 0 and result.empty_reason == reason
        assert result.labels.shape == image.shape and not result.labels.any()
        assert result.prob_map.shape == image.shape and not result.prob_map.any()
    if mask is None:  # callers that need a contrast (training) still get an error
        with pytest.raises(InputError, match="constant or nearly so") as error:
            predict.normalize(image[..., np.newaxis])
        assert isinstance(error.value, predict.NothingToSegment) and error.value.reason == reason


def test_a_segmented_image_has_no_empty_reason(model):
    image = synthetic_image(np.random.default_rng(1), (64, 64), n_objects=4)[0]
    assert predict.segment(image, model).empty_reason is None


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 64)), "empty"),
    (np.full((64, 64), np.nan), "NaN"),
    (np.zeros((4, 64, 64, 2)), "shape"),
    (np.ones((64, 64), bool), "dtype"),
])
def test_unusable_images_are_refused(model, image, message):
    with pytest.raises(InputError, match=message):
        predict.segment(image, model)


@pytest.mark.parametrize("values, field", [
    ({"prob_thresh": 1.2}, "prob_thresh"),
    ({"prob_thresh": True}, "prob_thresh"),
    ({"nms_thresh": 0}, "nms_thresh"),
    ({"tiles": "2by2"}, "tiles"),
    ({"tiles": (0, 0)}, "tiles"),
    ({"scale": -1}, "scale"),
    ({"scale": 2, "object_diameter": 10}, "scale"),
    ({"object_diameter": 0}, "object_diameter"),
    ({"object_diameter": "big"}, "object_diameter"),
    ({"model_diameter": 0}, "model_diameter"),
    ({"percentiles": (99, 1)}, "percentiles"),
    ({"percentiles": (1, 101)}, "percentiles"),
    ({"percentiles": (1,)}, "percentiles"),
    ({"channel": -1}, "channel"),
    ({"channel": 0.5}, "channel"),
])
def test_bad_options_are_refused_naming_the_field(values, field):
    with pytest.raises(InputError) as error:
        SegmentOptions(**values)
    assert error.value.field == field and field in str(error.value)


def test_options_are_normalised():
    options = SegmentOptions(tiles="2x3", object_diameter=" Auto", percentiles=[2, 99], channel=1.0)
    assert options == SegmentOptions(tiles=(2, 3), object_diameter="auto", percentiles=(2.0, 99.0), channel=1)
    assert SegmentOptions().tiles == "auto" and SegmentOptions().percentiles == predict.PERCENTILES


def test_image_dependent_problems_name_the_field(model, images):
    image = images[0][0]
    with pytest.raises(InputError, match="enlarges") as error:
        predict.segment(image, model, SegmentOptions(scale=1000))
    assert error.value.field == "scale"
    with pytest.raises(InputError, match="shrinks") as error:
        predict.segment(image, model, SegmentOptions(object_diameter=1e6))
    assert error.value.field == "object_diameter"
    with pytest.raises(InputError, match="channel 1 requested but the image is grey") as error:
        predict.segment(image, model, SegmentOptions(channel=1))
    assert error.value.field == "channel"


def test_channels_are_chosen_or_refused():
    grey = np.arange(12.0).reshape(3, 4)
    assert predict.select_channels(grey, 1).shape == (3, 4, 1)
    rgb = np.stack([grey, grey * 2, grey * 3], axis=-1)
    np.testing.assert_array_equal(predict.select_channels(rgb, 1, channel=1)[..., 0], grey * 2)
    with pytest.raises(InputError, match="1 channel but the image has 3 different channels"):
        predict.select_channels(rgb, 1)
    grey_as_rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    np.testing.assert_array_equal(predict.select_channels(grey_as_rgba, 1)[..., 0], grey)
    with pytest.raises(InputError, match="channel 3 requested but the image has 3 channels"):
        predict.select_channels(rgb, 1, channel=3)
    with pytest.raises(InputError, match="model takes 2 channels but the image has 3"):
        predict.select_channels(rgb, 2)
    with pytest.raises(InputError, match="model takes 2 channels but the image has 1"):
        predict.select_channels(grey, 2)
    assert predict.select_channels(rgb, 3).shape == (3, 4, 3)


def test_an_rgb_model_takes_grey_and_rgba_images_as_training_prepares_them():
    from nucleai.train.data import to_channels

    grey = np.arange(12.0).reshape(3, 4)
    rgba = np.stack([grey, grey * 2, grey * 3, np.full_like(grey, 255)], axis=-1)
    for image in (grey, rgba):
        np.testing.assert_array_equal(predict.select_channels(image, 3), to_channels(image, 3))
    np.testing.assert_array_equal(predict.select_channels(rgba, 3, channel=1), np.repeat(rgba[..., 1:2], 3, axis=2))
    with pytest.raises(InputError, match="model takes 3 channels but the image has 2"):
        predict.select_channels(rgba[..., :2], 3)


def test_a_colour_image_is_segmented_on_the_chosen_channel(model, images):
    image = images[0][0]
    colour = np.stack([np.zeros_like(image), image, np.ones_like(image)], axis=-1)
    a = predict.segment(image, model).labels
    b = predict.segment(colour, model, SegmentOptions(channel=1)).labels
    np.testing.assert_array_equal(a, b)


def test_tile_layout_cores_partition_the_image():
    layout = predict.tile_layout((96, 160), (2, 3), div_by=(16, 16), overlap=(20, 5))
    assert len(layout) == 6
    covered = np.zeros((96, 160), int)
    for window, core in layout:
        covered[core] += 1
        for w, c, margin, size in zip(window, core, (32, 16), (96, 160)):
            assert w.start == max(0, c.start - margin) and w.stop == min(size, c.stop + margin)
            assert w.start % 16 == 0 and w.stop % 16 == 0
    assert (covered == 1).all()
    # more tiles than blocks: one tile per block
    assert len(predict.tile_layout((32, 32), (5, 5), (16, 16), (0, 0))) == 4


def test_auto_tiles_and_parse_tiles():
    assert predict.auto_tiles((1000, 2048), 2048) == (1, 1)
    assert predict.auto_tiles((2049, 5000), 2048) == (2, 3)
    assert predict.parse_tiles("auto") == "auto"
    assert predict.parse_tiles("2x3") == (2, 3)
    assert predict.parse_tiles((1, 4)) == (1, 4)
    for bad in ("0x2", "2", "axb", "2x2x2"):
        with pytest.raises(InputError):
            predict.parse_tiles(bad)


def test_memory_tiles_tile_only_images_too_large_for_the_budget():
    never_called = lambda: pytest.fail("the overlap is measured only when tiling")  # noqa: E731
    for camera in ((2048, 2048), (2160, 2560), (2304, 2304)):  # predicted whole
        assert predict.memory_tiles(camera, never_called) == (1, 1)
    overlap = (96, 96)
    for shape in ((3072, 3072), (4096, 4096), (8192, 8192), (2560, 12000), (64, 200000)):
        ny, nx = predict.memory_tiles(shape, overlap)
        window_y = -(-shape[0] // ny) + (2 * overlap[0] if ny > 1 else 0)
        window_x = -(-shape[1] // nx) + (2 * overlap[1] if nx > 1 else 0)
        assert window_y * window_x <= predict.AUTO_TILE_PIXELS, shape
        assert ny * nx > 1
    ny, nx = predict.memory_tiles((8192, 8192), overlap)
    assert ny * nx <= 16 and max(ny, nx) <= 2 * min(ny, nx)  # near-square tiles, not thin strips
    # 2x2: windows of 692 x 692 (1.92 M pixels in all); 1x4: 1000 x 442 (1.77 M); 1x3 does not fit
    assert predict.memory_tiles((1000, 1000), overlap, max_pixels=500_000) == (1, 4)
    with pytest.raises(InputError, match="give the tiles yourself"):
        predict.memory_tiles((10**6, 10**6), overlap)


def test_the_bundled_model_matches_stardist_on_dsb_validation_images(dsb2018):
    import skimage.io

    model = models.load(models.DEFAULT_MODEL)
    scores = []
    for path in sorted((dsb2018 / "val" / "images").glob("*.png"))[:12]:
        image = skimage.io.imread(path)
        image = predict.select_channels(image, 1, 0 if image.ndim == 3 else None)[..., 0]
        scores.append(dsb_score(stardist_labels(model, image), predict.segment(image, model).labels))
    assert np.mean(scores) >= MATCH, scores
