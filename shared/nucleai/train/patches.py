"""Cutting training patches out of (image, labels) pairs.

Nuclei are often sparse, and a patch of pure background teaches a detector little, so, as in
stardist, most patches are chosen to contain at least one object pixel: with probability
``foreground_prob`` the patch is placed uniformly among the windows that contain a randomly
chosen object pixel, otherwise uniformly among all windows. Images are (H, W, C), labels (H, W);
both are cut with the same window.
"""
import numpy as np

from ..errors import InputError


def random_window(shape, size, rng, anchor=None):
    """A random window of ``size`` inside an image of ``shape``.

    Parameters
    ----------
    shape, size : (int, int)
        Image and window shape (h, w); the window must fit.
    rng : numpy.random.Generator
    anchor : (int, int), optional
        A pixel (y, x) the window must contain; it is placed uniformly among such windows.

    Returns
    -------
    tuple of two slices
    """
    if any(s > n for s, n in zip(size, shape)):
        raise InputError(f"patch {tuple(size)} does not fit in an image of shape {tuple(shape)}")
    slices = []
    for axis, (n, s) in enumerate(zip(shape, size)):
        low, high = 0, n - s
        if anchor is not None:
            low, high = max(low, anchor[axis] - s + 1), min(high, anchor[axis])
        start = int(rng.integers(low, high + 1))
        slices.append(slice(start, start + s))
    return tuple(slices)


def sample_patch(image, labels, size, rng, foreground_prob=0.9):
    """Cut one patch from an image and its labels, preferring patches with objects.

    Parameters
    ----------
    image : (H, W, C) array
    labels : (H, W) int array
    size : (int, int)
        Patch shape; at most the image's.
    rng : numpy.random.Generator
    foreground_prob : float
        Probability of placing the patch around a random object pixel (when there is one).

    Returns
    -------
    image_patch : (h, w, C) array, labels_patch : (h, w) array
        Views into the inputs.
    """
    anchor = None
    if foreground_prob > 0 and rng.random() < foreground_prob:
        foreground = np.flatnonzero(labels)
        if foreground.size:
            anchor = np.unravel_index(foreground[rng.integers(foreground.size)], labels.shape)
    window = random_window(labels.shape, size, rng, anchor)
    return image[window], labels[window]


def center_crop(image, labels, size):
    """The central ``size`` (h, w) of an image and its labels (same window for both)."""
    window = tuple(
        slice((n - s) // 2, (n - s) // 2 + s) for n, s in zip(labels.shape, size)
    )
    if any(s > n for s, n in zip(size, labels.shape)):
        raise InputError(f"cannot crop {tuple(size)} from shape {labels.shape}")
    return image[window], labels[window]
