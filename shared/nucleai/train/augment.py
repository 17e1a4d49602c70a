"""Conventional data augmentation on (image, labels) pairs: plain functions and a composer.

nucleAIzer trains on every image type at once and augments with crops, flips, arbitrary
rotations, intensity and histogram changes, inversion, channel swaps, blur and noise, so that a
model has seen its data in many guises. Each operation here is a plain function on an image
``(H, W, C)`` float32 (normalised as at prediction time, roughly 0 to 1) and, for the geometric
ones, its label image ``(H, W)``. Geometric operations move image and labels with the same
transform, the labels by nearest neighbour (so ids are never blended), and return arrays of the
same shape; intensity operations leave the labels alone.

:class:`Augmenter` draws random parameters for each operation from explicit ranges with a
``numpy.random.Generator`` passed in, so a run is reproducible from its seed and no global
random state is touched. It is the ``augmenter`` of :func:`nucleai.train.loop.fit`.
"""
import math
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

# ---------------------------------------------------------------------------------------------
# Geometry (image and labels alike)


def dihedral(image, labels, k):
    """One of the 8 flips/right-angle rotations: ``k % 4`` quarter turns, then a left-right
    flip when ``k >= 4``. Square patches keep their shape."""
    image, labels = np.rot90(image, k % 4, axes=(0, 1)), np.rot90(labels, k % 4, axes=(0, 1))
    if k >= 4:
        image, labels = image[:, ::-1], labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def rotate(image, labels, angle):
    """Rotate by ``angle`` degrees (counter-clockwise as displayed) about the centre.

    The image is interpolated linearly, the labels by nearest neighbour, both with the same
    transform and the same mirrored continuation beyond the border, so corners show mirrored
    image data with its mirrored labels. Shape is kept.
    """
    rotated = ndi.rotate(image, angle, axes=(1, 0), reshape=False, order=1, mode="mirror")
    rotated_labels = ndi.rotate(labels, angle, axes=(1, 0), reshape=False, order=0, mode="mirror")
    return rotated.astype(np.float32, copy=False), rotated_labels


def rotation_margin(size):
    """Pixels needed beyond a (h, w) patch on each side so that rotating the larger patch by
    any angle fills the central patch with real image data."""
    h, w = size
    return int(math.ceil((math.hypot(h, w) - min(h, w)) / 2))


# ---------------------------------------------------------------------------------------------
# Intensity (image only)


def scale_intensity(image, factor, offset):
    """``image * factor + offset``: a change of exposure and background level."""
    return (image * np.float32(factor) + np.float32(offset)).astype(np.float32)


def stretch_histogram(image, low, high):
    """Map each channel's ``low`` and ``high`` percentiles to 0 and 1 (no clipping).

    With percentiles other than the (1, 99.8) of the normalisation this mimics images with
    a different dynamic range or saturation.
    """
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[2]):
        lo, hi = np.percentile(image[..., c], (low, high))
        out[..., c] = (image[..., c] - lo) / max(hi - lo, 1e-6)
    return out


def equalize_histogram(image, bins=256):
    """Histogram equalisation per channel: each value becomes its quantile (0 to 1)."""
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[2]):
        channel = image[..., c]
        hist, edges = np.histogram(channel, bins=bins)
        cdf = np.cumsum(hist).astype(np.float64)
        cdf /= cdf[-1]
        centres = (edges[:-1] + edges[1:]) / 2
        out[..., c] = np.interp(channel, centres, cdf)
    return out


def invert(image):
    """Swap dark and bright per channel within its own range: ``min + max - value``.

    Bright nuclei on a dark background (fluorescence) become dark nuclei on a bright one
    (brightfield, histology), and inverting twice gives the image back.
    """
    lo = image.min(axis=(0, 1), keepdims=True)
    hi = image.max(axis=(0, 1), keepdims=True)
    return (lo + hi - image).astype(np.float32)


def swap_channels(image, order):
    """Reorder the channels: output channel ``i`` is input channel ``order[i]``."""
    return np.ascontiguousarray(image[..., list(order)])


def blur(image, sigma):
    """Gaussian blur of width ``sigma`` pixels in y and x (channels kept apart)."""
    return ndi.gaussian_filter(image, (sigma, sigma, 0)).astype(np.float32)


def add_noise(image, std, rng):
    """Add Gaussian noise of standard deviation ``std`` (in normalised units)."""
    return (image + rng.normal(0, std, image.shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Composition


@dataclass(frozen=True)
class Augmenter:
    """Random conventional augmentation, each operation with its probability and range.

    Operations run in this order: dihedral transform, arbitrary rotation, intensity scale and
    offset, histogram stretch, histogram equalisation, inversion, channel swap, blur, noise.

    Attributes
    ----------
    dihedral : bool
        A random flip/right-angle rotation (all 8 equally likely); needs square patches.
    rotate_prob : float
        Probability of a rotation by a uniform angle in [0, 360).
    scale_prob : float
    scale_range, offset_range : (float, float)
        Intensity factor and offset ranges of :func:`scale_intensity`.
    stretch_prob : float
    stretch_low, stretch_high : (float, float)
        Ranges of the percentiles :func:`stretch_histogram` maps to 0 and 1.
    equalize_prob : float
    invert_prob : float
        0 by default: inversion helps a model meant for several modalities (nucleAIzer) and
        only costs capacity when all images share one contrast.
    swap_prob : float
        Probability of a random channel order (multi-channel images only).
    blur_prob : float
    blur_sigma : (float, float)
    noise_prob : float
    noise_std : (float, float)
    """

    dihedral: bool = True
    rotate_prob: float = 0.5
    scale_prob: float = 0.5
    scale_range: tuple = (0.6, 1.4)
    offset_range: tuple = (-0.1, 0.1)
    stretch_prob: float = 0.2
    stretch_low: tuple = (0.0, 5.0)
    stretch_high: tuple = (95.0, 100.0)
    equalize_prob: float = 0.05
    invert_prob: float = 0.0
    swap_prob: float = 0.5
    blur_prob: float = 0.2
    blur_sigma: tuple = (0.5, 1.5)
    noise_prob: float = 0.3
    noise_std: tuple = (0.0, 0.05)

    def margin(self, patch_size):
        """Extra pixels per side the loop should cut before augmenting (for rotations)."""
        return rotation_margin(patch_size) if self.rotate_prob > 0 else 0

    def __call__(self, image, labels, rng):
        """Augment one (image, labels) pair.

        Parameters
        ----------
        image : (H, W, C) float array
        labels : (H, W) int array
        rng : numpy.random.Generator

        Returns
        -------
        image : (H, W, C) float32 array, labels : (H, W) array
        """
        image = np.asarray(image, np.float32)
        if self.dihedral and image.shape[0] == image.shape[1]:
            image, labels = dihedral(image, labels, int(rng.integers(8)))
        if rng.random() < self.rotate_prob:
            image, labels = rotate(image, labels, rng.uniform(0, 360))
        if rng.random() < self.scale_prob:
            image = scale_intensity(image, rng.uniform(*self.scale_range), rng.uniform(*self.offset_range))
        if rng.random() < self.stretch_prob:
            image = stretch_histogram(image, rng.uniform(*self.stretch_low), rng.uniform(*self.stretch_high))
        if rng.random() < self.equalize_prob:
            image = equalize_histogram(image)
        if rng.random() < self.invert_prob:
            image = invert(image)
        if image.shape[2] > 1 and rng.random() < self.swap_prob:
            image = swap_channels(image, rng.permutation(image.shape[2]))
        if rng.random() < self.blur_prob:
            image = blur(image, rng.uniform(*self.blur_sigma))
        if rng.random() < self.noise_prob:
            image = add_noise(image, rng.uniform(*self.noise_std), rng)
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels)
