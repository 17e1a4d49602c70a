"""From an image to labelled nuclei with a star-convex model: plain functions on numpy arrays.

The steps, each a function here, in the order :func:`segment` runs them::

    select_channels -> normalize -> rescale -> pad -> network (tiled) -> candidates
        -> non-maximum suppression -> polygons back to the original scale -> labels

What is done exactly as ``StarDist2D.predict_instances`` does it (so that labels agree with
stardist's for the same model, thresholds and image):

- Normalisation: percentiles ``pmin``/``pmax`` (default 1 and 99.8) of the image, computed per
  channel on the image's own dtype in float64, then ``(x - lo) / (hi - lo + 1e-20)`` in float32 (csbdeep's
  ``normalize``, the call every stardist example makes before ``predict_instances``).
- Rescaling (``scale``): ``scipy.ndimage.zoom(x, scale, order=1)`` of the normalised image;
  the polygons found are mapped back by dividing centres and ray lengths by ``scale`` and are
  drawn at the original size (no resampling of labels).
- Padding: reflect-padding at the bottom/right end to multiples of ``unet_pool ** depth * grid``.
- Candidates: grid cells with probability ``> prob_thresh``, excluding ``b = 2`` cells at each
  border of the *padded* output, and cells whose pixel position lies outside the (scaled)
  image: stardist's sparse prediction rule (its default). Ray lengths are clipped below at
  1e-3. Candidates are ordered row-major, then by descending probability (``np.argsort`` of the
  same array, so ties break identically).

Every parameter of the chain (thresholds, percentiles, object size, tiles, channel) is a field
of :class:`SegmentOptions`, checked once when it is made; :func:`segment` takes one.

What is ours: the forward pass through one ``tf.function`` (:mod:`nucleai.models`), the tiling,
the non-maximum suppression (:mod:`nucleai.nms`) and the rendering (:mod:`nucleai.geometry`).

Tiling, bounded memory
    Large inputs are cut into a grid of tiles, each predicted with ``overlap`` pixels of context
    on every side (the network's receptive field, measured once per model), and only the
    tile's own core is kept. Per tile only the candidates (probability above the threshold)
    are kept, with their rays; the dense ray map of the whole image is never built. Memory is
    therefore the network's on one tile, plus the probability map at grid resolution (4 bytes
    per ``grid[0] * grid[1]`` pixels), plus the candidates. The network needs ~300-400 bytes
    per input pixel (float32, measured: 1.2 GB at 2048 x 2048, 2.0 GB at 2160 x 2560), and a
    tile costs time (its overlap is predicted twice), so ``tiles="auto"`` tiles only an image
    whose padded size exceeds :data:`AUTO_TILE_PIXELS` (memory_tiles), with the fewest tiles
    whose cores stay within it: every common camera field (2048 x 2048, 2160 x 2560,
    2304 x 2304) is predicted whole. Because candidates are put back in row-major order before
    the NMS, tiled and untiled runs differ only where the network's outputs differ (they agree
    to float precision when the overlap covers the receptive field).

Object size
    The network sees objects at the size it was trained on best. ``scale`` multiplies the image
    size before prediction (stardist's ``scale``). Alternatively ``object_diameter`` (pixels in
    this image) with ``model_diameter`` (the training objects' median diameter, from the model's
    nucleai.json when not given) sets ``scale = model_diameter / object_diameter``;
    ``object_diameter="auto"`` estimates it from a first pass at scale 1 (nucleAIzer's rule:
    median equivalent diameter of the objects found).
"""
from dataclasses import dataclass, replace

import numpy as np
import scipy.ndimage as ndi

from .errors import InputError
from .options import check_number
from .timing import timed

#: Default normalisation percentiles (stardist's examples, the nucleAIzer papers).
PERCENTILES = (1.0, 99.8)
#: Grid cells at the border of the padded output that never seed an object (stardist's ``b``).
BORDER = 2
#: ``tiles="auto"`` predicts an image of at most this many (padded) pixels whole, and keeps
#: every tile's core within it otherwise: ~2.3 GB of network memory in float32.
AUTO_TILE_PIXELS = 6 * 2**20
#: The most tiles per axis ``tiles="auto"`` considers (a 150,000-pixel side).
MAX_AUTO_TILES = 64
#: Ray lengths are clipped below at this (stardist does the same).
MIN_DIST = 1e-3
#: A rescaled image may not exceed this many pixels (a typo in ``scale`` should not eat the RAM).
MAX_SCALED_PIXELS = 2**28
#: Estimated diameters are trusted from this many objects on (else scale 1 is kept).
MIN_OBJECTS_FOR_DIAMETER = 3

#: Why an image has nothing to segment (:attr:`Segmentation.empty_reason`): every pixel is 0,
#: the pixels have one value (or their normalisation percentiles are equal), the mask excludes
#: every pixel. Such an image is a normal result with no objects, not an error.
BLANK, CONSTANT, ALL_MASKED = "blank", "constant", "all masked"


class NothingToSegment(InputError):
    """An image with no contrast to segment: :func:`normalize` cannot stretch it.

    An :class:`~nucleai.errors.InputError` for callers that need a contrast (training, threshold
    tuning); :func:`segment` and refinement catch it and give no objects with ``reason``.

    Attributes
    ----------
    reason : str
        :data:`BLANK` or :data:`CONSTANT`.
    """

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Input preparation


def select_channels(image, n_channel_in, channel=None):
    """The image as (H, W, C) with the channels the model takes.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        A grey image or a colour/multi-channel image with channels last.
    n_channel_in : int
        Channels the model takes.
    channel : int or None
        For a one-channel model and a multi-channel image: the channel to use (0-based).
        Without it, a multi-channel image is accepted only when its colour channels are
        identical (grey stored as RGB); an alpha channel (4th of 4) is ignored for that test.
        A three-channel (RGB) model takes any image as nucleAIzer's models do, and as
        :mod:`nucleai.train` prepares training images: a grey image (or the chosen channel)
        is repeated into three channels, an alpha channel (4th of 4) is dropped.

    Returns
    -------
    (H, W, n_channel_in) array, same dtype.

    Raises
    ------
    InputError
        For an image that is not 2-D (+ channels), an empty image, a channel out of range, or
        a channel count the model cannot take.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InputError(
            f"image has shape {image.shape}; a 2-D image (H, W) or (H, W, channels) is expected"
        )
    if image.size == 0:
        raise InputError(f"image is empty (shape {image.shape})")
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise InputError(f"image has dtype {image.dtype}; a numeric image is expected")
    n_image = 1 if image.ndim == 2 else image.shape[2]
    if channel is not None:
        if image.ndim == 2:
            if channel != 0:
                raise InputError(f"channel {channel} requested but the image is grey: its only channel is 0 "
                                 "(channels are counted from 0)", "channel")
            image = image[..., np.newaxis]
        else:
            if not 0 <= channel < n_image:
                raise InputError(
                    f"channel {channel} requested but the image has {n_image} channels, 0 to "
                    f"{n_image - 1} (channels are counted from 0)",
                    "channel",
                )
            image = image[..., channel : channel + 1]
        n_image = 1
    elif image.ndim == 2:
        image = image[..., np.newaxis]
    if n_image == n_channel_in:
        return image
    if n_channel_in == 1:
        colour = image[..., :3] if n_image == 4 else image
        if all(np.array_equal(colour[..., 0], colour[..., k]) for k in range(1, colour.shape[2])):
            return image[..., :1]
        raise InputError(
            f"the model takes 1 channel but the image has {n_image} different channels; "
            "choose the channel to segment",
            "channel",
        )
    if n_channel_in == 3 and n_image == 1:
        return np.repeat(image, 3, axis=2)
    if n_channel_in == 3 and n_image == 4:
        return image[..., :3]
    raise InputError(
        f"the model takes {n_channel_in} channels but the image has {n_image}"
    )


def normalize(image, pmin=PERCENTILES[0], pmax=PERCENTILES[1], mask=None):
    """Percentile normalisation per channel, as csbdeep's ``normalize`` (stardist's examples).

    Parameters
    ----------
    image : (H, W, C) array
    pmin, pmax : float
        Percentiles (0-100, ``pmin < pmax``, as :class:`SegmentOptions` checks them) mapped to 0
        and 1; values outside are not clipped.
    mask : (H, W) bool array, optional
        Compute the percentiles over these pixels only.

    Returns
    -------
    (H, W, C) float32 array

    Raises
    ------
    InputError
        For non-finite pixels.
    NothingToSegment
        For a (nearly) constant channel (its two percentiles are equal: nothing to segment, and
        dividing by their difference would only amplify noise); its ``reason`` says whether the
        pixels are all 0 (:data:`BLANK`) or not (:data:`CONSTANT`).
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"normalize expects (H, W, C), got shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise InputError("image has NaN or infinite pixels")
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[2]):
        channel = image[..., c]
        values = channel if mask is None else channel[mask]
        lo, hi = np.percentile(values, (pmin, pmax))
        if not hi > lo:
            which = "" if image.shape[2] == 1 else f"channel {c}: "
            raise NothingToSegment(
                f"{which}image is constant or nearly so (its {pmin:g}th and {pmax:g}th "
                f"percentiles are both {lo:g}); there is nothing to segment",
                CONSTANT if values.any() else BLANK,
            )
        lo, hi = np.float32(lo), np.float32(hi)
        out[..., c] = (channel.astype(np.float32, copy=False) - lo) / (hi - lo + np.float32(1e-20))
    return out


def rescale(image, scale):
    """Zoom an (H, W, C) image by ``scale`` in Y and X (linear interpolation, as stardist)."""
    if scale == 1:
        return image
    return ndi.zoom(image, (scale, scale, 1), order=1)


def scaled_shape(shape, scale):
    """Shape (H, W) after :func:`rescale` (scipy rounds)."""
    return tuple(int(round(s * scale)) for s in shape)


def check_scale(scale, shape, field="scale"):
    """A (positive, checked) scale factor that leaves an image of ``shape`` (H, W) a sane size.

    Raises
    ------
    InputError
        With ``field``, when the scaled image has no pixels or more than
        :data:`MAX_SCALED_PIXELS`.
    """
    new = scaled_shape(shape, scale)
    if min(new) < 1:
        raise InputError(f"scale {scale:g} shrinks the {shape[0]}x{shape[1]} image to nothing", field)
    if new[0] * new[1] > MAX_SCALED_PIXELS:
        raise InputError(
            f"scale {scale:g} enlarges the {shape[0]}x{shape[1]} image to {new[0]}x{new[1]} "
            "pixels; is the scale (or the object diameter) right?",
            field,
        )
    return float(scale)


def pad_to_multiple(x, div_by):
    """Reflect-pad (H, W, C) at the bottom/right end to multiples of ``div_by`` (stardist)."""
    pad = [(0, (-s) % d) for s, d in zip(x.shape[:2], div_by)] + [(0, 0)]
    if not any(p[1] for p in pad):
        return x
    return np.pad(x, pad, mode="reflect")


# --------------------------------------------------------------------------------------------
# Tiling


def parse_tiles(text):
    """``"auto"``, ``"YxX"`` (e.g. ``"2x3"``) or a pair of ints -> ``"auto"`` or (ny, nx)."""
    if isinstance(text, str):
        if text.strip().lower() == "auto":
            return "auto"
        parts = text.lower().replace("*", "x").split("x")
    else:
        parts = list(text)
    try:
        tiles = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        tiles = ()
    if len(tiles) != 2 or min(tiles) < 1:
        raise InputError(
            f"tiles must be 'auto' or YxX with whole numbers >= 1 (e.g. 2x2), got {text!r}", "tiles"
        )
    return tiles


def auto_tiles(shape, tile_side):
    """Fewest tiles per axis that keep each tile's core at most ``tile_side`` pixels."""
    return tuple(max(1, -(-int(s) // int(tile_side))) for s in shape)


def memory_tiles(shape, overlap, max_pixels=AUTO_TILE_PIXELS):
    """Tiles (ny, nx) for an image of ``shape`` (padded) pixels: (1, 1) when it holds at most
    ``max_pixels``; otherwise, of the grids whose tile windows (core plus ``overlap`` (oy, ox)
    on each inner side; ``overlap()`` is called only then) hold at most ``max_pixels`` each,
    the one whose windows hold the fewest pixels together (the network's work)."""
    height, width = (int(s) for s in shape)
    if height * width <= max_pixels:
        return (1, 1)
    oy, ox = (2 * int(o) for o in (overlap() if callable(overlap) else overlap))
    best = None
    for ny in range(1, MAX_AUTO_TILES + 1):
        window_y = -(-height // ny) + (oy if ny > 1 else 0)
        row_cap = max_pixels // window_y  # widest window that fits beside window_y
        if width <= row_cap:
            nx, window_x = 1, width
        elif row_cap - ox >= 1:
            nx = -(-width // (row_cap - ox))
            window_x = -(-width // nx) + ox
        else:
            continue
        work = ny * nx * window_y * window_x
        if best is None or work < best[0]:
            best = (work, (ny, nx))
    if best is None or max(best[1]) > MAX_AUTO_TILES:
        raise InputError(f"a {height}x{width} image needs more than {MAX_AUTO_TILES} tiles per axis to "
                         f"keep each within {max_pixels} pixels; give the tiles yourself", "tiles")
    return best[1]


def tile_layout(shape, n_tiles, div_by, overlap):
    """Tiles covering a padded image: per tile, the input window and its core.

    Parameters
    ----------
    shape : (H, W)
        Padded image shape, multiples of ``div_by``.
    n_tiles : (ny, nx)
        Requested tiles per axis (reduced where the image has fewer blocks than that).
    div_by : (dy, dx)
        Block size: tiles start and end on multiples of it.
    overlap : (oy, ox)
        Context (pixels) each tile gets beyond its core on every side, rounded up to blocks.

    Returns
    -------
    list of (window, core) pairs
        ``window``: tuple of two slices into the image (the tile's input); ``core``: tuple of
        two slices, the core's position in the image. Cores partition the image.
    """
    per_axis = []
    for size, n, d, o in zip(shape, n_tiles, div_by, overlap):
        blocks = size // d
        n = max(1, min(int(n), blocks))
        edges = np.linspace(0, blocks, n + 1).round().astype(int)
        margin = -(-int(o) // d)
        axis = []
        for c0, c1 in zip(edges[:-1], edges[1:]):
            w0, w1 = max(0, c0 - margin), min(blocks, c1 + margin)
            axis.append((slice(w0 * d, w1 * d), slice(c0 * d, c1 * d)))
        per_axis.append(axis)
    return [
        ((wy, wx), (cy, cx)) for wy, cy in per_axis[0] for wx, cx in per_axis[1]
    ]


# --------------------------------------------------------------------------------------------
# Network -> candidates


@dataclass
class Candidates:
    """Object candidates from the network, before NMS.

    Attributes
    ----------
    points : (n, 2) int32 array
        Centres (y, x) in pixels of the (scaled) image, row-major order.
    scores : (n,) float32 array
    dist : (n, n_rays) float32 array
        Ray lengths in pixels of the (scaled) image, >= 1e-3.
    prob : (h, w) float32 array
        The probability map at grid resolution, cropped to the image (the (scaled) image's
        pixel (y, x) lies in cell (y // grid[0], x // grid[1])).
    """

    points: np.ndarray
    scores: np.ndarray
    dist: np.ndarray
    prob: np.ndarray


def run_network_steps(steps, model, timings=None):
    """Drive a ``*_steps`` generator of this module: each network input it yields goes
    through ``model.predict_maps`` (timed as ``network``), its result is sent back, and the
    generator's return value is returned."""
    try:
        request = next(steps)
        while True:
            with timed(timings, "network"):
                maps = model.predict_maps(request)
            request = steps.send(maps)
    except StopIteration as done:
        return done.value


def predict_candidates(model, x, image_shape, prob_thresh, n_tiles=(1, 1), b=BORDER,
                       mask=None, timings=None):
    """Run the network over a padded, normalised image and collect object candidates
    (:func:`candidate_steps`, driven through ``model.predict_maps``)."""
    steps = candidate_steps(model, x, image_shape, prob_thresh, n_tiles, b, mask, timings)
    return run_network_steps(steps, model, timings)


def candidate_steps(model, x, image_shape, prob_thresh, n_tiles=(1, 1), b=BORDER, mask=None, timings=None):
    """:func:`predict_candidates` as a generator that yields each network input (the image, or
    one tile) and expects the network's ``(prob, dist)`` for it sent back, so that a caller can
    put several images' inputs through the network at once (:mod:`nucleai.tta`); returns the
    Candidates.

    Parameters
    ----------
    model : nucleai.models.StarConvexModel
    x : (H, W, C) float32 array
        Normalised (and scaled) image, padded to multiples of ``model.spec.div_by``.
    image_shape : (h, w)
        The image's shape before padding (candidates must lie inside it).
    prob_thresh : float
    n_tiles : (ny, nx)
        Tiles per axis; (1, 1) predicts the whole image at once.
    b : int
        Grid cells at the border of the padded output that never seed an object.
    mask : callable or None
        ``mask(points) -> bool array``: whether each candidate centre (pixels of ``x``) may seed
        an object.
    timings : dict, optional
        Seconds are added under ``"candidates"`` (the driver times ``"network"``).

    Returns
    -------
    Candidates
    """
    grid = model.spec.grid
    padded_grid_shape = tuple(s // g for s, g in zip(x.shape[:2], grid))
    prob_full = np.empty(padded_grid_shape, np.float32)
    # Grid index range [low, high) that may hold a candidate, per axis: stardist's b applies
    # to the padded output; a centre must also lie in the unpadded image.
    limits = [
        (b, min(padded_grid_shape[a] - b, -(-image_shape[a] // grid[a]))) for a in range(2)
    ]
    if tuple(n_tiles) == (1, 1):
        layout = [((slice(None), slice(None)), (slice(0, x.shape[0]), slice(0, x.shape[1])))]
    else:
        layout = tile_layout(x.shape[:2], n_tiles, model.spec.div_by, model.tile_overlap)
    flat, scores, dists = [], [], []
    for window, core in layout:
        prob, dist = yield x[window]
        with timed(timings, "candidates"):
            # the core's cells inside the tile's output, and their global grid position
            offset = [0 if w.start is None else w.start // g for w, g in zip(window, grid)]
            start = [c.start // g for c, g in zip(core, grid)]
            stop = [c.stop // g for c, g in zip(core, grid)]
            local = tuple(slice(s - o, e - o) for s, e, o in zip(start, stop, offset))
            prob_core = prob[local]
            prob_full[start[0] : stop[0], start[1] : stop[1]] = prob_core
            # cells allowed to seed an object: inside the limits
            allowed = np.zeros(prob_core.shape, bool)
            allowed[
                max(limits[0][0] - start[0], 0) : max(limits[0][1] - start[0], 0),
                max(limits[1][0] - start[1], 0) : max(limits[1][1] - start[1], 0),
            ] = True
            iy, ix = np.nonzero((prob_core > prob_thresh) & allowed)
            if iy.size:
                gy, gx = iy + start[0], ix + start[1]
                flat.append(gy.astype(np.int64) * padded_grid_shape[1] + gx)
                scores.append(prob_core[iy, ix])
                dists.append(dist[local][iy, ix])
    with timed(timings, "candidates"):
        n_rays = model.spec.n_rays
        if flat:
            flat = np.concatenate(flat)
            scores = np.concatenate(scores)
            dists = np.concatenate(dists)
            if len(layout) > 1:  # tiles deliver per tile: restore the image's row-major order
                order = np.argsort(flat, kind="stable")
                flat, scores, dists = flat[order], scores[order], dists[order]
        else:
            flat = np.zeros(0, np.int64)
            scores = np.zeros(0, np.float32)
            dists = np.zeros((0, n_rays), np.float32)
        points = np.stack(
            [flat // padded_grid_shape[1] * grid[0], flat % padded_grid_shape[1] * grid[1]],
            axis=1,
        ).astype(np.int32)
        if mask is not None and len(points):
            inside = np.asarray(mask(points), bool)
            points, scores, dists = points[inside], scores[inside], dists[inside]
        dists = np.maximum(np.float32(MIN_DIST), dists.astype(np.float32, copy=False))
        crop = tuple(-(-s // g) for s, g in zip(image_shape, grid))
        prob_map = prob_full[: crop[0], : crop[1]]
    return Candidates(
        points=np.ascontiguousarray(points),
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        dist=np.ascontiguousarray(dists),
        prob=prob_map,
    )


# --------------------------------------------------------------------------------------------
# NMS and rendering (ours)


def suppress(candidates, nms_thresh):
    """Greedy non-maximum suppression of the candidates (:mod:`nucleai.nms`).

    Returns
    -------
    points (n, 2) float32, scores (n,) float32, dist (n, n_rays) float32
        The kept polygons in descending score order.
    """
    from .nms import non_maximum_suppression_sparse

    points, scores, dist, _ = non_maximum_suppression_sparse(
        candidates.dist, candidates.points, candidates.scores, nms_thresh=nms_thresh
    )
    return points.astype(np.float32), scores, dist


def render(points, dist, scores, shape):
    """Draw polygons into a label image, higher scores on top; label i + 1 = polygon i.

    :func:`nucleai.geometry.polygons_to_label`, which renders as stardist does (ascending
    score order, so the most probable polygon owns contested pixels).
    """
    from .geometry import polygons_to_label

    return polygons_to_label(dist, points, shape, prob=scores)


# --------------------------------------------------------------------------------------------
# The whole chain


@dataclass
class Segmentation:
    """Result of :func:`segment`.

    Attributes
    ----------
    labels : (H, W) uint16 or uint32 array
        0 = background, objects 1..n (consecutive); object i + 1 has the i-th highest score.
    probabilities : (n,) float32 array
        The network's object probability at each object's centre (the NMS score), per label.
    points : (n, 2) float32 array
        Object centres (y, x) in image pixels, per label.
    prob_map : (H, W) float32 array or None
        The probability map resized to the image (when asked for).
    prob_thresh, nms_thresh, scale : float
        What was used.
    n_tiles : (ny, nx)
        Tiles the network ran on ((0, 0) when it did not run).
    empty_reason : str or None
        Why the image has nothing to segment (:data:`BLANK`, :data:`CONSTANT`,
        :data:`ALL_MASKED`); then there are no objects. None for an image that was segmented.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    points: np.ndarray
    prob_map: np.ndarray
    prob_thresh: float
    nms_thresh: float
    scale: float
    n_tiles: tuple
    empty_reason: str = None

    @property
    def count(self):
        return len(self.probabilities)


def _sequential(labels, points, scores):
    """Renumber labels 1..n in id order, dropping ids painted over completely."""
    n = len(scores)
    present = np.bincount(labels.ravel(), minlength=n + 1)[1:] > 0
    dtype = np.uint16 if present.sum() <= np.iinfo(np.uint16).max else np.uint32
    if present.all():
        return labels.astype(dtype), points, scores
    lut = np.zeros(n + 1, dtype)
    lut[1:][present] = np.arange(1, present.sum() + 1, dtype=dtype)
    return lut[labels], points[present], scores[present]


def estimate_object_diameter(labels):
    """Median equivalent diameter (pixels) of the objects in a label image, NaN when none."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    if len(areas) == 0:
        return float("nan")
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def _prob_to_image(prob, grid, scaled, shape):
    """Grid-resolution probabilities -> a map of the original image size (linear)."""
    # cell centres sit at (i + 0.5) * grid - 0.5 in scaled pixels; map them to original pixels
    import skimage.transform

    up = np.repeat(np.repeat(prob, grid[0], axis=0), grid[1], axis=1)[: scaled[0], : scaled[1]]
    if up.shape == tuple(shape):
        return up.astype(np.float32, copy=False)
    return skimage.transform.resize(
        up, shape, order=1, mode="edge", preserve_range=True, anti_aliasing=False
    ).astype(np.float32)


def no_objects(shape, spec, options, *, return_prob_map=False, reason=None):
    """A :class:`Segmentation` of an image of ``shape`` (H, W) with no objects: an image with
    nothing to segment (``reason``), or one a caller gives up on and still needs a result for.

    The thresholds are those ``options`` and the model's ``spec`` would have used; the probability
    map (when asked for) is 0; no tile ran.
    """
    return Segmentation(
        labels=np.zeros(shape, np.uint16), probabilities=np.zeros(0, np.float32),
        points=np.zeros((0, 2), np.float32), prob_map=np.zeros(shape, np.float32) if return_prob_map else None,
        prob_thresh=float(spec.prob_thresh if options.prob_thresh is None else options.prob_thresh),
        nms_thresh=float(spec.nms_thresh if options.nms_thresh is None else options.nms_thresh),
        scale=1.0 if options.scale is None else float(options.scale), n_tiles=(0, 0), empty_reason=reason,
    )


@dataclass(frozen=True)
class SegmentOptions:
    """How :func:`segment` runs, checked once here; every caller builds one of these.

    Attributes
    ----------
    prob_thresh, nms_thresh : float, optional
        Thresholds in (0, 1); None: the model's tuned ones (thresholds.json).
    percentiles : (low, high)
        Normalisation percentiles, ``0 <= low < high <= 100``.
    scale : float, optional
        Zoom factor applied to the image before prediction (stardist's ``scale``), > 0; 1 when
        neither it nor ``object_diameter`` is given.
    object_diameter : float or "auto", optional
        Typical object diameter in the images (pixels, > 0), or ``"auto"`` to estimate it from a
        first pass at scale 1; sets ``scale = model_diameter / object_diameter``. Exclusive with
        ``scale``.
    model_diameter : float, optional
        The diameter the model expects (> 0); by default the model's declared one (nucleai.json).
    tiles : "auto" or (ny, nx) or "YxX"
        Tiling of the network input (see the module docstring); stored as ``"auto"`` or a pair.
    channel : int, optional
        For a multi-channel image and a one-channel model: which channel, from 0.

    Raises
    ------
    InputError
        With ``field`` the attribute at fault.
    """

    prob_thresh: float = None
    nms_thresh: float = None
    percentiles: tuple = PERCENTILES
    scale: float = None
    object_diameter: object = None
    model_diameter: float = None
    tiles: object = "auto"
    channel: int = None

    def __post_init__(self):
        def store(field, value):
            object.__setattr__(self, field, value)

        for field in ("prob_thresh", "nms_thresh"):
            if getattr(self, field) is not None:
                store(field, check_number(getattr(self, field), field, low=0, high=1,
                                          low_open=True, high_open=True))
        if not (isinstance(self.percentiles, (tuple, list)) and len(self.percentiles) == 2):
            raise InputError(f"percentiles must be two numbers, got {self.percentiles!r}", "percentiles")
        low, high = (check_number(p, "percentiles", low=0, high=100) for p in self.percentiles)
        if not low < high:
            raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {low:g}, {high:g}", "percentiles")
        store("percentiles", (low, high))
        for field in ("scale", "model_diameter"):
            if getattr(self, field) is not None:
                store(field, check_number(getattr(self, field), field, low=0, low_open=True))
        diameter = self.object_diameter
        if isinstance(diameter, str) and diameter.strip().lower() == "auto":
            store("object_diameter", "auto")
        elif diameter is not None:
            store("object_diameter", check_number(diameter, "object_diameter", low=0, low_open=True))
        if self.scale is not None and self.object_diameter is not None:
            raise InputError("give either a scale or an object diameter, not both", "scale")
        store("tiles", parse_tiles(self.tiles))
        if self.channel is not None:
            store("channel", check_number(self.channel, "channel", low=0, integer=True))


def segment(image, model, options=SegmentOptions(), *, mask=None, return_prob_map=False, timings=None):
    """Segment nuclei in one image with a star-convex model (:func:`segment_steps`, its
    network inputs put through ``model.predict_maps`` one by one).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        Any numeric dtype; the percentile normalisation makes the intensity scale irrelevant.
    model : nucleai.models.StarConvexModel
        From :func:`nucleai.models.load`.
    options : SegmentOptions
        Thresholds, percentiles, object size, tiling, channel.
    mask : (H, W) bool array, optional
        Objects must have their centre inside the mask and are cut to it; the normalisation
        percentiles are taken inside it. An all-False mask gives no objects.
    return_prob_map : bool
        Also return the probability map at the image's size.
    timings : dict, optional
        Seconds per stage are added to it: ``normalize`` (incl. channel selection, rescaling,
        padding), ``network``, ``candidates``, ``nms``, ``render`` (incl. renumbering and the
        probability map).

    Returns
    -------
    Segmentation
        With no objects and an ``empty_reason`` for an image with nothing to segment: all pixels
        0 (inside the mask), one value (or equal normalisation percentiles), or an all-False
        mask. Such an image is no error: in a long run it is one image without nuclei.

    Raises
    ------
    InputError
        For an image the model cannot take (channels), an image without pixels or with
        non-finite ones, a mask of another shape, a scale (or diameter) that makes the image
        empty or huge, or a model without a declared diameter when rescaling to it.
    """
    steps = segment_steps(image, model, options, mask=mask, return_prob_map=return_prob_map, timings=timings)
    return run_network_steps(steps, model, timings)


def segment_steps(image, model, options=SegmentOptions(), *, mask=None, return_prob_map=False, timings=None):
    """:func:`segment` as a generator: it yields each network input (the padded, normalised
    image or a tile of it, float32 (H, W, C)) and expects ``model.predict_maps``' result for it
    sent back (:func:`run_network_steps` drives it so); its return value is the Segmentation.
    :func:`nucleai.tta.segment_tta` drives several at once to batch their inputs. An image with
    nothing to segment returns before yielding anything.
    """
    spec = model.spec
    prob_thresh = spec.prob_thresh if options.prob_thresh is None else options.prob_thresh
    nms_thresh = spec.nms_thresh if options.nms_thresh is None else options.nms_thresh

    with timed(timings, "normalize"):
        x = select_channels(image, spec.n_channel_in, options.channel)
        shape = x.shape[:2]
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != shape:
                raise InputError(f"mask has shape {mask.shape} but the image has {shape}")

    def nothing(reason):
        return no_objects(shape, spec, options, return_prob_map=return_prob_map, reason=reason)

    if mask is not None and not mask.any():
        return nothing(ALL_MASKED)
    scale, scale_field = 1.0 if options.scale is None else options.scale, "scale"
    if options.object_diameter is not None:
        model_diameter = spec.object_diameter if options.model_diameter is None else options.model_diameter
        if model_diameter is None:
            raise InputError(
                f"model {spec.name} does not declare the object diameter it was trained on "
                f"(nucleai.json); give the model's diameter",
                "model_diameter",
            )
        if options.object_diameter == "auto":
            first = yield from segment_steps(
                image, model, replace(options, object_diameter=None, model_diameter=None, scale=1.0),
                mask=mask, return_prob_map=return_prob_map, timings=timings,
            )
            found = estimate_object_diameter(first.labels)
            if first.count < MIN_OBJECTS_FOR_DIAMETER or not np.isfinite(found):
                scale = 1.0  # too few objects to measure: keep the image's size
            else:
                scale = model_diameter / found
            if abs(scale - 1.0) < 0.05:  # the first pass is already at the right size
                return first
        else:
            scale = model_diameter / options.object_diameter
        scale_field = "object_diameter"
    scale = check_scale(scale, shape, scale_field)

    with timed(timings, "normalize"):
        try:
            x = normalize(x, *options.percentiles, mask=mask)
        except NothingToSegment as blank:
            return nothing(blank.reason)
        x = rescale(x, scale)
        scaled = x.shape[:2]
        x = pad_to_multiple(x, spec.div_by)
    n_tiles = memory_tiles(x.shape[:2], lambda: model.tile_overlap) if options.tiles == "auto" else options.tiles

    def inside_mask(points):
        """Candidate centres (pixels of the scaled image) that lie in the mask."""
        rc = np.floor(points / scale).astype(np.int64)
        rc = np.minimum(rc, np.array(shape) - 1)
        return mask[rc[:, 0], rc[:, 1]]

    candidates = yield from candidate_steps(
        model, x, scaled, prob_thresh, n_tiles=n_tiles,
        mask=None if mask is None else inside_mask, timings=timings,
    )
    with timed(timings, "nms"):
        points, scores, dist = suppress(candidates, nms_thresh)
    with timed(timings, "render"):
        if scale != 1:
            points = points / np.float32(scale)
            dist = dist / np.float32(scale)
        labels = render(points, dist, scores, shape)
        if mask is not None:
            labels[~mask] = 0
        labels, points, scores = _sequential(labels, points, scores)
        prob_map = None
        if return_prob_map:
            prob_map = _prob_to_image(candidates.prob, spec.grid, scaled, shape)
    return Segmentation(
        labels=labels,
        probabilities=np.asarray(scores, np.float32),
        points=np.asarray(points, np.float32),
        prob_map=prob_map,
        prob_thresh=float(prob_thresh),
        nms_thresh=float(nms_thresh),
        scale=float(scale),
        n_tiles=tuple(int(n) for n in n_tiles),
    )
