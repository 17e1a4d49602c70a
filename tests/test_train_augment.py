"""Augmentation keeps images and labels aligned; intensity operations mean what they say."""
import numpy as np
import pytest
import scipy.ndimage as ndi

from nucleai.train import augment
from nucleai.train.augment import Augmenter
from tiny_model import synthetic_image


def coded_pair(seed=0, shape=(96, 96)):
    """Labels with one distinct brightness per object, and the image made of exactly those."""
    _, labels = synthetic_image(np.random.default_rng(seed), shape, n_objects=10)
    brightness = np.linspace(0, 1, labels.max() + 1).astype(np.float32)
    brightness[1:] += 1  # objects 1..n at 1.1 ... 2, background 0
    return brightness[labels][..., np.newaxis], labels, brightness


def assert_objects_keep_their_brightness(image, labels, brightness, tolerance=1e-3):
    ids = np.unique(labels[labels > 0])
    assert len(ids) >= 5
    for i in ids:
        # interior pixels only: linear interpolation blends the image at object boundaries
        interior = ndi.binary_erosion(labels == i, iterations=2)
        if interior.sum() < 5:
            continue
        assert np.median(image[interior, 0]) == pytest.approx(brightness[i], abs=tolerance)


@pytest.mark.parametrize("k", range(8))
def test_dihedral_moves_image_and_labels_together(k):
    image, labels, brightness = coded_pair()
    out_image, out_labels = augment.dihedral(image, labels, k)
    np.testing.assert_array_equal(out_image[..., 0], brightness[out_labels])


def test_dihedral_transforms_are_the_eight_distinct_ones():
    _, labels, _ = coded_pair()
    seen = {augment.dihedral(labels[..., None], labels, k)[1].tobytes() for k in range(8)}
    assert len(seen) == 8


def test_arbitrary_rotation_keeps_object_correspondence():
    image, labels, brightness = coded_pair(seed=1, shape=(101, 101))
    angle = 30.0
    out_image, out_labels = augment.rotate(image, labels, angle)
    assert out_labels.dtype == labels.dtype
    assert set(np.unique(out_labels)) <= set(np.unique(labels)), "nearest neighbour invents no ids"
    assert_objects_keep_their_brightness(out_image, out_labels, brightness)
    # each object's centroid moves by the rotation about the image centre (counter-clockwise
    # as displayed: y down, so a point right of the centre moves up)
    centre = (np.array(labels.shape) - 1) / 2
    theta = np.deg2rad(angle)
    for i in np.unique(out_labels[out_labels > 0]):
        before = np.array(ndi.center_of_mass(labels == i)) - centre
        after = np.array(ndi.center_of_mass(out_labels == i)) - centre
        if (labels == i).sum() != (out_labels == i).sum() and np.abs(after).max() > 35:
            continue  # cut by the border (its mirror shows in a corner)
        expected = np.array([
            before[0] * np.cos(theta) - before[1] * np.sin(theta),
            before[0] * np.sin(theta) + before[1] * np.cos(theta),
        ])
        np.testing.assert_allclose(after, expected, atol=1.0)


def test_rotation_by_a_quarter_turn_matches_rot90():
    _, labels, _ = coded_pair(seed=2, shape=(64, 64))
    _, rotated = augment.rotate(labels[..., None].astype(np.float32), labels, 90)
    np.testing.assert_array_equal(rotated, np.rot90(labels))


def test_invert_swaps_dark_and_bright_and_is_its_own_inverse():
    rng = np.random.default_rng(0)
    image = rng.random((20, 30, 2)).astype(np.float32) * [1, 5]
    inverted = augment.invert(image)
    for c in range(2):
        assert np.unravel_index(image[..., c].argmax(), image.shape[:2]) == np.unravel_index(
            inverted[..., c].argmin(), image.shape[:2])
        assert inverted[..., c].min() == pytest.approx(image[..., c].min())
        assert inverted[..., c].max() == pytest.approx(image[..., c].max())
    np.testing.assert_allclose(augment.invert(inverted), image, atol=1e-6)


def test_swap_channels_reorders_channels_only():
    rng = np.random.default_rng(0)
    image = rng.random((8, 9, 3)).astype(np.float32)
    out = augment.swap_channels(image, [2, 0, 1])
    for i, source in enumerate([2, 0, 1]):
        np.testing.assert_array_equal(out[..., i], image[..., source])


def test_histogram_operations():
    rng = np.random.default_rng(0)
    image = rng.normal(0.5, 0.1, (50, 50, 1)).astype(np.float32)
    stretched = augment.stretch_histogram(image, 10, 90)
    lo, hi = np.percentile(stretched, (10, 90))
    assert (lo, hi) == (pytest.approx(0, abs=1e-5), pytest.approx(1, abs=1e-5))
    equalized = augment.equalize_histogram(image)
    assert 0 <= equalized.min() and equalized.max() <= 1
    assert np.percentile(equalized, 50) == pytest.approx(0.5, abs=0.02), "quantiles become values"


def test_augmenter_keeps_alignment_and_is_reproducible():
    image, labels, brightness = coded_pair(seed=3)
    geometric_only = Augmenter(scale_prob=0, stretch_prob=0, equalize_prob=0, swap_prob=0,
                               blur_prob=0, noise_prob=0, rotate_prob=1.0)
    for seed in range(4):
        out_image, out_labels = geometric_only(image, labels, np.random.default_rng(seed))
        assert out_image.shape == image.shape and out_labels.shape == labels.shape
        assert_objects_keep_their_brightness(out_image, out_labels, brightness)
    everything = Augmenter(invert_prob=0.5)
    first = everything(image, labels, np.random.default_rng(7))
    second = everything(image, labels, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0].dtype == np.float32


def test_augmenter_channel_swap_leaves_labels_alone():
    image, labels, _ = coded_pair(seed=4)
    rgb = np.concatenate([image, 2 * image, 3 * image], axis=2)
    swap_only = Augmenter(dihedral=False, rotate_prob=0, scale_prob=0, stretch_prob=0,
                          equalize_prob=0, swap_prob=1, blur_prob=0, noise_prob=0)
    orders = set()
    for seed in range(10):
        out, out_labels = swap_only(rgb, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_labels, labels)
        order = tuple(int(round(out[..., c].max() / image.max())) for c in range(3))
        assert sorted(order) == [1, 2, 3]
        orders.add(order)
    assert len(orders) > 1


def test_margin_covers_any_rotation():
    assert augment.rotation_margin((64, 64)) == 14  # (64 * sqrt(2) - 64) / 2 = 13.25
    assert Augmenter(rotate_prob=0).margin((64, 64)) == 0


def test_training_patches_keep_alignment_through_cut_rotate_and_crop():
    from nucleai.train.loop import TrainSettings, training_patch

    image, labels, brightness = coded_pair(seed=5, shape=(150, 170))
    geometric = Augmenter(scale_prob=0, stretch_prob=0, equalize_prob=0, swap_prob=0, blur_prob=0,
                          noise_prob=0, rotate_prob=1.0)
    settings = TrainSettings(patch_size=(64, 64), foreground_prob=1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        patch, patch_labels = training_patch(image, labels, settings, rng, geometric)
        assert patch.shape == (64, 64, 1) and patch_labels.shape == (64, 64)
        assert (patch_labels > 0).any()
        for i in np.unique(patch_labels[patch_labels > 0]):
            interior = ndi.binary_erosion(patch_labels == i, iterations=2)
            if interior.sum() >= 5:
                assert np.median(patch[interior, 0]) == pytest.approx(brightness[i], abs=1e-3)
