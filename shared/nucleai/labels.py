"""Label images as arrays: validation, compaction and overlaps, shared by every operation on objects.

A label image is an integer array, 0 = background, one positive id per object; ids need not be
consecutive. Metrics, TTA merging, contour refinement and training all need the same things
before they work on objects: a check that the array really is a label image (with a message
naming the argument at fault), the objects renumbered 1..k so per-object tables can be plain
arrays indexed by the new number, and (to compare two label images) the sparse table of which
objects overlap and by how many pixels.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import InputError


def check_labels(labels, what="labels", *, ndim=None, shape=None, field=None):
    """A label image as an array, or an :class:`InputError` naming ``what``.

    Parameters
    ----------
    labels : array_like
    what : str
        How the user knows this array ("ground truth", "label image 3", ...).
    ndim : int, optional
        The required number of dimensions (any when omitted).
    shape : tuple, optional
        The required shape (that of the image the labels belong to).
    field : str, optional
        The options field the labels came from, passed on to the error.

    Raises
    ------
    InputError
        For booleans or non-integers (a binary mask must be labelled first), negative ids, or
        another dimensionality or shape than required.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"{what} must be a label image of integers (0 = background, one id per object), "
            f"got dtype {labels.dtype}; label a binary mask first, e.g. skimage.measure.label",
            field,
        )
    if ndim is not None and labels.ndim != ndim:
        raise InputError(f"{what}: a {ndim}-D label image is expected, got shape {labels.shape}", field)
    if shape is not None and labels.shape != tuple(shape):
        raise InputError(
            f"{what} has shape {labels.shape} but {tuple(shape)} is expected; labels and image "
            "must have the same size",
            field,
        )
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise InputError(f"{what} has negative label ids (minimum {labels.min()})", field)
    return labels


class Compacted(NamedTuple):
    """Objects renumbered 1..k in the order of their original ids.

    Attributes
    ----------
    labels : int32 array, the input's shape
        Each pixel's new object number (0 = background).
    ids : int64 array (k,)
        The original id of new object ``i + 1`` at index ``i``.
    areas : int64 array (k,)
        Pixels of new object ``i + 1`` at index ``i``.
    """

    labels: np.ndarray
    ids: np.ndarray
    areas: np.ndarray


#: A lookup table up to this many entries per pixel (plus a constant) beats sorting.
_DENSE_IDS_PER_PIXEL = 4


def compact(labels):
    """Renumber the objects of a (checked) label image 1..k, keeping their order.

    Dense ids (the usual case) go through a lookup table, linear time; ids far sparser than the
    pixel count (a 32-bit hash-like id) fall back to sorting, so memory stays bounded.

    Returns
    -------
    Compacted
    """
    labels = np.asarray(labels)
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= _DENSE_IDS_PER_PIXEL * flat.size + 1024:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        return Compacted(lut[labels], ids.astype(np.int64), counts[ids].astype(np.int64))
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    inverse = inverse.astype(np.int32).reshape(labels.shape)
    if ids[0] == 0:
        return Compacted(inverse, ids[1:].astype(np.int64), counts[1:].astype(np.int64))
    return Compacted(inverse + 1, ids.astype(np.int64), counts.astype(np.int64))


@dataclass(frozen=True, eq=False)
class Overlap:
    """The sparse overlap table of two label images.

    Objects are indexed ``0 .. n - 1`` in increasing id order on each side; ``truth_ids[i]`` is
    the label id of ground-truth object ``i``. Pairs are sorted by truth index, then prediction
    index, and only pairs that share at least one pixel are listed.

    Attributes
    ----------
    truth_ids, pred_ids : ndarray
        Label ids present in each image (background 0 excluded), increasing, in the input dtype.
    truth_areas, pred_areas : ndarray of int64
        Pixel count of each object.
    pair_truth, pair_pred : ndarray of intp
        Object indices of each overlapping pair.
    intersection : ndarray of int64
        Shared pixel count of each pair.
    iou : ndarray of float64
        Intersection over union of each pair.
    """

    truth_ids: np.ndarray
    pred_ids: np.ndarray
    truth_areas: np.ndarray
    pred_areas: np.ndarray
    pair_truth: np.ndarray
    pair_pred: np.ndarray
    intersection: np.ndarray
    iou: np.ndarray


def label_overlap(truth, pred):
    """Tabulate the pixel overlap of every pair of objects that overlap at all.

    One int64 key per pixel covered on both sides, sorted and counted by ``np.unique``: no loop
    over objects, so thousands of objects per image cost a fraction of a second.

    Parameters
    ----------
    truth, pred : ndarray of int
        Ground-truth and predicted label images of the same shape, any number of dimensions, any
        integer dtypes, 0 = background, ids need not be sequential.

    Returns
    -------
    Overlap

    Raises
    ------
    InputError
        If either is not an integer array, has negative ids, or the shapes differ.
    """
    truth = check_labels(truth, "truth")
    pred = check_labels(pred, "pred")
    if truth.shape != pred.shape:
        raise InputError(f"truth and pred must have the same shape, got {truth.shape} and {pred.shape}")
    truth_compact, pred_compact = compact(truth), compact(pred)
    truth_index = truth_compact.labels.astype(np.int64)
    pred_index = pred_compact.labels.astype(np.int64)
    both = (truth_index > 0) & (pred_index > 0)
    stride = pred_compact.ids.size
    keys, intersection = np.unique(
        (truth_index[both] - 1) * stride + (pred_index[both] - 1), return_counts=True
    )
    pair_truth, pair_pred = np.divmod(keys, max(stride, 1))
    intersection = intersection.astype(np.int64)
    union = truth_compact.areas[pair_truth] + pred_compact.areas[pair_pred] - intersection
    return Overlap(
        # int64 -> input dtype is exact even for uint64 ids above 2**63 (the cast wraps back)
        truth_ids=truth_compact.ids.astype(truth.dtype, copy=False),
        pred_ids=pred_compact.ids.astype(pred.dtype, copy=False),
        truth_areas=truth_compact.areas,
        pred_areas=pred_compact.areas,
        pair_truth=pair_truth.astype(np.intp),
        pair_pred=pair_pred.astype(np.intp),
        intersection=intersection,
        iou=intersection / union,
    )
