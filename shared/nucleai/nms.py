"""Non-maximum suppression (NMS) of star-convex polygon candidates.

A StarDist-type network predicts, per pixel of a (possibly subsampled) grid, an object
probability and ``n_rays`` distances to the object boundary. Every pixel above the probability
threshold is a candidate polygon; NMS keeps, in descending score order, each candidate that does
not overlap an already kept one by more than ``nms_thresh``, with
``overlap = area(a & b) / min(area(a), area(b))``. The semantics and return values are those of
``stardist.nms.non_maximum_suppression`` (stardist 0.9), so models trained and tuned with stardist
give the same objects here:

- candidates are the pixels with ``prob > prob_thresh`` at least ``b`` pixels (of the prediction
  grid) away from the border;
- they are ordered as stardist orders them, by ``np.argsort(scores)[::-1]`` (descending; among
  equal scores, which saturated probabilities often are, the order numpy's default sort gives,
  reversed: that is what makes the survivors identical to stardist's on the same machine);
- points are returned in full-resolution pixel coordinates (grid indices times ``grid``);
- overlaps are computed on polygons whose vertices are snapped to the integer pixel grid, as
  stardist's polygon clipper does (see :mod:`nucleai._nms`); the intersection itself is exact,
  whereas stardist's clipper also rounds the intersection points to the grid, which moves its
  intersection areas by up to about a square pixel per intersection point. Survivors therefore
  differ from stardist's only where an overlap lies that close to ``nms_thresh`` (for
  nucleus-sized polygons a few 1e-3, for polygons of ~100 px^2 a few 1e-2), and downstream of
  such a decision: rarely at the usual thresholds 0.3 to 0.5 (about 0.4 % of the kept objects
  of a small, noisy network), more often near ``nms_thresh = 1``, where many candidates of one
  object overlap by about the threshold (stardist's rounded overlap can even exceed 1, so it
  still suppresses at ``nms_thresh = 1``; we never do);
- a candidate whose snapped polygon has no area (all rays shorter than about a pixel) overlaps
  nothing: it is kept, and suppresses nothing, as in stardist.

The work is done by the compiled :func:`nucleai._nms.suppress_sorted`, on all cores (OpenMP;
``NUCLEAI_THREADS``, ``OMP_NUM_THREADS`` or the ``n_threads`` argument limits them).
"""
import numbers

import numpy as np

from . import geometry
from ._nms import pair_intersection_area, suppress_sorted
from .errors import InputError
from .runtime import worker_threads

__all__ = ["non_maximum_suppression", "non_maximum_suppression_sparse", "polygon_overlap"]

# Snapped vertices and their products must stay exact in 32/64-bit integers and in float32 sums.
_MAX_COORDINATE = 2 ** 22


def non_maximum_suppression(dist, prob, grid=(1, 1), b=2, nms_thresh=0.4, prob_thresh=0.5, *,
                            n_threads=None):
    """Keep the best non-overlapping star-convex polygons of a dense prediction.

    Parameters
    ----------
    dist : (Ny, Nx, n_rays) array of real numbers
        Ray lengths per grid pixel, in full-resolution pixels, ray ``k`` at angle
        ``2 * pi * k / n_rays`` (see :func:`nucleai.geometry.ray_angles`). Must be finite and
        non-negative for every candidate (stardist's prediction clips them at 1e-3).
    prob : (Ny, Nx) array of real numbers
        Object probability (score) per grid pixel. NaN is refused.
    grid : pair of positive int
        Subsampling of the prediction grid: pixel ``(i, j)`` of ``prob`` is the full-resolution
        point ``(i * grid[0], j * grid[1])``.
    b : int, pair of (int, int) pairs, or None
        Candidates closer than ``b`` grid pixels to the border are dropped (stardist's border
        exclusion); per axis and side as ``((top, bottom), (left, right))``; None or 0 keeps all.
    nms_thresh : float in [0, 1]
        A candidate is suppressed when its overlap with a kept polygon exceeds this.
    prob_thresh : float
        Candidates are the pixels with ``prob > prob_thresh``.
    n_threads : int, optional
        Threads to use (OpenMP), 1 to 4096; default: ``NUCLEAI_THREADS``, else
        ``OMP_NUM_THREADS``, else all cores.
        Small candidate sets always use one. The result does not depend on it.

    Returns
    -------
    points : (n, 2) int array
        Centres (y, x) of the kept polygons in full-resolution pixels, by descending score.
    scores : (n,) array
        Their probabilities (dtype of ``prob``).
    dist : (n, n_rays) array
        Their ray lengths (dtype of ``dist``).

    Raises
    ------
    InputError
        Wrong shapes or dtypes, NaN in ``prob``, non-finite or negative distances of
        candidates, a bad ``grid``, ``b``, threshold or ``n_threads``.
    """
    prob = geometry._real_array(prob, "prob")
    dist = geometry._real_array(dist, "dist")
    if prob.ndim != 2:
        raise InputError(f"prob must be a 2-D array (Ny, Nx), got shape {prob.shape}")
    if dist.ndim != 3 or dist.shape[:2] != prob.shape:
        raise InputError(
            f"dist must have shape (Ny, Nx, n_rays) = {prob.shape + ('n_rays',)}, matching prob, "
            f"got {dist.shape}")
    _check_rays(dist)
    if np.isnan(prob).any():
        raise InputError("prob contains NaN")
    grid = geometry._normalize_grid(grid)
    if max(s * g for s, g in zip(prob.shape, grid)) > _MAX_COORDINATE:
        raise InputError(f"prob of shape {prob.shape} with grid {grid} exceeds "
                         f"{_MAX_COORDINATE} pixels")
    nms_thresh = _threshold(nms_thresh, "nms_thresh", 0.0, 1.0)
    prob_thresh = _threshold(prob_thresh, "prob_thresh", -np.inf, np.inf)
    n_threads = _thread_count(n_threads)

    mask = _candidate_mask(prob, prob_thresh, b)
    points = np.stack(np.nonzero(mask), axis=1)
    scores = prob[mask]
    dist = dist[mask]
    order = np.argsort(scores)[::-1]
    points = points[order] * np.array(grid).reshape(1, 2)
    scores = scores[order]
    dist = dist[order]
    keep = _suppress(dist, points, nms_thresh, n_threads)
    return points[keep], scores[keep], dist[keep]


def non_maximum_suppression_sparse(dist, points, scores, nms_thresh=0.4, *, n_threads=None):
    """NMS of an explicit list of candidate polygons (for example pooled from several predictions).

    Parameters
    ----------
    dist : (n, n_rays) array of real numbers
        Ray lengths, finite and non-negative.
    points : (n, 2) array of real numbers
        Centres (y, x) in full-resolution pixels.
    scores : (n,) array of real numbers
        Candidate scores, without NaN; higher is better.
    nms_thresh : float in [0, 1]
        A candidate is suppressed when its overlap with a kept polygon exceeds this.
    n_threads : int, optional
        As in :func:`non_maximum_suppression`.

    Returns
    -------
    points, scores, dist : arrays
        The kept candidates, by descending score (ties as ``np.argsort(scores)[::-1]``).
    indices : (n_kept,) int array
        Their positions in the input.
    """
    dist = geometry._real_array(dist, "dist")
    points = geometry._real_array(points, "points")
    scores = geometry._real_array(scores, "scores")
    if dist.ndim != 2:
        raise InputError(f"dist must be a 2-D array (n, n_rays), got shape {dist.shape}")
    _check_rays(dist)
    if points.shape != (len(dist), 2):
        raise InputError(f"points must have shape ({len(dist)}, 2), got {points.shape}")
    if scores.shape != (len(dist),):
        raise InputError(f"scores must have shape ({len(dist)},), got {scores.shape}")
    if np.isnan(scores).any():
        raise InputError("scores contains NaN")
    _check_points(points)
    nms_thresh = _threshold(nms_thresh, "nms_thresh", 0.0, 1.0)
    n_threads = _thread_count(n_threads)
    order = np.argsort(scores)[::-1]
    keep = _suppress(dist[order], points[order], nms_thresh, n_threads)
    kept = order[keep]
    return points[kept], scores[kept], dist[kept], kept


def polygon_overlap(dist_a, points_a, dist_b, points_b):
    """Intersection area and overlap of pairs of polygons, exactly as the NMS computes them.

    Vertices are snapped to the integer grid as in the NMS; the overlap is
    ``area(a & b) / min(area(a), area(b))`` (0 when either polygon has zero area).

    Parameters
    ----------
    dist_a, dist_b : (n, n_rays) arrays
        Ray lengths of the first and second polygon of each pair.
    points_a, points_b : (n, 2) arrays
        Their centres (y, x).

    Returns
    -------
    intersection : (n,) float64 array
        ``area(a & b)`` in square pixels.
    overlap : (n,) float64 array
    """
    dist_a, dist_b, points_a, points_b = (
        geometry._real_array(a, name) for a, name in
        [(dist_a, "dist_a"), (dist_b, "dist_b"), (points_a, "points_a"), (points_b, "points_b")])
    n = len(dist_a)
    if (dist_a.ndim != 2 or dist_b.shape != dist_a.shape or points_a.shape != (n, 2)
            or points_b.shape != (n, 2)):
        raise InputError(f"dist_a and dist_b must be (n, n_rays) and points_a and points_b "
                         f"(n, 2) arrays, got shapes {dist_a.shape}, {dist_b.shape}, "
                         f"{points_a.shape}, {points_b.shape}")
    dist = np.concatenate([dist_a, dist_b])
    points = np.concatenate([points_a, points_b])
    _check_rays(dist)
    _check_dist(dist)
    _check_points(points)
    pairs = np.arange(n, dtype=np.intp)
    inter, smaller = pair_intersection_area(
        np.ascontiguousarray(dist, np.float32), np.ascontiguousarray(points, np.float32),
        pairs, pairs + n)
    overlap = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
    return inter, overlap


def _suppress(dist, points, nms_thresh, n_threads):
    """Keep mask of candidates sorted by descending score (after validation of ``dist``)."""
    _check_dist(dist)
    if len(dist) == 0:
        return np.zeros(0, bool)
    return suppress_sorted(np.ascontiguousarray(dist, np.float32),
                           np.ascontiguousarray(points, np.float32), np.float32(nms_thresh),
                           n_threads)


def _thread_count(n_threads):
    """``n_threads`` as the compiled code takes it: ``NUCLEAI_THREADS`` when it is set, else 0
    for OpenMP's default."""
    if n_threads is None:
        return worker_threads() or 0
    if (not isinstance(n_threads, numbers.Integral) or isinstance(n_threads, bool)
            or not 1 <= n_threads <= 4096):
        raise InputError(f"n_threads must be None or an int in [1, 4096], got {n_threads!r}")
    return int(n_threads)


def _candidate_mask(prob, prob_thresh, b):
    """Pixels above ``prob_thresh`` and outside the border of width ``b`` (stardist's rule)."""
    mask = prob > prob_thresh
    if b is None:
        return mask
    inner = np.zeros_like(mask)
    inner[tuple(slice(lo if lo > 0 else None, -hi if hi > 0 else None)
                for lo, hi in _normalize_border(b))] = True
    return mask & inner


def _normalize_border(b):
    if isinstance(b, numbers.Integral) and not isinstance(b, bool):
        b = ((b, b), (b, b))
    try:
        pairs = tuple(tuple(side) for side in b)
        ok = len(pairs) == 2 and all(
            len(side) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                   and v >= 0 for v in side)
            for side in pairs)
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"b must be None, a non-negative int or ((top, bottom), (left, right)) "
                         f"non-negative ints, got {b!r}")
    return pairs


def _threshold(value, name, low, high):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not low <= float(value) <= high):
        raise InputError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _check_rays(dist):
    if dist.shape[-1] < 3:
        raise InputError(f"dist must have at least 3 rays (last axis), got shape {dist.shape}")


def _check_points(points):
    if not np.isfinite(points).all() or np.abs(points).max(initial=0) > _MAX_COORDINATE:
        raise InputError(f"points must be finite and within +-{_MAX_COORDINATE} pixels")


def _check_dist(dist):
    geometry._check_dist(dist)
    if dist.size and dist.max() > _MAX_COORDINATE:
        raise InputError(f"dist exceeds {_MAX_COORDINATE} pixels")
