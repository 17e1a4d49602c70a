"""Style clustering separates image families, over-clusters on purpose, drops small clusters."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.draw

from nucleai.errors import InputError
from nucleai.train.style import FEATURE_NAMES, cluster_styles, nearest_style, style_features

SHAPE = (64, 64)


def blob_mask(rng, n=8):
    mask = np.zeros(SHAPE, bool)
    for _ in range(n):
        rr, cc = skimage.draw.disk(rng.uniform(0, SHAPE[0], 2), rng.uniform(4, 6), shape=SHAPE)
        mask[rr, cc] = True
    return ndi.gaussian_filter(mask.astype(float), 1.0)


def fluorescence(rng):
    """Grey uint8: dark background, bright blobs."""
    image = 0.05 + 0.7 * blob_mask(rng) + rng.normal(0, 0.02, SHAPE)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def histology(rng):
    """RGB uint8: pale pink background, dark purple blobs."""
    m = blob_mask(rng)[..., None]
    image = np.array([0.93, 0.85, 0.9]) * (1 - m) + np.array([0.45, 0.25, 0.6]) * m
    image = image + rng.normal(0, 0.02, SHAPE + (3,))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def green(rng):
    """An odd one out: flat bright green with a little noise."""
    image = np.array([0.1, 0.8, 0.1]) + rng.normal(0, 0.01, SHAPE + (3,))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def families(n_each=8, seed=0):
    rng = np.random.default_rng(seed)
    return [fluorescence(rng) for _ in range(n_each)] + [histology(rng) for _ in range(n_each)]


def test_features_have_one_length_for_grey_and_colour():
    rng = np.random.default_rng(0)
    grey, colour = fluorescence(rng), histology(rng)
    assert style_features(grey).shape == style_features(colour).shape == (len(FEATURE_NAMES),)
    np.testing.assert_allclose(style_features(grey), style_features(np.dstack([grey] * 3)))
    np.testing.assert_allclose(style_features(colour),
                               style_features(np.dstack([colour, np.full(SHAPE, 7, np.uint8)])))
    assert np.all(np.isfinite(style_features(np.zeros(SHAPE, np.uint8))))


def test_features_do_not_depend_on_the_dtype_of_the_same_image():
    image = fluorescence(np.random.default_rng(1))
    expected = style_features(image)
    np.testing.assert_allclose(style_features(image.astype(np.uint16) * 257), expected, atol=1e-9)
    np.testing.assert_allclose(style_features(image / 255.0), expected, atol=1e-9)


def test_features_tell_dark_background_from_bright():
    names = list(FEATURE_NAMES)
    rng = np.random.default_rng(2)
    fluo, histo = style_features(fluorescence(rng)), style_features(histology(rng))
    assert fluo[names.index("dark_fraction")] > 0.5 > histo[names.index("dark_fraction")]
    assert histo[names.index("bright_fraction")] > 0.5 > fluo[names.index("bright_fraction")]
    assert histo[names.index("chroma")] > 0.1 > fluo[names.index("chroma")]


def test_two_families_land_in_different_clusters():
    images = families()
    clusters = cluster_styles(images, seed=0)
    assert clusters.k >= 2
    assert f"k={clusters.k}" in clusters.rule and "plus one" in clusters.rule
    fluo, histo = clusters.labels[:8], clusters.labels[8:]
    assert set(fluo[fluo >= 0]).isdisjoint(histo[histo >= 0])
    assert (fluo >= 0).sum() >= 3 and (histo >= 0).sum() >= 3
    assert clusters.kept == tuple(range(len(clusters.kept)))
    assert clusters.centres.shape == (clusters.k, len(FEATURE_NAMES))
    assert sum(clusters.sizes) == len(images)


def test_the_rule_errs_on_more_clusters_than_families():
    clusters = cluster_styles(families(n_each=9), seed=0)
    assert clusters.k == 3  # two families, plus one


def test_clustering_is_deterministic_for_a_seed():
    images = families()
    a, b = cluster_styles(images, seed=3), cluster_styles(images, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centres, b.centres)
    assert a.rule == b.rule


def test_too_small_cluster_is_dropped_and_reported():
    rng = np.random.default_rng(5)
    images = families() + [green(rng), green(rng)]
    clusters = cluster_styles(images, k=3, seed=0)
    assert clusters.dropped == ((2, 2),)
    assert clusters.kept == (0, 1)
    np.testing.assert_array_equal(clusters.labels[-2:], [-1, -1])
    assert np.all(clusters.labels[:-2] >= 0)
    assert clusters.rule == "k=3 given"


def test_nearest_style_accepts_alike_images_and_rejects_an_outlier():
    images = families(n_each=9)
    clusters = cluster_styles(images, seed=0)
    fluo_styles = set(clusters.labels[:9]) - {-1}
    histo_styles = set(clusters.labels[9:]) - {-1}
    rng = np.random.default_rng(99)
    assert nearest_style(clusters, histology(rng)) in histo_styles
    assert nearest_style(clusters, fluorescence(rng)) in fluo_styles
    assert nearest_style(clusters, green(rng)) == -1
    checkerboard = (np.indices(SHAPE).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert nearest_style(clusters, checkerboard) == -1


def test_identical_images_make_one_style():
    image = histology(np.random.default_rng(0))
    clusters = cluster_styles([image] * 4)
    assert clusters.k == 1 and clusters.kept == (0,) and clusters.dropped == ()
    np.testing.assert_array_equal(clusters.labels, [0, 0, 0, 0])
    assert "same style features" in clusters.rule
    assert nearest_style(clusters, image) == 0
    assert nearest_style(clusters, fluorescence(np.random.default_rng(1))) == -1


def test_single_image_with_min_cluster_size_one():
    clusters = cluster_styles([fluorescence(np.random.default_rng(0))], min_cluster_size=1)
    assert clusters.k == 1
    np.testing.assert_array_equal(clusters.labels, [0])


def test_given_k_is_capped_at_distinct_images():
    image = histology(np.random.default_rng(0))
    clusters = cluster_styles([image] * 3 + [fluorescence(np.random.default_rng(1))] * 3, k=4)
    assert clusters.k == 2 and "capped" in clusters.rule
    np.testing.assert_array_equal(clusters.labels, [0, 0, 0, 1, 1, 1])


def test_max_k_caps_the_rule():
    clusters = cluster_styles(families(n_each=9), max_k=2, seed=0)
    assert clusters.k == 2
    assert "not possible" in clusters.rule


def test_too_few_images_says_how_many_are_needed():
    with pytest.raises(InputError, match="at least min_cluster_size = 3"):
        cluster_styles(families(n_each=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k must be"), ({"k": 17}, "k must be"), ({"max_k": 0}, "max_k"),
    ({"min_cluster_size": 0}, "min_cluster_size"), ({"wss_fraction": 1.5}, "wss_fraction")])
def test_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        cluster_styles(families(), **kwargs)


def test_a_bad_image_is_named_by_index():
    images = families(n_each=2)
    images[1] = np.zeros((4, 4), np.uint8)
    with pytest.raises(InputError, match=r"images\[1\].*at least 8 pixels"):
        cluster_styles(images)
    with pytest.raises(InputError, match="grey, RGB or RGBA"):
        style_features(np.zeros((16, 16, 2)))
    with pytest.raises(InputError, match="NaN"):
        style_features(np.full((16, 16), np.nan))
