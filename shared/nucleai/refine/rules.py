"""nucleAIzer's contour-refinement rules on a label image and a probability map.

:func:`refine` applies the five rules of Hollandi et al. (2020) in the paper's order, each to the
result of the one before:

1. **inside**: remove objects lying entirely inside another;
2. **merge**: merge objects surrounded by another by more than ``p1``;
3. **small**: remove objects under ``p2`` pixels;
4. **contour**: with the probability map thresholded at ``p3``, move each contour within a band
   ``p4`` pixels inwards / ``p5`` pixels outwards to the thresholded region;
5. **probability**: remove objects whose mean probability is below ``p6``.

The paper describes the rules for overlapping instance masks (Mask R-CNN's). A label image has
one id per pixel, so the points it leaves open are defined here as follows.

Contour ring, "surrounded" (rules 1, 2)
    The *ring* of object A is the set of pixels outside A sharing an edge with A (its
    4-neighbours), pixels outside the image included: the image is framed by a border that
    belongs to no object. The share of a neighbour B is ``|ring(A) & B| / |ring(A)|``, the
    fraction of A's contour that touches B. "Surrounded by B by more than p1" means that share
    is above p1; only the single neighbour with the largest share counts (ties: the lower id),
    contacts with several neighbours are not added up.
Inside (rule 1)
    A lies entirely inside B when its whole ring is B (share 1; touching the background or the
    image border means it is not inside). Overlapping masks would have B cover A; in a label
    image B has a hole where A is, so A's pixels are given to B (B's hole is filled). A is
    *removed*: B keeps its own identity and does not list A among its sources. An object holding
    another in a hole has it on its ring, so the rule is repeated until no object is inside
    another: nested objects are absorbed from the innermost out.
Merge (rule 2)
    Decided for all objects at once on the result of rule 1, not one after the other: every
    object whose largest share exceeds p1 is linked to that neighbour, and each connected group
    of links becomes one object (so a chain A-B-C merges into one). The merged object is named
    after its largest member (ties: the lower id) and lists all members as sources. Merging is
    not repeated on the merged objects. ``p1 = 1`` switches merging off.
Small (rule 3)
    Objects with fewer than ``p2`` pixels are removed (their pixels become background).
Contour move, contested pixels (rule 4)
    The foreground is ``prob > p3``. An object's pixels within Euclidean distance ``p4`` of a
    pixel that is not its own (background or another object; the image edge is not a contour)
    form its inner band: there, only foreground pixels are kept. Background pixels within
    Euclidean distance ``p5`` of an object form the outer band: there, foreground pixels are
    added to the *nearest* object (Euclidean distance to its nearest pixel; at equal distances
    the first in row-major order of the offset: above before left before right before below).
    Objects never take pixels from one another: a contested pixel between two touching objects
    stays with the object it belongs to unless that object gives it up (it is in its inner band
    and below p3), and even then it becomes background, not the neighbour's. All objects move at once, from the same starting
    labels. An object left in several pieces keeps its largest 8-connected piece (ties: the first
    in raster order); one left with no pixels is removed (*vanished*).
Probability (rule 5)
    Objects whose mean probability over their pixels is below ``p6`` are removed.

Traceability
    Every input object ends in exactly one fate (:data:`FATES`): ``kept`` (it is, or names, an
    output object), ``merged`` (absorbed by a merge into another object's output), ``inside``,
    ``small``, ``vanished`` or ``low_probability`` (removed by rule 1, 3, 4 or 5; a merged group
    removed by a later rule takes all its members with it). ``output_of`` gives for every input
    object the output object holding it (0 if removed); output objects are numbered 1 ... n in
    the order of the input id each is named after, so an unchanged image keeps its order.

Boundary shift (rule 4)
    Per output object, pixels added and removed by the contour move, and the mean shift of its
    contour in pixels: (added + removed) / contour length before the move (contour length = its
    pixels with a 4-neighbour of another label). A contour moved out by one pixel all around
    shifts by about 1.

Speed: every rule is a few whole-image numpy/scipy operations (shifted comparisons, one sort of
the contour pairs, one gather per band offset over the pixels that may change, one
connected-component labelling), never a Python loop over objects; a 1024 x 1024 image with 1000
objects takes under half a second on one CPU core.
"""
from dataclasses import dataclass

import numpy as np
import skimage.measure
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import InputError
from ..labels import check_labels, compact
from .params import check_parameters

#: The fate of an input object, in the order of the rules that may end it.
FATES = ("kept", "merged", "inside", "small", "vanished", "low_probability")

_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))


@dataclass
class Refinement:
    """The result of :func:`refine`.

    Attributes
    ----------
    labels : (H, W) uint16 or uint32 array
        Refined objects 1 ... n, in the order of the input objects they are named after.
    input_ids : (m,) int64 array
        The input objects' ids, ascending.
    output_of : (m,) int64 array
        For each input object, the output object holding it; 0 when it was removed.
    fate : (m,) array of str
        For each input object, one of :data:`FATES`.
    parents : (n,) int64 array
        For each output object, the input id it is named after (for a merge, its largest member).
    pixels_added, pixels_removed : (n,) int64 arrays
        Pixels the contour move added to / removed from each output object.
    boundary_shift : (n,) float64 array
        Mean contour shift of each output object in pixels (see the module docstring).
    mean_probability : (n,) float64 array
        Mean probability over each output object's pixels.
    params : dict
        The parameters used.
    """

    labels: np.ndarray
    input_ids: np.ndarray
    output_of: np.ndarray
    fate: np.ndarray
    parents: np.ndarray
    pixels_added: np.ndarray
    pixels_removed: np.ndarray
    boundary_shift: np.ndarray
    mean_probability: np.ndarray
    params: dict

    @property
    def count(self):
        """Number of output objects."""
        return len(self.parents)

    def sources(self, output_id):
        """The input ids an output object was made of (one, or several for a merge)."""
        return self.input_ids[self.output_of == output_id]

    def counts(self):
        """Input objects per fate (all of :data:`FATES`), plus ``input`` and ``output``."""
        result = {"input": len(self.input_ids), "output": self.count}
        result.update({fate: int(np.count_nonzero(self.fate == fate)) for fate in FATES})
        return result

    @property
    def mean_boundary_shift(self):
        """Mean of :attr:`boundary_shift` over the output objects (0 when there are none)."""
        return float(self.boundary_shift.mean()) if self.count else 0.0


# --------------------------------------------------------------------------------------------
# Input


def check_probability(prob, shape):
    """Validate a probability map for objects of ``shape``; returns it as float32.

    Raises
    ------
    InputError
        For a map of another shape, or probabilities outside [0, 1] or not finite.
    """
    prob = np.asarray(prob)
    if prob.shape != tuple(shape):
        raise InputError(
            f"the probability map is {'x'.join(map(str, prob.shape))} but the objects are "
            f"{'x'.join(map(str, shape))}; image and objects must have the same size"
        )
    if not (np.issubdtype(prob.dtype, np.floating) or np.issubdtype(prob.dtype, np.integer)):
        raise InputError(f"probability map has dtype {prob.dtype}; numbers in [0, 1] are expected")
    prob = prob.astype(np.float32, copy=False)
    if prob.size and not (np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1):
        raise InputError("probability map must hold finite values between 0 and 1")
    return prob


def check_inputs(labels, prob):
    """The objects as a 2-D label image (:func:`nucleai.labels.check_labels`) and the map
    (:func:`check_probability`); returns (labels, float32 map)."""
    labels = check_labels(labels, "objects", ndim=2)
    return labels, check_probability(prob, labels.shape)


# --------------------------------------------------------------------------------------------
# Contour rings


def contacts(lab, n):
    """Who touches whom along the objects' contour rings.

    Parameters
    ----------
    lab : (H, W) int array
        Labels 0 ... n.
    n : int
        Highest label.

    Returns
    -------
    ring : (n + 1,) int64 array
        Ring size (pixels) per label; index 0 unused.
    a, b, count : int64 arrays
        For every object ``a`` and every label ``b`` on its ring (0 = background, ``n + 1`` =
        outside the image), the number of ring pixels of ``a`` that are ``b``.
    """
    frame = n + 1
    padded = np.pad(lab.astype(np.int64, copy=False), 1, constant_values=frame)
    height, width = padded.shape
    inner = padded[1:-1, 1:-1]
    flat_index = np.arange(height * width, dtype=np.int64).reshape(padded.shape)
    owners, ring_pixels = [], []
    for dy, dx in _SHIFTS:
        neighbour = padded[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx]
        touching = (inner > 0) & (neighbour != inner)
        owners.append(inner[touching])
        ring_pixels.append(flat_index[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx][touching])
    owners = np.concatenate(owners)
    ring_pixels = np.concatenate(ring_pixels)
    # a ring pixel next to the object on two sides is one pixel of its ring, counted once
    keys = np.unique(owners * (height * width) + ring_pixels)
    owners = keys // (height * width)
    ring_labels = padded.ravel()[keys % (height * width)]
    ring = np.bincount(owners, minlength=n + 1).astype(np.int64)
    pair_keys, count = np.unique(owners * (frame + 1) + ring_labels, return_counts=True)
    return ring, pair_keys // (frame + 1), pair_keys % (frame + 1), count.astype(np.int64)


def _largest_neighbour(ring, a, b, count, n):
    """Per object, the object (not background or border) with the largest share of its ring.

    Returns ``(neighbour, share)`` arrays of length n + 1 (neighbour 0 and share 0 where none).
    """
    neighbour = np.zeros(n + 1, np.int64)
    share = np.zeros(n + 1, np.float64)
    objects = (b > 0) & (b <= n)
    a, b, count = a[objects], b[objects], count[objects]
    if len(a):
        # per a: largest count first, then the lower neighbour id; the first row per a wins
        order = np.lexsort((b, -count, a))
        a, b, count = a[order], b[order], count[order]
        first = np.concatenate([[True], a[1:] != a[:-1]])
        neighbour[a[first]] = b[first]
        share[a[first]] = count[first] / ring[a[first]]
    return neighbour, share


# --------------------------------------------------------------------------------------------
# The rules, each on compact labels 1 ... n; each returns the new labels and a per-label map


def remove_inside(lab, n):
    """Rule 1: objects whose whole ring is one other object are absorbed by it.

    Repeated until no object is inside another: an object holding another in its hole has that
    one on its ring, so nested objects are absorbed from the innermost out, all into the
    outermost.

    Returns
    -------
    lab : int array
        New labels (absorbed objects' pixels carry the enclosing object's label).
    target : (n + 1,) int64 array
        For every label, the label it now belongs to (itself when not inside another).
    """
    target = np.arange(n + 1, dtype=np.int64)
    while True:
        ring, a, b, count = contacts(lab, n)
        enclosed = (b > 0) & (b <= n) & (count == ring[a])
        if not enclosed.any():
            return lab, target
        step = np.arange(n + 1, dtype=np.int64)
        step[a[enclosed]] = b[enclosed]
        lab = step[lab]
        target = step[target]


def merge_surrounded(lab, n, neighbour, share, p1):
    """Rule 2: link each object to the neighbour holding more than ``p1`` of its ring; merge groups.

    Parameters
    ----------
    lab : int array
        Labels 0 ... n after rule 1.
    n : int
    neighbour, share : (n + 1,) arrays
        Per label, the neighbour with the largest share of its ring and that share
        (:func:`prepare` computes them once, since they do not depend on the parameters).
    p1 : float

    Returns
    -------
    lab : int array
        New labels: every group carries the label of its largest member (ties: lowest label).
    target : (n + 1,) int64 array
        For every label, the label of its group's name-giver (itself when not merged).
    """
    linked = np.flatnonzero((share > p1) & (neighbour > 0))
    target = np.arange(n + 1, dtype=np.int64)
    if len(linked) == 0:
        return lab, target
    graph = coo_matrix(
        (np.ones(len(linked)), (linked, neighbour[linked])), shape=(n + 1, n + 1)
    )
    _, group = connected_components(graph, directed=False)
    area = np.bincount(lab.ravel(), minlength=n + 1)
    # name-giver per group: largest area, then lowest label
    order = np.lexsort((np.arange(n + 1), -area, group))
    first = np.concatenate([[True], group[order][1:] != group[order][:-1]])
    leader = np.zeros(group.max() + 1, np.int64)
    leader[group[order][first]] = order[first]
    target = leader[group]
    target[0] = 0
    return target[lab], target


def remove_small(lab, n, p2):
    """Rule 3: objects with fewer than ``p2`` pixels become background.

    Returns the new labels and the boolean array (n + 1,) of removed labels.
    """
    area = np.bincount(lab.ravel(), minlength=n + 1)
    removed = (area < p2) & (area > 0)
    removed[0] = False
    if removed.any():
        lab = np.where(removed[lab], 0, lab)
    return lab, removed


def contour_pixels(lab, n):
    """Per label, its pixels with a 4-neighbour of another label (the image edge is no contour)."""
    padded = np.pad(lab, 1, mode="edge")
    height, width = padded.shape
    boundary = np.zeros(lab.shape, bool)
    for dy, dx in _SHIFTS:
        boundary |= padded[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx] != lab
    return np.bincount(lab[boundary & (lab > 0)], minlength=n + 1)


def move_contours(lab, n, prob, p3, p4, p5):
    """Rule 4: move every contour within ``p4`` in / ``p5`` out to the region ``prob > p3``.

    Returns
    -------
    lab : int array
        New labels (an object may have vanished).
    added, removed : (n + 1,) int64 arrays
        Pixels added to / removed from each label.
    """
    foreground = prob > p3
    objects = lab > 0
    new = lab.copy()
    if p4 > 0:
        # only object pixels below the threshold can go: those in the inner band
        ys, xs = np.nonzero(objects & ~foreground)
        in_band = _near_other_label(lab, ys, xs, p4)
        new[ys[in_band], xs[in_band]] = 0
    grow = np.zeros(lab.shape, bool)
    owner = None
    if p5 > 0 and objects.any():
        ys, xs = np.nonzero(~objects & foreground)
        owner = _nearest_object(lab, ys, xs, p5)
        grow[ys, xs] = owner > 0
        new[ys, xs] = owner
    # one piece per object: the largest 8-connected one
    pieces, n_pieces = _pieces(new)
    if n_pieces > np.count_nonzero(np.bincount(new.ravel(), minlength=n + 1)[1:]):
        size = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
        piece_label = np.zeros(n_pieces + 1, np.int64)
        piece_label[pieces.ravel()] = new.ravel()
        order = np.lexsort((np.arange(n_pieces + 1), -size, piece_label))
        first = np.concatenate([[True], piece_label[order][1:] != piece_label[order][:-1]])
        kept_piece = np.zeros(n_pieces + 1, bool)
        kept_piece[order[first]] = True
        kept_piece[0] = True
        new = np.where(kept_piece[pieces], new, 0)
    before = np.bincount(lab.ravel(), minlength=n + 1)
    gained = np.zeros(n + 1, np.int64)
    if owner is not None:
        # pixels added that survived the piece selection
        gained = np.bincount(new[grow], minlength=n + 1)
        gained[0] = 0
    lost = before - (np.bincount(new.ravel(), minlength=n + 1) - gained)
    lost[0] = 0
    return new, gained, lost


def band_offsets(radius):
    """Offsets (dy, dx) with 0 < dy^2 + dx^2 <= radius^2, nearest first (ties: row-major)."""
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    squared = dy * dy + dx * dx
    inside = (squared > 0) & (squared <= radius * radius)
    order = np.lexsort((dx[inside], dy[inside], squared[inside]))
    return np.stack([dy[inside][order], dx[inside][order]], axis=1)


def _near_other_label(lab, ys, xs, radius):
    """For object pixels (ys, xs): is a pixel of another label (or background) within ``radius``?

    Beyond the image edge the edge pixels are repeated, so the edge is no contour. Returns a bool
    array; the cost is the number of pixels times the offsets they need.
    """
    padded = np.pad(lab, radius, mode="edge")
    own = lab[ys, xs]
    near = np.zeros(len(ys), bool)
    open_ = np.arange(len(ys))
    for dy, dx in band_offsets(radius):
        if len(open_) == 0:
            break
        hit = padded[ys[open_] + radius + dy, xs[open_] + radius + dx] != own[open_]
        near[open_[hit]] = True
        open_ = open_[~hit]
    return near


def _nearest_object(lab, ys, xs, radius):
    """For background pixels (ys, xs): the label of the nearest object pixel within ``radius``.

    Offsets are tried nearest first, and only for pixels still without an owner, so the cost is
    the number of pixels times the offsets they need, not the image size times the disk.
    Returns an int array (0 where no object lies within ``radius``).
    """
    padded = np.pad(lab, radius)
    owner = np.zeros(len(ys), lab.dtype)
    open_ = np.arange(len(ys))
    for dy, dx in band_offsets(radius):
        if len(open_) == 0:
            break
        found = padded[ys[open_] + radius + dy, xs[open_] + radius + dx]
        hit = found > 0
        owner[open_[hit]] = found[hit]
        open_ = open_[~hit]
    return owner


def _pieces(lab):
    """Connected pieces (8-connectivity) of equal label: ids 1 ... k, 0 = background."""
    pieces = skimage.measure.label(lab, background=0, connectivity=2)
    return pieces, int(pieces.max())


def remove_improbable(lab, n, prob, p6):
    """Rule 5: objects whose mean probability is below ``p6`` become background.

    Returns the new labels, the boolean array (n + 1,) of removed labels and the mean
    probability per label (NaN for labels without pixels).
    """
    area = np.bincount(lab.ravel(), minlength=n + 1)
    total = np.bincount(lab.ravel(), weights=prob.ravel(), minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / area
    removed = (area > 0) & (mean < p6)
    removed[0] = False
    if removed.any():
        lab = np.where(removed[lab], 0, lab)
    return lab, removed, mean


# --------------------------------------------------------------------------------------------
# All rules


@dataclass
class Prepared:
    """Input objects after the steps that do not depend on the parameters.

    Compact labels 1 ... n, rule 1 applied, and for rule 2 each object's largest neighbour and
    its share of the ring. Tuning refines the same objects hundreds of times and prepares them
    once (:mod:`nucleai.refine.tune`).
    """

    lab: np.ndarray
    input_ids: np.ndarray
    absorbed: np.ndarray
    neighbour: np.ndarray
    share: np.ndarray

    @property
    def n(self):
        return len(self.input_ids) - 1


def prepare(labels):
    """Check and compact a label image, remove objects inside others (rule 1), measure shares.

    Raises
    ------
    InputError
        For a label image that is not usable (see :func:`nucleai.labels.check_labels`).
    """
    compacted = compact(check_labels(labels, "objects", ndim=2))
    lab, n = compacted.labels, len(compacted.ids)
    input_ids = np.concatenate([[0], compacted.ids])  # index = compact label, 0 = background
    lab, inside_target = remove_inside(lab, n)
    ring, a, b, count = contacts(lab, n)
    neighbour, share = _largest_neighbour(ring, a, b, count, n)
    return Prepared(lab=lab, input_ids=input_ids, absorbed=inside_target != np.arange(n + 1),
                    neighbour=neighbour, share=share)


def refine(labels, prob, params=None):
    """Apply nucleAIzer's five refinement rules, in the paper's order.

    Parameters
    ----------
    labels : (H, W) array of int, or Prepared
        Input objects (any ids, 0 = background), e.g. from RunStarConvex or a threshold; or
        what :func:`prepare` made of them.
    prob : (H, W) array of float
        Per-pixel nucleus probability in [0, 1] (:func:`nucleai.refine.unet.predict_probability`).
    params : mapping, optional
        Any of p1 ... p6 (see :mod:`nucleai.refine.params`); missing ones take the published
        values.

    Returns
    -------
    Refinement

    Raises
    ------
    InputError
        For a label image or probability map that is not usable (see :func:`check_inputs`) or
        parameters out of range.
    """
    params = check_parameters(params or {})
    prepared = labels if isinstance(labels, Prepared) else prepare(labels)
    prob = check_probability(prob, prepared.lab.shape)
    lab, n, absorbed, input_ids = prepared.lab, prepared.n, prepared.absorbed, prepared.input_ids
    fate = np.zeros(n + 1, np.int64)  # index into FATES, per compact label
    fate[absorbed] = FATES.index("inside")

    lab, group = merge_surrounded(lab, n, prepared.neighbour, prepared.share, params["p1"])
    merged = (group != np.arange(n + 1)) & ~absorbed
    fate[merged] = FATES.index("merged")

    lab, small = remove_small(lab, n, params["p2"])
    contour_before = contour_pixels(lab, n)
    present_before_move = np.bincount(lab.ravel(), minlength=n + 1) > 0
    lab, added, removed = move_contours(lab, n, prob, params["p3"], params["p4"], params["p5"])
    vanished = present_before_move & (np.bincount(lab.ravel(), minlength=n + 1) == 0)
    vanished[0] = False
    lab, improbable, mean_prob = remove_improbable(lab, n, prob, params["p6"])

    # the fate of a group (a label still present after rule 2) is shared by its members
    leader = np.where(absorbed, 0, group)
    for removed_by, name in ((small, "small"), (vanished, "vanished"), (improbable, "low_probability")):
        hit = removed_by[leader] & (leader > 0)
        fate[hit] = FATES.index(name)

    survivors = np.flatnonzero(np.bincount(lab.ravel(), minlength=n + 1)[1:] > 0) + 1
    new_id = np.zeros(n + 1, np.int64)
    new_id[survivors] = np.arange(1, len(survivors) + 1)
    output_of = np.where(absorbed, 0, new_id[leader])
    dtype = np.uint16 if len(survivors) <= np.iinfo(np.uint16).max else np.uint32
    shift = (added[survivors] + removed[survivors]) / np.maximum(contour_before[survivors], 1)
    return Refinement(
        labels=new_id[lab].astype(dtype),
        input_ids=input_ids[1:],
        output_of=output_of[1:],
        fate=np.array(FATES, dtype=object)[fate[1:]].astype(str),
        parents=input_ids[survivors],
        pixels_added=added[survivors],
        pixels_removed=removed[survivors],
        boundary_shift=shift.astype(np.float64),
        mean_probability=mean_prob[survivors],
        params=params,
    )
