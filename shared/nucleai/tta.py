"""Test-time augmentation (TTA) and the merging of instance segmentations by voting.

Moshkov et al. (2020) predict an image under flips and rotations, undo each transform on the
result, and merge the versions; on the DSB stage 2 images this raised the score of the best
DSB method from 0.633 to 0.644. The same merge combines any set of label images of one image,
for example the objects of two different segmentation methods, into a consensus.

Transforms
    The 8 symmetries of the square (the dihedral group): ``identity``, ``flip_y`` (upside down,
    rows reversed), ``flip_x`` (left-right), ``rot90``, ``rot180``, ``rot270`` (counter-clockwise
    as displayed, :func:`numpy.rot90`), ``transpose`` (rows <-> columns) and ``transverse`` (the
    anti-diagonal mirror). They act on the first two axes of an array (channels last stay
    where they are), are exact (no interpolation) and :func:`invert` undoes each one exactly,
    for non-square images too (``rot90``, ``rot270``, ``transpose`` and ``transverse`` swap
    height and width). The paper's set, the default (:data:`PAPER_TRANSFORMS`), is the identity,
    the two flips and the three rotations.

The merge (:func:`merge_instances`), given N label images of the same image ("versions")
    1. Matching: objects of two different versions match when their mask IoU is >= 0.5 and each
       is the other's best match in that version (highest IoU, ties to the lower id). Above 0.5
       an object can overlap at most one object of another version that much, so the
       best-match rule only matters for the threshold itself and for thresholds below 0.5.
    2. Grouping: matches link objects into groups (connected components over all versions);
       a group is one object of the merged result. Its *votes* are the number of versions with
       a member in it.
    3. Object vote: a group is kept when its votes reach ``min_votes``. The default
       (:func:`default_min_votes`) is *at least half*, ``ceil(N / 2)``: a majority for an odd N
       (2 of 3), and for an even N a tie counts as kept (3 of 6, 4 of 8, 1 of 2). Why ties are
       kept: the TTA versions come from one network and err together, and the bundled model's
       errors are mostly misses (version 1 of fluo_nuclei, with which the figures here were
       measured: precision 0.94, recall 0.87 at IoU 0.5 on the DSB validation images), so an
       object half of the versions find is more often a nucleus than an artefact. On 60 DSB
       training images, six transforms scored DSB 0.581 with ties kept,
       0.580 with ties kept only when the untransformed image found the object, and 0.578 with
       a strict majority (4 of 6); the validation images rank them the same way (0.621,
       0.618, 0.613). With two object sets from different methods the default keeps every
       object either found, matched objects merged instead of duplicated; ``min_votes=2``
       keeps only the objects both found (a consensus).
    4. Pixel vote: a pixel belongs to a kept group when at least half of the group's members
       cover it (``2 * covering >= votes``): the members' binary masks averaged and thresholded
       at 0.5 inclusively, as for probability maps; for a group found by two versions, the
       union of the two masks. Requiring more than half instead shrinks every object found by
       an even number of versions below its members' typical size (DSB 0.614 instead of 0.621
       on the validation images with six transforms).
    5. No overlaps: a pixel claimed by two groups goes to the group more versions assign it to,
       then to the group with more votes, then to the group numbered first. Groups left without
       pixels are dropped.
    Merged objects are numbered 1..n in the order of first appearance: version 0's objects in
    their id order, then objects version 0 did not find in version 1's order, and so on, so
    with the identity first the result follows the untransformed prediction's order.
    Agreement per object: ``votes`` and ``mean_iou``, the mean over the group's members of the
    IoU of the member's mask with the merged mask (1: every version that found the object
    drew the same outline as the result).

Options
    :func:`merge_instances` takes a :class:`MergeOptions` (``min_votes``, ``iou_threshold``) and
    :func:`segment_tta` a :class:`TTAOptions` (the transforms too) with the
    :class:`nucleai.predict.SegmentOptions` of every version. Each checks itself once; the vote
    is checked against the number of versions in :meth:`MergeOptions.votes_needed` only.

Speed
    Everything is derived from sparse overlap counts, as in :mod:`nucleai.metrics`: one
    ``np.bincount`` (or ``np.unique`` for sparse ids) of the paired object indices of the
    pixels per pair of versions, then integer lookups per pixel; nothing loops over objects in
    Python. The cost grows with the pixels and with N squared, not with the object count. On
    the 603 x 1272 DSB validation image the six versions merged in 0.36 s against 12.1 s for
    their six predictions (2 cores shared with a training job); ``benchmarks/tta.py`` times a
    1024 x 1024 image.

Batching
    The versions' network inputs of one size go through the network as one batch when the
    model computes in bfloat16 and the batch holds at most :data:`BATCH_PIXELS` pixels.
    Measured on an idle 2-core machine, six versions in one batch take 1/1.08 of the time of
    six passes at 512 px and 1/1.03 at 1024 px: one image already keeps the cores busy, so a
    batch saves only the per-call overhead, which matters most for small images.
    In bfloat16 a batch gives exactly the outputs of single passes; in float32 oneDNN's batched
    convolutions round differently (~1e-5), which would change float32 labels, so float32
    versions go through one by one and stay identical to :func:`nucleai.predict.segment`'s.

An alternative we did not take: averaging the network's outputs (probabilities and, with the
rays reordered to match each transform, distances) over the transforms and running one NMS.
The network predicts on a grid of every second pixel from the top-left, and a flip does not map
that grid onto itself (cell ``i`` of a flipped image of even width sits at pixel
``W - 1 - 2 i`` of the original, between two cells), so the maps would have to be resampled;
and it averages before the NMS, a different method from the paper's vote on finished objects.
Merging label images also works for any segmentation method, which the consensus of two
modules needs.
"""
from dataclasses import dataclass, replace

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .errors import InputError
from .labels import check_labels, compact
from .options import check_number
from .predict import SegmentOptions, segment, segment_steps
from .runtime import BFLOAT16, FLOAT32
from .timing import timed

#: All 8 transforms, in the order the CLI and the CellProfiler module list them.
TRANSFORMS = (
    "identity", "flip_y", "flip_x", "rot90", "rot180", "rot270", "transpose", "transverse",
)
#: Moshkov et al.'s set: the image as it is, two flips and three rotations.
PAPER_TRANSFORMS = ("identity", "flip_y", "flip_x", "rot90", "rot180", "rot270")
#: Each transform's inverse.
INVERSE = {
    "identity": "identity", "flip_y": "flip_y", "flip_x": "flip_x", "rot90": "rot270",
    "rot180": "rot180", "rot270": "rot90", "transpose": "transpose", "transverse": "transverse",
}
#: Most pixels of one batch of versions through the network (bfloat16 only; see Batching): six
#: 512 px versions, or two of 1024 px; ~0.35 GB of network memory at ~160 bytes per pixel.
BATCH_PIXELS = 2**21
#: Match threshold of the paper: objects of two versions are the same when IoU >= this.
IOU_THRESHOLD = 0.5
#: Pairs of versions whose object counts multiply to at most this are counted with a dense
#: ``np.bincount`` (fast, memory ~8 bytes per cell); larger ones with ``np.unique``.
_DENSE_PAIR_LIMIT = 1 << 22


# --------------------------------------------------------------------------------------------
# Transforms


def check_transforms(transforms):
    """Validate transform names.

    Parameters
    ----------
    transforms : str or sequence of str
        Names from :data:`TRANSFORMS`, or one comma-separated string of them.

    Returns
    -------
    tuple of str

    Raises
    ------
    InputError
        For an empty list, an unknown name (the message lists the valid ones) or a name given
        twice (a repeated version would count its vote twice).
    """
    if isinstance(transforms, str):
        transforms = [t.strip() for t in transforms.split(",") if t.strip()]
    transforms = tuple(transforms)
    if not transforms:
        raise InputError(f"no transforms given; choose from {', '.join(TRANSFORMS)}", "transforms")
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown:
        raise InputError(
            f"unknown transform {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(TRANSFORMS)}",
            "transforms",
        )
    repeated = sorted({t for t in transforms if transforms.count(t) > 1})
    if repeated:
        raise InputError(f"transform {', '.join(repeated)} given more than once", "transforms")
    return transforms


def transform(array, name):
    """Apply one of the 8 transforms to the first two axes of an array.

    Parameters
    ----------
    array : (H, W, ...) array
        An image (channels last), a label image or a probability map.
    name : str
        One of :data:`TRANSFORMS`.

    Returns
    -------
    array
        A view: (H, W, ...) for identity, flips and rot180, (W, H, ...) for the others.
    """
    array = np.asarray(array)
    if array.ndim < 2:
        raise InputError(f"transforms need an array of at least 2 dimensions, got {array.shape}")
    if name == "identity":
        return array
    if name == "flip_y":
        return array[::-1]
    if name == "flip_x":
        return array[:, ::-1]
    if name == "rot90":
        return np.rot90(array, 1, axes=(0, 1))
    if name == "rot180":
        return np.rot90(array, 2, axes=(0, 1))
    if name == "rot270":
        return np.rot90(array, 3, axes=(0, 1))
    if name == "transpose":
        return np.swapaxes(array, 0, 1)
    if name == "transverse":
        return np.swapaxes(array[::-1, ::-1], 0, 1)
    check_transforms([name])  # raises, naming the valid transforms
    raise AssertionError(name)


def invert(array, name):
    """Undo :func:`transform` ``(., name)``: ``invert(transform(a, t), t)`` equals ``a``."""
    if name not in INVERSE:
        check_transforms([name])
    return transform(array, INVERSE[name])


# --------------------------------------------------------------------------------------------
# Merging label images


@dataclass(frozen=True, eq=False)
class MergedInstances:
    """Result of :func:`merge_instances`.

    Attributes
    ----------
    labels : (H, W) uint16 or uint32 array
        0 = background, objects 1..n, no overlaps.
    votes : (n,) int64 array
        Number of versions that found each object.
    mean_iou : (n,) float64 array
        Mean IoU of the members' masks with the merged mask.
    n_versions : int
        Number of label images merged.
    min_votes : int
        The object vote used.
    """

    labels: np.ndarray
    votes: np.ndarray
    mean_iou: np.ndarray
    n_versions: int
    min_votes: int

    @property
    def count(self):
        return len(self.votes)


def default_min_votes(n_versions):
    """The default ``min_votes``: at least half of the versions, ``ceil(n_versions / 2)``."""
    return (n_versions + 1) // 2


@dataclass(frozen=True)
class MergeOptions:
    """How :func:`merge_instances` votes, checked once here (the only check of ``min_votes``).

    Attributes
    ----------
    min_votes : int, optional
        Versions that must find an object for it to be kept, from 1 to the number of versions;
        None: at least half (:func:`default_min_votes`).
    iou_threshold : float
        Objects of two versions match when their IoU is at least this, in (0, 1].

    Raises
    ------
    InputError
        With ``field`` the attribute at fault; :meth:`votes_needed` once the number of versions
        is known.
    """

    min_votes: int = None
    iou_threshold: float = IOU_THRESHOLD

    def __post_init__(self):
        if self.min_votes is not None:
            object.__setattr__(self, "min_votes", check_number(self.min_votes, "min_votes", low=1, integer=True))
        object.__setattr__(self, "iou_threshold", check_number(
            self.iou_threshold, "iou_threshold", low=0, high=1, low_open=True))

    def votes_needed(self, n_versions):
        """The object vote among ``n_versions`` versions: ``min_votes``, or the default."""
        if self.min_votes is None:
            return default_min_votes(n_versions)
        if self.min_votes > n_versions:
            raise InputError(
                f"min_votes must be from 1 to {n_versions} (the number of versions), got {self.min_votes}",
                "min_votes",
            )
        return self.min_votes


def _pair_counts(index_a, n_a, index_b, n_b):
    """Sparse overlap of two compact index images: object indices (1-based) and pixel counts."""
    stride = n_b + 1
    keys = index_a.astype(np.int64) * stride + index_b
    if (n_a + 1) * stride <= _DENSE_PAIR_LIMIT:
        counts = np.bincount(keys, minlength=(n_a + 1) * stride)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    a, b = np.divmod(keys, stride)
    both = (a > 0) & (b > 0)
    return a[both], b[both], counts[both]


def _best_for_first(first, second, iou):
    """For each pair: is it the best (highest IoU, then lowest ``second``) of its ``first``?"""
    order = np.lexsort((second, -iou, first))
    ordered = first[order]
    head = np.ones(ordered.size, bool)
    head[1:] = ordered[1:] != ordered[:-1]
    best = np.zeros(first.size, bool)
    best[order[head]] = True
    return best


def merge_instances(label_images, options=MergeOptions()):
    """Merge several label images of one image into one by matching and voting.

    The rules (matching, object vote, pixel vote, overlaps, numbering) are in the module
    docstring.

    Parameters
    ----------
    label_images : sequence of (H, W) int arrays
        The versions, all in the same frame (transforms already undone), any integer dtypes and
        ids, 0 = background. Each is a proper label image (no overlaps within it).
    options : MergeOptions
        The object vote and the match IoU.

    Returns
    -------
    MergedInstances

    Raises
    ------
    InputError
        For no label images, non-integer or negative labels, images of different shapes, or a
        ``min_votes`` above the number of versions.
    """
    label_images = list(label_images)
    if not label_images:
        raise InputError("no label images to merge")
    first = check_labels(label_images[0], "label image 0", ndim=2)
    images = [first] + [check_labels(labels, f"label image {i}", shape=first.shape)
                        for i, labels in enumerate(label_images[1:], 1)]
    n_versions = len(images)
    min_votes = options.votes_needed(n_versions)
    iou_threshold = options.iou_threshold
    shape = images[0].shape

    compacted = [compact(labels) for labels in images]
    areas = [c.areas for c in compacted]
    index = [c.labels.ravel() for c in compacted]
    sizes = np.array([a.size for a in areas])
    offsets = np.concatenate([[0], np.cumsum(sizes)])  # global index = offsets[v] + local - 1
    n_total = int(offsets[-1])
    version_of = np.repeat(np.arange(n_versions), sizes)

    # 1. matching: mutual best pairs with IoU >= threshold, for every pair of versions
    edges_a, edges_b = [], []
    for a in range(n_versions):
        for b in range(a + 1, n_versions):
            ia, ib, inter = _pair_counts(index[a], sizes[a], index[b], sizes[b])
            iou = inter / (areas[a][ia - 1] + areas[b][ib - 1] - inter)
            close = iou >= iou_threshold
            ia, ib, iou = ia[close], ib[close], iou[close]
            mutual = _best_for_first(ia, ib, iou) & _best_for_first(ib, ia, iou)
            edges_a.append(offsets[a] + ia[mutual] - 1)
            edges_b.append(offsets[b] + ib[mutual] - 1)

    # 2. groups, numbered by their first member (version order, then id order)
    edges_a = np.concatenate(edges_a or [np.zeros(0, np.int64)])
    edges_b = np.concatenate(edges_b or [np.zeros(0, np.int64)])
    graph = coo_matrix((np.ones(edges_a.size), (edges_a, edges_b)), shape=(n_total, n_total))
    n_groups, group = connected_components(graph, directed=False)
    first = np.full(n_groups, n_total)
    np.minimum.at(first, group, np.arange(n_total))
    rank = np.empty(n_groups, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n_groups)
    group = rank[group]
    # votes: distinct versions per group
    distinct = np.unique(group * n_versions + version_of)
    votes = np.bincount(distinct // n_versions, minlength=n_groups)

    # 3. object vote; per version, each pixel's kept group (+1), 0 for none
    kept = votes >= min_votes
    group_maps = []
    for v in range(n_versions):
        lut = np.zeros(sizes[v] + 1, np.int32)
        mine = group[offsets[v] : offsets[v + 1]]
        lut[1:] = np.where(kept[mine], mine + 1, 0)
        group_maps.append(lut[index[v]])
    group_maps = np.stack(group_maps)
    foreground = np.flatnonzero(group_maps.any(axis=0))
    group_maps = group_maps[:, foreground]

    # 4. + 5. pixel vote and overlaps, per pixel over the (few) groups present there
    votes_of = np.concatenate([[1], votes])  # indexed by group + 1
    owner = np.zeros(foreground.size, np.int32)
    owner_covering = np.zeros(foreground.size, np.int32)
    owner_votes = np.zeros(foreground.size, np.int64)
    for v in range(n_versions):
        candidate = group_maps[v]
        covering = np.zeros(foreground.size, np.int32)
        for w in range(n_versions):
            covering += group_maps[w] == candidate
        group_votes = votes_of[candidate]
        better = (candidate > 0) & (2 * covering >= group_votes) & (
            (covering > owner_covering)
            | (covering == owner_covering)
            & ((group_votes > owner_votes) | (group_votes == owner_votes) & (candidate < owner))
        )
        owner = np.where(better, candidate, owner)
        owner_covering = np.where(better, covering, owner_covering)
        owner_votes = np.where(better, group_votes, owner_votes)

    # renumber the groups that own pixels 1..n, keeping their order
    present = np.bincount(owner, minlength=n_groups + 1)
    present[0] = 0
    survivors = np.flatnonzero(present)  # group + 1, increasing
    n_objects = survivors.size
    dtype = np.uint16 if n_objects <= np.iinfo(np.uint16).max else np.uint32
    final_of = np.zeros(n_groups + 1, np.int64)
    final_of[survivors] = np.arange(1, n_objects + 1)
    labels = np.zeros(int(np.prod(shape)), dtype)
    labels[foreground] = final_of[owner]
    final_area = present[survivors]

    # agreement: IoU of every member with its merged object
    iou_sum = np.zeros(n_objects + 1)
    members = np.zeros(n_objects + 1, np.int64)
    for v in range(n_versions):
        target = np.zeros(sizes[v] + 1, np.int64)
        target[1:] = final_of[group[offsets[v] : offsets[v + 1]] + 1]  # 0: not kept
        on_target = (labels == target[index[v]]) & (index[v] > 0)
        inter = np.bincount(index[v][on_target], minlength=sizes[v] + 1)[1:]
        fin = target[1:]
        counted = fin > 0
        union = areas[v][counted] + final_area[fin[counted] - 1] - inter[counted]
        np.add.at(iou_sum, fin[counted], inter[counted] / union)
        np.add.at(members, fin[counted], 1)
    return MergedInstances(
        labels=labels.reshape(shape),
        votes=votes[survivors - 1].astype(np.int64),
        mean_iou=iou_sum[1:] / np.maximum(members[1:], 1),
        n_versions=n_versions,
        min_votes=int(min_votes),
    )


def merge_probability_maps(maps):
    """Average probability maps (transforms undone), the paper's merge of semantic outputs.

    Returns
    -------
    (H, W) float32 array
    """
    maps = [np.asarray(m, np.float32) for m in maps]
    if not maps:
        raise InputError("no probability maps to merge")
    if any(m.shape != maps[0].shape for m in maps):
        raise InputError(
            f"probability maps of different shapes: {sorted({m.shape for m in maps})}"
        )
    return np.mean(maps, axis=0, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Segmentation under test-time augmentation


@dataclass(frozen=True)
class TTAOptions:
    """Which transforms :func:`segment_tta` predicts and how it merges them, checked once here.

    Attributes
    ----------
    transforms : sequence of str or comma-separated str
        Names from :data:`TRANSFORMS` (stored as a tuple); default the paper's six.
    min_votes : int, optional
        Versions that must find an object, 1 ... ``len(transforms)``; default at least half.
    iou_threshold : float
        IoU at which objects of two versions are the same object, in (0, 1].

    Raises
    ------
    InputError
        With ``field`` the attribute at fault (the vote is checked by :class:`MergeOptions`).
    """

    transforms: tuple = PAPER_TRANSFORMS
    min_votes: int = None
    iou_threshold: float = IOU_THRESHOLD

    def __post_init__(self):
        object.__setattr__(self, "transforms", check_transforms(self.transforms))
        merge = self.merge
        merge.votes_needed(len(self.transforms))
        object.__setattr__(self, "min_votes", merge.min_votes)
        object.__setattr__(self, "iou_threshold", merge.iou_threshold)

    @property
    def merge(self):
        """The :class:`MergeOptions` of the versions' merge."""
        return MergeOptions(self.min_votes, self.iou_threshold)


@dataclass(frozen=True, eq=False)
class TTASegmentation:
    """Result of :func:`segment_tta`.

    Attributes
    ----------
    labels, votes, mean_iou
        As in :class:`MergedInstances`.
    transforms : tuple of str
        The versions, in order.
    counts : tuple of int
        Objects found in each version.
    min_votes : int
    prob_map : (H, W) float32 array or None
        The versions' probability maps (transforms undone), averaged; when asked for.
    prob_thresh, nms_thresh, scale : float
        What every version used.
    n_tiles : (ny, nx)
        Tiles the first version ran on.
    empty_reason : str or None
        Why the image has nothing to segment (:attr:`nucleai.predict.Segmentation.empty_reason`;
        a transform changes no pixel value, so every version agrees), else None.
    """

    labels: np.ndarray
    votes: np.ndarray
    mean_iou: np.ndarray
    transforms: tuple
    counts: tuple
    min_votes: int
    prob_map: np.ndarray
    prob_thresh: float
    nms_thresh: float
    scale: float
    n_tiles: tuple
    empty_reason: str = None

    @property
    def count(self):
        return len(self.votes)


def _batches_versions(model, shape):
    """Whether versions of an image of ``shape`` go through the network in batches: bfloat16
    models, and at least two versions fit in :data:`BATCH_PIXELS` (else each version is
    segmented in turn, holding one version's arrays at a time)."""
    return getattr(model, "precision", FLOAT32) == BFLOAT16 and 2 * shape[0] * shape[1] <= BATCH_PIXELS


def _segment_together(steps, model, timings):
    """Run :func:`nucleai.predict.segment_steps` generators ({name: steps}) side by side: the
    network inputs they wait on go through the network in batches of one size, up to
    :data:`BATCH_PIXELS` (only for a model :func:`_batches_versions` batches; see Batching);
    returns {name: Segmentation}."""
    results, waiting = {}, {}

    def advance(name, maps=None):
        try:
            waiting[name] = steps[name].send(maps) if maps is not None else next(steps[name])
        except StopIteration as done:
            results[name] = done.value
            waiting.pop(name, None)

    for name in steps:
        advance(name)
    while waiting:
        by_shape = {}
        for name, x in waiting.items():
            by_shape.setdefault(x.shape, []).append(name)
        for shape, names in by_shape.items():
            per_batch = max(1, BATCH_PIXELS // (shape[0] * shape[1]))
            for start in range(0, len(names), per_batch):
                group = names[start : start + per_batch]
                with timed(timings, "network"):
                    if len(group) == 1:
                        outputs = [model.predict_maps(waiting[group[0]])]
                    else:
                        probs, dists = model.predict_maps_batch(np.stack([waiting[name] for name in group]))
                        outputs = list(zip(probs, dists))
                for name, maps in zip(group, outputs):
                    advance(name, maps)
    return results


def segment_tta(image, model, options=TTAOptions(), segment_options=SegmentOptions(), *, mask=None,
                return_prob_map=False, timings=None):
    """Segment an image under test-time augmentation: predict each transform, undo it, merge.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    model : nucleai.models.StarConvexModel
    options : TTAOptions
        The transforms and the merge.
    segment_options : nucleai.predict.SegmentOptions
        How each version is segmented (:func:`nucleai.predict.segment`). With ``object_diameter="auto"`` the first version estimates the scale and the
        others reuse it, so all versions see the same object size (and the first pass is not
        repeated per version).
    mask : (H, W) bool array, optional
        Transformed with the image (see :func:`nucleai.predict.segment`).
    return_prob_map : bool
        Also return the averaged probability map.
    timings : dict, optional
        Seconds are added under :func:`nucleai.predict.segment`'s stages (summed over the
        versions), ``"transform"`` and ``"merge"``.

    Returns
    -------
    TTASegmentation

    Raises
    ------
    InputError
        For a mask of another shape than the image, and everything
        :func:`nucleai.predict.segment` and :func:`merge_instances` refuse.
    """
    image = np.asarray(image)
    if mask is not None and np.shape(mask) != image.shape[:2]:
        raise InputError(f"mask has shape {np.shape(mask)} but the image has {image.shape[:2]}")
    together = _batches_versions(model, image.shape[:2])
    first, results, pending = None, {}, {}
    for name in options.transforms:
        with timed(timings, "transform"):
            x = transform(image, name)
            x_mask = None if mask is None else transform(mask, name)
        if first is None and segment_options.object_diameter is not None:
            # the first version estimates the scale (a first pass); the others reuse it
            first = results[name] = segment(x, model, segment_options, mask=x_mask, return_prob_map=return_prob_map,
                                            timings=timings)
            segment_options = replace(segment_options, object_diameter=None, model_diameter=None, scale=first.scale)
        elif together:  # held back, to go through the network with the other versions
            pending[name] = segment_steps(x, model, segment_options, mask=x_mask, return_prob_map=return_prob_map,
                                          timings=timings)
        else:
            results[name] = segment(x, model, segment_options, mask=x_mask, return_prob_map=return_prob_map,
                                    timings=timings)
    results.update(_segment_together(pending, model, timings))
    versions, maps, counts = [], [], []
    for name in options.transforms:
        result = results[name]
        with timed(timings, "transform"):
            versions.append(invert(result.labels, name))
            if return_prob_map:
                maps.append(invert(result.prob_map, name))
        counts.append(result.count)
    first = results[options.transforms[0]]
    with timed(timings, "merge"):
        merged = merge_instances(versions, options.merge)
        prob_map = merge_probability_maps(maps) if return_prob_map else None
    return TTASegmentation(
        labels=merged.labels,
        votes=merged.votes,
        mean_iou=merged.mean_iou,
        transforms=options.transforms,
        counts=tuple(counts),
        min_votes=merged.min_votes,
        prob_map=prob_map,
        prob_thresh=first.prob_thresh,
        nms_thresh=first.nms_thresh,
        scale=first.scale,
        n_tiles=first.n_tiles,
        empty_reason=first.empty_reason,
    )
