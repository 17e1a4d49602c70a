"""Style clustering of target images: step 1 of nucleAIzer's style augmentation.

nucleAIzer adapts a segmentation model to a new experiment without new annotations: it groups
the experiment's (unannotated) images into *styles* by image-level intensity and texture
features and k-means, trains one image-to-image generator per style, and adds synthetic
(mask, image) pairs of every style to training. This module does the grouping.

Features (:func:`style_features`) are computed on the image scaled to [0, 1] by its dtype's
range (floats already within [0, 1] as they are, other floats by their range from
``min(0, min)`` to max), with grey images treated as three equal channels so that
fluorescence, brightfield and histology images share one feature space. They hold the
brightness and colour of the image (per-channel percentiles, mean and spread, the channel
shares of the mean, chroma) and, on the grey image stretched to its own (1, 99) percentiles so
that exposure does not matter, the background/foreground balance (share of dark and bright
pixels), edge strength (gradient magnitude) and texture (grey-level co-occurrence contrast,
homogeneity, energy and correlation). :data:`FEATURE_NAMES` names them in order.

Features are standardised (z-scores; a feature that does not vary keeps scale 1, so it adds
nothing instead of dividing by zero) and clustered by k-means with k-means++ starts, several
restarts and the lowest within-cluster sum of squares kept, all from one seeded
``numpy.random.Generator``, so a seed gives the same clusters.

How many styles (the k rule, written to be copied into user documentation):
    Unless the number of styles is given, it is the smallest k for which k-means leaves at most
    30% of the standardised feature variance within the clusters (within-cluster sum of squares
    at most 30% of that of a single cluster), plus one. The extra cluster is deliberate:
    nucleAIzer over-clusters, since a style split in two still gets its generators while two
    styles merged into one give a generator that mixes them. k is capped at ``max_k`` (by
    default the number of images divided by the minimum cluster size) and at the number of
    distinct images. Clusters with fewer images than the minimum cluster size (3 by default)
    are too small to train a generator on and are dropped; their images belong to no style.

:func:`nearest_style` assigns a new image (e.g. an annotated training image) to a kept style
only if it lies within that style's own radius, times a slack, so that images unlike every
target style (fluorescence among histology styles) are not forced into one.
"""
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from skimage.feature import graycomatrix, graycoprops

from ..errors import InputError

__all__ = ["FEATURE_NAMES", "StyleClusters", "style_features", "cluster_styles", "nearest_style"]

#: Share of the one-cluster within-cluster sum of squares that k clusters must get below.
WSS_FRACTION = 0.3
#: A new image joins a style when within this multiple of the style's radius (largest member
#: distance to its centre): generous enough for images the clustering did not see, yet far
#: short of the distance between clearly different styles.
RADIUS_SLACK = 1.5
#: k-means restarts per k; the run with the lowest within-cluster sum of squares is kept.
N_INIT = 10

_PERCENTILES = (1, 50, 99)
_GLCM_LEVELS = 32
_GLCM_DISTANCES = (1, 4)
_GLCM_ANGLES = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
_MIN_SIDE = 8

FEATURE_NAMES = tuple(
    [f"{c}_{s}" for c in "rgb" for s in ("p1", "p50", "p99", "mean", "std")]
    + ["r_share", "g_share", "b_share", "chroma", "dark_fraction", "bright_fraction",
       "gradient_mean", "gradient_p90"]
    + [f"glcm_{p}_d{d}" for d in _GLCM_DISTANCES for p in _GLCM_PROPS])


@dataclass(frozen=True, eq=False)
class StyleClusters:
    """The styles found among a set of images.

    Cluster ids are 0 ... k-1 in order of decreasing size (ties: the cluster of the earlier
    image first), so the kept clusters are exactly ``0 ... len(kept) - 1`` and the dropped ones
    follow.

    Attributes
    ----------
    labels : (n_images,) int array
        Style id of each image; -1 for images of a dropped cluster.
    k : int
        Number of k-means clusters (kept and dropped).
    kept : tuple of int
        Ids of the clusters with at least ``min_cluster_size`` images: ``0 ... n_kept - 1``.
    dropped : tuple of (int, int)
        (cluster id, number of images) of each cluster too small to keep.
    sizes : (k,) int array
        Number of images per cluster.
    centres : (k, n_features) float array
        Cluster centres in standardised feature space.
    radii : (k,) float array
        Largest distance of a member to its centre (standardised feature space).
    feature_mean, feature_scale : (n_features,) float arrays
        Standardisation: ``(style_features(image) - feature_mean) / feature_scale``.
    rule : str
        One line saying how k was chosen (for a model card).
    """

    labels: np.ndarray
    k: int
    kept: tuple
    dropped: tuple
    sizes: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    rule: str


def style_features(image):
    """Image-level intensity and texture features of one image (see the module docstring).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array, C in 1, 3 or 4 (alpha ignored), any real dtype
        At least 8 pixels on each side.

    Returns
    -------
    (len(FEATURE_NAMES),) float64 array, the same length for grey and colour images.

    Raises
    ------
    InputError
        For other shapes, too small or empty images, non-finite values.
    """
    rgb = _as_unit_rgb(image)
    features = []
    for c in range(3):
        channel = rgb[..., c]
        features += list(np.percentile(channel, _PERCENTILES)) + [channel.mean(), channel.std()]
    means = rgb.mean(axis=(0, 1))
    shares = means / means.sum() if means.sum() > 0 else np.full(3, 1 / 3)
    features += list(shares) + [float(np.mean(rgb.max(axis=2) - rgb.min(axis=2)))]

    # exposure-free: the grey image stretched to its own (1, 99) percentiles
    grey = rgb.mean(axis=2)
    lo, hi = np.percentile(grey, (1, 99))
    rel = np.clip((grey - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(grey)
    features += [float(np.mean(rel < 0.25)), float(np.mean(rel > 0.75))]
    # a Sobel filter answers 8 per pixel of slope along its axis
    gradient = np.hypot(ndi.sobel(rel, axis=0), ndi.sobel(rel, axis=1)) / 8
    features += [float(gradient.mean()), float(np.percentile(gradient, 90))]

    levels = np.minimum((rel * _GLCM_LEVELS).astype(np.uint8), _GLCM_LEVELS - 1)
    glcm = graycomatrix(levels, distances=_GLCM_DISTANCES, angles=_GLCM_ANGLES,
                        levels=_GLCM_LEVELS, symmetric=True, normed=True)
    for d in range(len(_GLCM_DISTANCES)):
        for prop in _GLCM_PROPS:
            value = graycoprops(glcm, prop)[d].mean()
            if prop == "contrast":  # squared level differences: scale to [0, 1]
                value /= (_GLCM_LEVELS - 1) ** 2
            features.append(value)
    return np.nan_to_num(np.asarray(features, np.float64), nan=0.0)


def cluster_styles(images, *, k=None, max_k=None, min_cluster_size=3, seed=0,
                   wss_fraction=WSS_FRACTION):
    """Group images into styles by k-means on their standardised :func:`style_features`.

    Parameters
    ----------
    images : sequence of arrays
        Images as :func:`style_features` takes them (shapes and dtypes may differ).
    k : int, optional
        Number of clusters; chosen by the k rule of the module docstring when None.
    max_k : int, optional
        Largest k the rule may choose; default ``len(images) // min_cluster_size``.
    min_cluster_size : int
        Clusters with fewer images are dropped (their images get label -1): too few to train
        a generator on.
    seed : int
        Seed of the k-means starts; the same seed gives the same clusters.
    wss_fraction : float in (0, 1)
        The fraction of the k rule.

    Returns
    -------
    StyleClusters

    Raises
    ------
    InputError
        Fewer images than ``min_cluster_size``, bad parameters, or an unusable image (named by
        its index).
    """
    if isinstance(min_cluster_size, bool) or not isinstance(min_cluster_size, (int, np.integer)) \
            or min_cluster_size < 1:
        raise InputError(f"min_cluster_size must be a positive integer, got {min_cluster_size!r}")
    if isinstance(images, np.ndarray) and images.ndim <= 3 and images.dtype != object:
        raise InputError("images must be a sequence of images, not a single image array")
    images = list(images)
    n = len(images)
    if n < min_cluster_size:
        raise InputError(f"{n} image(s): style clustering needs at least min_cluster_size = "
                         f"{min_cluster_size} images (one style's worth)")
    if not 0 < wss_fraction < 1:
        raise InputError(f"wss_fraction must be between 0 and 1, got {wss_fraction}")
    if k is not None and not _is_count(k, 1, n):
        raise InputError(f"k must be an integer from 1 to the number of images ({n}), got {k!r}")
    if max_k is not None and not _is_count(max_k, 1, None):
        raise InputError(f"max_k must be a positive integer, got {max_k!r}")

    features = np.stack([_features_of(image, i) for i, image in enumerate(images)])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale <= 1e-12 * np.maximum(np.abs(mean), 1)] = 1.0
    z = (features - mean) / scale
    n_distinct = len(np.unique(z.round(9), axis=0))
    rng = np.random.default_rng(seed)

    if k is not None:
        chosen = min(k, n_distinct)
        rule = f"k={chosen} given" + (f" (asked {k}, capped at {n_distinct} distinct images)"
                                      if chosen < k else "")
        centres, labels = _kmeans(z, chosen, rng)[:2]
    else:
        cap = min(max_k if max_k is not None else max(1, n // min_cluster_size), n_distinct)
        chosen, rule, (centres, labels) = _choose_k(z, cap, wss_fraction, rng)

    sizes = np.bincount(labels, minlength=chosen)
    first = np.array([np.flatnonzero(labels == j)[0] if sizes[j] else n for j in range(chosen)])
    order = np.lexsort((first, -sizes))  # by size, descending; ties by first image
    rank = np.empty(chosen, int)
    rank[order] = np.arange(chosen)
    labels, centres, sizes = rank[labels], centres[order], sizes[order]
    radii = np.array([np.linalg.norm(z[labels == j] - centres[j], axis=1).max() if sizes[j] else 0.0
                      for j in range(chosen)])
    keep = sizes >= min_cluster_size
    return StyleClusters(
        labels=np.where(keep[labels], labels, -1),
        k=int(chosen),
        kept=tuple(int(j) for j in np.flatnonzero(keep)),
        dropped=tuple((int(j), int(sizes[j])) for j in np.flatnonzero(~keep)),
        sizes=sizes, centres=centres, radii=radii, feature_mean=mean, feature_scale=scale,
        rule=rule)


def nearest_style(clusters, image, *, slack=RADIUS_SLACK):
    """The kept style an image belongs to, or -1 when it is like none of them.

    The image goes to the nearest kept centre (standardised feature space) if its distance is
    at most ``slack`` times that cluster's radius. A cluster of identical images has radius 0
    and accepts only images with the same features.

    Parameters
    ----------
    clusters : StyleClusters
    image : array, as :func:`style_features` takes it
    slack : float, at least 1

    Returns
    -------
    int : a style id of ``clusters.kept``, or -1
    """
    if not isinstance(clusters, StyleClusters):
        raise InputError(f"clusters must be a StyleClusters, got {type(clusters).__name__}")
    if not slack >= 1:
        raise InputError(f"slack must be at least 1, got {slack}")
    if not clusters.kept:
        return -1
    z = (style_features(image) - clusters.feature_mean) / clusters.feature_scale
    kept = np.asarray(clusters.kept)
    distances = np.linalg.norm(clusters.centres[kept] - z, axis=1)
    best = int(np.argmin(distances))
    return int(kept[best]) if distances[best] <= slack * clusters.radii[kept[best]] + 1e-9 else -1


# ---------------------------------------------------------------------------------------------


def _as_unit_rgb(image):
    """(H, W, 3) float64 in [0, 1]: dtype range for integers, see the module docstring for floats."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise InputError(f"image of shape {image.shape}: grey, RGB or RGBA (H, W[, 1|3|4]) expected")
    if min(image.shape[:2]) < _MIN_SIDE:
        raise InputError(f"image of shape {image.shape}: style features need at least "
                         f"{_MIN_SIDE} pixels on each side")
    if image.dtype == bool:
        unit = image.astype(np.float64)
    elif np.issubdtype(image.dtype, np.integer):
        unit = np.clip(image.astype(np.float64) / np.iinfo(image.dtype).max, 0, 1)
    elif np.issubdtype(image.dtype, np.floating):
        unit = image.astype(np.float64)
        if not np.isfinite(unit).all():
            raise InputError("image has NaN or infinite values")
        lo, hi = min(unit.min(), 0.0), unit.max()
        if lo < 0 or hi > 1:
            unit = (unit - lo) / (hi - lo) if hi > lo else np.zeros_like(unit)
    else:
        raise InputError(f"image of dtype {image.dtype}: a numeric image is needed")
    if unit.ndim == 2 or unit.shape[2] == 1:
        unit = np.repeat(unit.reshape(unit.shape[:2] + (1,)), 3, axis=2)
    return unit


def _features_of(image, index):
    try:
        return style_features(image)
    except InputError as error:
        raise InputError(f"images[{index}]: {error}") from None


def _is_count(value, low, high):
    return (not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= low
            and (high is None or value <= high))


def _choose_k(z, cap, fraction, rng):
    """The k rule: (k, rule text, (centres, labels))."""
    results = {1: _kmeans(z, 1, rng)}
    total = results[1][2]
    if total <= 0:
        return 1, "k=1: all images have the same style features", results[1][:2]
    found = None
    for kk in range(2, cap + 1):
        results[kk] = _kmeans(z, kk, rng)
        if results[kk][2] <= fraction * total:
            found = kk
            break
    if found is None:
        rule = (f"k={cap}: no k up to the cap ({cap}) brought the within-cluster sum of squares "
                f"of the standardised style features to {fraction:.0%} of one cluster's; the "
                "cap was taken")
        return cap, rule, results[cap][:2]
    chosen = min(found + 1, cap)
    if chosen not in results:
        results[chosen] = _kmeans(z, chosen, rng)
    ratio = results[found][2] / total
    plus = ("plus one to err on more styles" if chosen > found
            else f"plus one was not possible (cap {cap})")
    rule = (f"k={chosen}: the smallest k whose within-cluster sum of squares of the standardised "
            f"style features is at most {fraction:.0%} of one cluster's was {found} "
            f"({ratio:.0%}), {plus}")
    return chosen, rule, results[chosen][:2]


def _kmeans(z, k, rng, n_init=N_INIT, max_iter=100):
    """Lloyd's k-means with k-means++ starts: (centres, labels, inertia) of the best restart."""
    best = None
    for _ in range(1 if k == 1 else n_init):
        centres = _kmeans_pp(z, k, rng)
        labels = None
        for _ in range(max_iter):
            d2 = ((z[:, None, :] - centres[None]) ** 2).sum(axis=2)
            new_labels = d2.argmin(axis=1)
            if labels is not None and np.array_equal(new_labels, labels):
                break
            labels = new_labels
            nearest = d2[np.arange(len(z)), labels]
            for j in range(k):
                members = labels == j
                if members.any():
                    centres[j] = z[members].mean(axis=0)
                else:  # an empty cluster restarts at the point worst served
                    far = int(nearest.argmax())
                    centres[j], nearest[far] = z[far], 0.0
        inertia = float(((z - centres[labels]) ** 2).sum())
        if best is None or inertia < best[2]:
            best = (centres.copy(), labels.copy(), inertia)
    return best


def _kmeans_pp(z, k, rng):
    """k-means++ starting centres (uniform when every point is already a centre)."""
    centres = [z[rng.integers(len(z))]]
    d2 = ((z - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else None
        centres.append(z[rng.choice(len(z), p=p)])
        d2 = np.minimum(d2, ((z - centres[-1]) ** 2).sum(axis=1))
    return np.array(centres, np.float64)
