"""Patch sampling: windows fit, contain the anchor, and prefer objects."""
import numpy as np
import pytest

from nucleai.errors import InputError
from nucleai.train.patches import center_crop, random_window, sample_patch


def test_random_window_fits_and_contains_anchor():
    rng = np.random.default_rng(0)
    for _ in range(200):
        anchor = tuple(int(a) for a in rng.integers((50, 70)))
        ys, xs = random_window((50, 70), (16, 32), rng, anchor=anchor)
        assert 0 <= ys.start and ys.stop <= 50 and ys.stop - ys.start == 16
        assert 0 <= xs.start and xs.stop <= 70 and xs.stop - xs.start == 32
        assert ys.start <= anchor[0] < ys.stop and xs.start <= anchor[1] < xs.stop


def test_random_window_too_large():
    with pytest.raises(InputError, match="does not fit"):
        random_window((10, 10), (16, 8), np.random.default_rng(0))


def test_foreground_patches_contain_objects():
    labels = np.zeros((200, 200), np.uint16)
    labels[150:155, 20:25] = 7  # one small object in a large empty image
    image = labels[..., None].astype(np.float32)
    rng = np.random.default_rng(0)
    with_objects = [sample_patch(image, labels, (32, 32), rng, foreground_prob=1.0) for _ in range(50)]
    assert all((lab > 0).any() for _, lab in with_objects)
    assert all(np.array_equal(img[..., 0], lab) for img, lab in with_objects), "same window for both"
    anywhere = [sample_patch(image, labels, (32, 32), rng, foreground_prob=0.0)[1] for _ in range(50)]
    assert sum((lab > 0).any() for lab in anywhere) < 25


def test_foreground_prob_without_objects_falls_back():
    labels = np.zeros((40, 40), np.uint16)
    image, patch = sample_patch(labels[..., None], labels, (16, 16), np.random.default_rng(0), 1.0)
    assert patch.shape == (16, 16) and image.shape == (16, 16, 1)


def test_center_crop():
    labels = np.arange(100).reshape(10, 10)
    image, crop = center_crop(labels[..., None], labels, (4, 6))
    np.testing.assert_array_equal(crop, labels[3:7, 2:8])
    np.testing.assert_array_equal(image[..., 0], crop)
