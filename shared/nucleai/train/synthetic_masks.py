"""Synthetic label images that follow a style's measured objects: step 4 of style augmentation.

nucleAIzer turns each style's generator (mask -> image) into training data by feeding it
*synthetic* masks: masks whose objects have the size, shape and spatial distribution measured
in that style's images (from a first segmentation of them), half of them real nucleus shapes
and half simulated ones, so the synthetic images look like the style's images but show new
object layouts with known labels.

:func:`measure_objects` measures label images: object areas, equivalent diameters,
eccentricities and axis ratios (objects cut by the image border are left out of these, since
their sizes and shapes are truncated, unless every object touches the border), the density
(objects per pixel, all objects counted), a spatial-clustering measure and a sample of real
object shapes. The clustering measure is the Clark-Evans ratio: the mean distance from an
object centre to its nearest neighbour divided by the ``0.5 / sqrt(density)`` expected for
centres placed uniformly at random with the same density: about 1 for a random layout, below
1 for clustered objects, above 1 for evenly spread ones (nuclei cannot overlap, so layouts are
a little regular; the image border also raises it slightly).

:func:`synthesise_masks` draws a Poisson number of objects around ``density * H * W`` per
image. A share ``real_share`` of them are real shapes (flipped at random, rotated by any angle
and scaled by 0.9 to 1.1, with nearest-neighbour interpolation so they stay binary), the rest
simulated star-convex shapes: an ellipse with an equivalent diameter and an axis ratio drawn
from the measured ones, its radius modulated by smooth low-frequency noise and rescaled to
keep the drawn equivalent diameter, rendered as a polygon. Positions are uniform when the
measured layout is not clustered (Clark-Evans ratio at least :data:`CLUSTERED_BELOW`), and
otherwise Gaussian around a few random cluster centres (about :data:`OBJECTS_PER_CLUSTER`
objects each). Their spread gives the local density at which centres kept one median diameter
apart (objects do not overlap) have the measured mean nearest-neighbour distance, but no less
than leaves a cluster's objects half of its area. A placement that
would overlap an object already placed (or leave more than half the object outside the image)
is rejected and another drawn, at most ``max_tries`` times, after which the object is left
out: objects may touch but never overlap. Ids are 1 ... N in placement order.
"""
from dataclasses import dataclass, replace

import numpy as np
import scipy.ndimage as ndi
from scipy.optimize import brentq
from scipy.spatial import cKDTree
from scipy.special import erfcx
from skimage.draw import polygon as draw_polygon
from skimage.measure import regionprops
from skimage.transform import resize

from ..errors import InputError

__all__ = ["ObjectStats", "measure_objects", "synthesise_masks", "with_shapes_of"]

#: A measured Clark-Evans ratio below this counts as a clustered layout.
CLUSTERED_BELOW = 0.8
#: Objects per cluster centre when positions are clustered.
OBJECTS_PER_CLUSTER = 10
#: Range of the scale factor applied to real shapes.
REAL_SCALE = (0.9, 1.1)
#: Standard deviation of the log-radius modulation of simulated shapes (2nd harmonic; the
#: 3rd to 5th get proportionally less, so outlines stay smooth).
RADIAL_NOISE = 0.08
_N_VERTICES = 64
_MAX_LABEL = np.iinfo(np.uint16).max


@dataclass(frozen=True, eq=False)
class ObjectStats:
    """What :func:`measure_objects` measured in a set of label images.

    Attributes
    ----------
    areas, diameters, eccentricities, axis_ratios : (m,) float arrays
        Per object not cut by the image border (all objects when every one is): area in
        pixels, equivalent diameter ``2 * sqrt(area / pi)``, eccentricity of the ellipse of
        the same second moments, and its minor/major axis ratio in [0, 1].
    density : float
        Objects (all of them) per image pixel.
    nn_ratio : float
        Clark-Evans ratio of the object centres (module docstring); NaN when no image has two
        objects.
    shapes : tuple of 2-D bool arrays
        Real object shapes cropped to their bounding boxes, at most ``max_shapes``, sampled
        with the seed (preferring objects not cut by the border, as the sizes).
    n_objects, n_images : int
    """

    areas: np.ndarray
    diameters: np.ndarray
    eccentricities: np.ndarray
    axis_ratios: np.ndarray
    density: float
    nn_ratio: float
    shapes: tuple
    n_objects: int
    n_images: int


def measure_objects(label_images, *, max_shapes=500, seed=0):
    """Measure object size, shape and layout in label images (one style's).

    Parameters
    ----------
    label_images : sequence of (H, W) integer arrays
        0 = background, any other value one object.
    max_shapes : int
        Real shapes kept for :func:`synthesise_masks`.
    seed : int
        Seed of the shape sample.

    Returns
    -------
    ObjectStats

    Raises
    ------
    InputError
        No label images, one that is not a 2-D integer array (named by index), or no objects.
    """
    if isinstance(label_images, np.ndarray) and label_images.ndim == 2:
        raise InputError("label_images must be a sequence of label images, not a single one")
    label_images = list(label_images)
    if not label_images:
        raise InputError("label_images is empty: at least one label image is needed")
    if isinstance(max_shapes, bool) or not isinstance(max_shapes, (int, np.integer)) or max_shapes < 1:
        raise InputError(f"max_shapes must be a positive integer, got {max_shapes!r}")
    inner, border, ratios = [], [], []
    n_pixels = 0
    for i, labels in enumerate(label_images):
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"label_images[{i}]: a 2-D integer label image is needed, got a "
                             f"{labels.ndim}-D array of dtype {labels.dtype}")
        n_pixels += labels.size
        regions = regionprops(labels)
        h, w = labels.shape
        for r in regions:
            y0, x0, y1, x1 = r.bbox
            (border if y0 == 0 or x0 == 0 or y1 == h or x1 == w else inner).append(r)
        if len(regions) >= 2:
            centres = np.array([r.centroid for r in regions])
            distance = cKDTree(centres).query(centres, k=2)[0][:, 1]
            ratios.append(distance / (0.5 / np.sqrt(len(regions) / labels.size)))
    n_objects = len(inner) + len(border)
    if n_objects == 0:
        raise InputError(f"no objects in the {len(label_images)} label image(s): nothing to measure")
    measured = inner or border
    areas = np.array([r.area for r in measured], np.float64)
    majors = np.array([r.axis_major_length for r in measured])
    minors = np.array([r.axis_minor_length for r in measured])
    chosen = range(len(measured))
    if len(measured) > max_shapes:
        chosen = np.sort(np.random.default_rng(seed).choice(len(measured), max_shapes, replace=False))
    return ObjectStats(
        areas=areas,
        diameters=2 * np.sqrt(areas / np.pi),
        eccentricities=np.array([r.eccentricity for r in measured], np.float64),
        axis_ratios=np.divide(minors, majors, out=np.ones_like(majors), where=majors > 0),
        density=n_objects / n_pixels,
        nn_ratio=float(np.concatenate(ratios).mean()) if ratios else float("nan"),
        shapes=tuple(np.array(measured[j].image, bool) for j in chosen),
        n_objects=n_objects,
        n_images=len(label_images))


def synthesise_masks(stats, shape, n, *, real_share=0.5, seed=0, max_tries=50):
    """Synthetic label images following measured objects (see the module docstring).

    Parameters
    ----------
    stats : ObjectStats
    shape : (int, int)
        (H, W) of each label image.
    n : int
        Number of label images.
    real_share : float in [0, 1]
        Share of each image's objects that are real shapes (rounded); the rest are simulated.
    seed : int
        The same seed gives the same images.
    max_tries : int
        Placements tried per object before it is left out.

    Returns
    -------
    list of n (H, W) uint16 arrays
        Ids 1 ... N consecutive; at least one object is attempted per image, at most 65535.
    """
    if not isinstance(stats, ObjectStats):
        raise InputError(f"stats must be an ObjectStats (from measure_objects), got "
                         f"{type(stats).__name__}")
    if len(shape) != 2 or not all(_is_count(s) for s in shape):
        raise InputError(f"shape must be two positive integers (H, W), got {shape!r}")
    if not _is_count(n):
        raise InputError(f"n must be a positive integer, got {n!r}")
    if not 0 <= real_share <= 1:
        raise InputError(f"real_share must be between 0 and 1, got {real_share}")
    if not _is_count(max_tries):
        raise InputError(f"max_tries must be a positive integer, got {max_tries!r}")
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        count = int(min(max(1, rng.poisson(stats.density * shape[0] * shape[1])), _MAX_LABEL))
        real = rng.permutation(np.arange(count) < int(round(real_share * count)))
        masks = [_real_shape(stats, rng) if r else _simulated_shape(stats, rng) for r in real]
        images.append(_place(masks, shape, _centre_sampler(stats, shape, count, rng), max_tries))
    return images


def with_shapes_of(stats, shapes, *, seed=0):
    """``stats`` with its real shapes replaced by ``shapes`` resized to ``stats``' own sizes.

    nucleAIzer draws a style's synthetic nuclei from the real nuclei of every kind of image, each
    shown at the size of that style's nuclei: a style with few (or only first-pass) masks then
    still gets many real nucleus outlines. Each shape is scaled (nearest neighbour, so it stays
    binary) to an equivalent diameter drawn from ``stats.diameters``; sizes, density and
    layout stay those measured in the style.

    Parameters
    ----------
    stats : ObjectStats
        The style's measured objects.
    shapes : sequence of 2-D bool arrays
        Real object shapes (e.g. ``measure_objects(all_masks).shapes``), each non-empty.
    seed : int
        Seed of the drawn diameters.
    """
    if not isinstance(stats, ObjectStats):
        raise InputError(f"stats must be an ObjectStats (from measure_objects), got "
                         f"{type(stats).__name__}")
    shapes = [np.asarray(shape, bool) for shape in shapes]
    if not shapes or any(shape.ndim != 2 or not shape.any() for shape in shapes):
        raise InputError("shapes must be a non-empty sequence of non-empty 2-D masks")
    rng = np.random.default_rng(seed)
    resized = []
    for shape in shapes:
        factor = rng.choice(stats.diameters) / (2 * np.sqrt(shape.sum() / np.pi))
        size = tuple(max(1, int(round(side * factor))) for side in shape.shape)
        mask = resize(shape.astype(np.float32), size, order=0, anti_aliasing=False) > 0.5
        cropped = _crop(mask)
        resized.append(cropped if cropped is not None else np.ones((1, 1), bool))
    return replace(stats, shapes=tuple(resized))


# ---------------------------------------------------------------------------------------------


def _is_count(value):
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def _crop(mask):
    """A bool mask cropped to its bounding box (None when empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _real_shape(stats, rng):
    """A measured shape, flipped at random, scaled by REAL_SCALE and rotated by any angle."""
    shape = stats.shapes[rng.integers(len(stats.shapes))]
    if rng.random() < 0.5:
        shape = shape[:, ::-1]
    mask = ndi.zoom(np.pad(shape, 1).astype(np.uint8), rng.uniform(*REAL_SCALE), order=0)
    mask = ndi.rotate(mask, rng.uniform(0, 360), order=0, reshape=True)
    cropped = _crop(mask > 0)
    return cropped if cropped is not None else shape


def _simulated_shape(stats, rng):
    """A star-convex shape: a noisy ellipse of a measured equivalent diameter and axis ratio."""
    diameter = rng.choice(stats.diameters)
    ratio = float(np.clip(rng.choice(stats.axis_ratios), 0.2, 1.0))
    a, b = diameter / 2 / np.sqrt(ratio), diameter / 2 * np.sqrt(ratio)
    theta = np.linspace(0, 2 * np.pi, _N_VERTICES, endpoint=False)
    tilt = theta - rng.uniform(0, np.pi)
    rho = a * b / np.hypot(b * np.cos(tilt), a * np.sin(tilt))
    harmonics = np.arange(2, 6)
    amplitude = rng.normal(0, RADIAL_NOISE, harmonics.size) * 2 / harmonics
    phase = rng.uniform(0, 2 * np.pi, harmonics.size)
    rho *= np.exp((amplitude * np.cos(np.outer(theta, harmonics) + phase)).sum(axis=1))
    area = 0.5 * np.sum(rho ** 2) * (2 * np.pi / _N_VERTICES)  # polar area of the polygon
    rho *= diameter / 2 / np.sqrt(area / np.pi)
    half = int(np.ceil(rho.max())) + 1
    mask = np.zeros((2 * half + 1,) * 2, bool)
    mask[draw_polygon(half + rho * np.sin(theta), half + rho * np.cos(theta), mask.shape)] = True
    cropped = _crop(mask)
    return cropped if cropped is not None else np.ones((1, 1), bool)


def _centre_sampler(stats, shape, count, rng):
    """A function drawing object centres (y, x): uniform, or clustered as measured."""
    size = np.array(shape, np.float64)
    if not stats.nn_ratio < CLUSTERED_BELOW:  # NaN (unmeasured) counts as not clustered
        return lambda: rng.uniform(0, size)
    n_clusters = max(1, int(round(count / OBJECTS_PER_CLUSTER)))
    centres = rng.uniform(0, size, (n_clusters, 2))
    per_cluster = count / n_clusters
    # Points of a Gaussian cluster of m objects see on average the density m / (4 pi sigma^2);
    # the spread gives the local density that explains the measured nearest-neighbour distance,
    # but no less than leaves the cluster's objects half of its area.
    local = _local_density(stats.nn_ratio * 0.5 / np.sqrt(stats.density),
                           float(np.median(stats.diameters)))
    sigma = max(np.sqrt(per_cluster / (4 * np.pi * local)),
                np.sqrt(per_cluster * float(np.mean(stats.areas)) / (2 * np.pi)))

    def draw():
        for _ in range(100):
            point = centres[rng.integers(n_clusters)] + rng.normal(0, sigma, 2)
            if np.all(point >= 0) and np.all(point < size):
                return point
        return rng.uniform(0, size)
    return draw


def _local_density(mean_distance, hard_core):
    """Density of a Poisson layout whose centres keep ``hard_core`` apart and whose mean
    nearest-neighbour distance is ``mean_distance`` (inf when that is within the hard core).

    With centres at least ``d`` apart the nearest-neighbour distance is ``d`` plus the
    Poisson gap beyond it: ``E = d + erfcx(d * sqrt(pi * rho)) / (2 * sqrt(rho))``, which falls
    from infinity to ``d`` as the density ``rho`` grows.
    """
    if mean_distance <= hard_core * 1.001:
        return np.inf

    def excess(log_rho):
        rho = np.exp(log_rho)
        return hard_core + erfcx(hard_core * np.sqrt(np.pi * rho)) / (2 * np.sqrt(rho)) - mean_distance

    return float(np.exp(brentq(excess, np.log(1e-4 / mean_distance ** 2),
                               np.log(1e4 / mean_distance ** 2))))


def _place(masks, shape, draw_centre, max_tries):
    """Paste bool masks as objects 1, 2, ... at drawn centres without overlap (see module)."""
    labels = np.zeros(shape, np.uint16)
    height, width = shape
    next_id = 1
    for mask in masks:
        h, w = mask.shape
        area = int(mask.sum())
        for _ in range(max_tries):
            cy, cx = draw_centre()
            y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
            ya, yb, xa, xb = max(y0, 0), min(y0 + h, height), max(x0, 0), min(x0 + w, width)
            if ya >= yb or xa >= xb:
                continue
            part = mask[ya - y0:yb - y0, xa - x0:xb - x0]
            window = labels[ya:yb, xa:xb]
            if 2 * part.sum() < area or window[part].any():
                continue
            window[part] = next_id
            next_id += 1
            break
    return labels
