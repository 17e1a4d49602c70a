"""Star-convex polygon geometry: star distances, polygon vertices, areas and rendering.

A star-convex object is described by a centre and ``n_rays`` radial distances ``d_k`` along the
ray angles ``phi_k = 2 * pi * k / n_rays`` (:func:`ray_angles`); its polygon has the vertices
``(y, x) = (cy + d_k * sin(phi_k), cx + d_k * cos(phi_k))``, so angles grow from the +x axis
towards +y (rows). These are stardist's definitions (stardist 0.9 ``star_dist``,
``dist_to_coord``, ``polygons_to_label``) and every function here reproduces stardist's numbers:
star distances bit for bit (same single-precision ray marching), vertices in the same float32
rounding, and rendering of the pixels ``skimage.draw.polygon`` draws (compiled,
:mod:`nucleai._render`) in the same order, so that models
trained with stardist and models trained here are interchangeable.
"""
import numbers

import numpy as np

from . import _geometry, _render
from .errors import InputError

__all__ = ["ray_angles", "star_dist", "polygon_vertices", "polygon_area", "polygons_to_label"]


def ray_angles(n_rays=32):
    """Ray angles ``2 * pi * k / n_rays``, k = 0 ... n_rays - 1 (float64 radians).

    Parameters
    ----------
    n_rays : int, at least 3

    Returns
    -------
    (n_rays,) float64 array
    """
    return np.linspace(0, 2 * np.pi, _check_n_rays(n_rays), endpoint=False)


def star_dist(labels, n_rays=32, grid=(1, 1)):
    """Distances from each pixel to the boundary of its object along ``n_rays`` rays.

    These are the regression targets of a star-convex detector. From each object pixel the ray
    is followed in unit steps, rounding to the nearest pixel, until it leaves the image or
    reaches a pixel with another label; the distance is taken half a pixel (along the dominant
    axis) before that pixel, i.e. at the boundary of the last pixel inside. Identical to
    ``stardist.geometry.star_dist`` (which, unlike this function, reads labels as uint16).

    Parameters
    ----------
    labels : (H, W) array of int
        Label image, 0 = background, any other value one object (need not be consecutive).
    n_rays : int, at least 3
        Number of rays, at angles :func:`ray_angles` ``(n_rays)``.
    grid : pair of positive int
        Only the pixels ``(i * grid[0], j * grid[1])`` are evaluated (the prediction grid of a
        network that subsamples its output); distances stay in full-resolution pixels.

    Returns
    -------
    dist : ((H - 1) // grid[0] + 1, (W - 1) // grid[1] + 1, n_rays) float32 array
        0 on background pixels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a 2-D integer label image, got a {labels.ndim}-D "
                         f"array of dtype {labels.dtype}")
    n_rays = _check_n_rays(n_rays)
    grid = _normalize_grid(grid)
    if labels.size == 0:
        raise InputError(f"labels is empty (shape {labels.shape})")
    # int64 holds every id (uint64 ids wrap around, which keeps distinct ids distinct)
    return _geometry.star_dist(np.ascontiguousarray(labels, dtype=np.int64), n_rays, *grid)


def polygon_vertices(dist, points):
    """Vertices of star-convex polygons, as stardist's ``dist_to_coord``.

    Parameters
    ----------
    dist : (n, n_rays) array of real numbers
        Ray lengths (finite, non-negative).
    points : (n, 2) array of real numbers
        Centres (y, x).

    Returns
    -------
    coord : (n, 2, n_rays) float32 array
        ``coord[i, 0]`` are the rows (y) and ``coord[i, 1]`` the columns (x) of polygon ``i``'s
        vertices, counter-clockwise in (x, y) (increasing angle). The offsets ``d * sin`` and
        ``d * cos`` are rounded to float32 before the centre is added, as in stardist, so that
        rendered label images agree pixel for pixel.
    """
    dist, points = _check_polygons(dist, points)
    phi = ray_angles(dist.shape[1])
    coord = (dist[:, np.newaxis, :] * np.stack([np.sin(phi), np.cos(phi)])).astype(np.float32)
    coord += points[:, :, np.newaxis]
    return coord


def polygon_area(dist):
    """Exact areas of star-convex polygons from their ray lengths.

    The polygon is a fan of ``n_rays`` triangles around its centre with angle
    ``2 * pi / n_rays`` each, so ``area = sin(2 * pi / n_rays) / 2 * sum_k d_k * d_(k+1)``
    (indices mod ``n_rays``). This is the area of the polygon with exact (unrounded) vertices;
    the NMS uses the area of the grid-snapped polygon instead (see :mod:`nucleai.nms`).

    Parameters
    ----------
    dist : (..., n_rays) array of real numbers
        Ray lengths (finite, non-negative).

    Returns
    -------
    area : (...) float64 array
    """
    dist = _real_array(dist, "dist").astype(np.float64)
    if dist.ndim == 0:
        raise InputError("dist must have the rays along its last axis, got a scalar")
    _check_n_rays(dist.shape[-1])
    _check_dist(dist)
    return 0.5 * np.sin(2 * np.pi / dist.shape[-1]) * np.sum(
        dist * np.roll(dist, -1, axis=-1), axis=-1)


def polygons_to_label(dist, points, shape, prob=None):
    """Render star-convex polygons into a label image, higher scores on top.

    Polygons are drawn pixel for pixel as ``skimage.draw.polygon`` draws them (compiled, in
    :mod:`nucleai._render`), in ascending order of ``prob`` (stable for ties), so where polygons
    overlap the pixel goes to the one with the highest score, as in
    ``stardist.geometry.polygons_to_label``. Polygon ``i`` gets label ``i + 1`` (input order),
    so labels map back to the rows of ``dist`` and ``points``; a polygon entirely covered by
    higher-scoring ones, or too thin to contain a pixel centre, leaves its label unused.

    Parameters
    ----------
    dist : (n, n_rays) array of real numbers
        Ray lengths (finite, non-negative).
    points : (n, 2) array of real numbers
        Centres (y, x).
    shape : pair of positive int
        Shape of the label image; polygon parts outside it are clipped.
    prob : (n,) array of real numbers, optional
        Scores; None draws in input order (later polygons on top).

    Returns
    -------
    labels : uint16 array of the given shape (uint32 when n > 65535)
        0 = background.
    """
    coord = polygon_vertices(dist, points)
    shape = _normalize_shape(shape)
    n = len(coord)
    if prob is None:
        order = np.arange(n)
    else:
        prob = _real_array(prob, "prob")
        if prob.shape != (n,):
            raise InputError(f"prob must have shape ({n},), got {prob.shape}")
        if np.isnan(prob).any():
            raise InputError("prob contains NaN")
        order = np.argsort(prob, kind="stable")
    labels = np.zeros(shape, np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32)
    _render.render_polygons(np.ascontiguousarray(coord), np.ascontiguousarray(order, dtype=np.intp), labels)
    return labels


def _check_polygons(dist, points):
    dist = _real_array(dist, "dist")
    points = _real_array(points, "points")
    if dist.ndim != 2:
        raise InputError(f"dist must be a 2-D array (n, n_rays), got shape {dist.shape}")
    _check_n_rays(dist.shape[1])
    if points.shape != (len(dist), 2):
        raise InputError(f"points must have shape ({len(dist)}, 2), got {points.shape}")
    _check_dist(dist)
    if not np.isfinite(points).all():
        raise InputError("points must be finite")
    return dist, points


def _check_dist(dist):
    """Ray lengths must be finite and non-negative (a negative ray breaks star-convexity)."""
    if not np.isfinite(dist).all():
        raise InputError("dist must be finite (found NaN or inf)")
    if (dist < 0).any():
        raise InputError("dist must be non-negative; clip it first "
                         "(stardist's prediction uses np.maximum(dist, 1e-3))")


def _check_n_rays(n_rays):
    if (not isinstance(n_rays, numbers.Integral) or isinstance(n_rays, bool)) or n_rays < 3:
        raise InputError(f"n_rays must be an int of at least 3, got {n_rays!r}")
    return int(n_rays)


def _normalize_grid(grid):
    return _positive_int_pair(grid, "grid")


def _normalize_shape(shape):
    return _positive_int_pair(shape, "shape")


def _positive_int_pair(value, name):
    try:
        pair = tuple(value)
    except TypeError:
        pair = None
    if pair is None or len(pair) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in pair):
        raise InputError(f"{name} must be a pair of positive ints, got {value!r}")
    return tuple(int(v) for v in pair)


def _real_array(a, name):
    """``a`` as an array of real numbers (ints or floats; bool and others refused)."""
    a = np.asarray(a)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    return a
