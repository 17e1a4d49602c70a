"""Training data: image/label folders, channel conversion, normalisation, validation split.

Images and label images are paired by file stem (:func:`nucleai.labelio.files_by_stem`), as in
``nucleai evaluate``. Every image is turned into the model's channel count by
:func:`to_channels` and normalised per channel to its (1, 99.8) percentiles, the normalisation
:func:`nucleai.predict.segment` applies, so the network sees at training what it will see at
prediction.

One intensity rule for all of training: images enter training as they were read, of any type,
and nothing in training depends on the scale their values are stored at. The detector's input
is percentile-normalised (here), each style's generator stretches an image from its own minimum
to its maximum (:func:`nucleai.train.pix2pix.image_to_unit`), and style features read integers
over their type's range and floats in [0, 1] as they are (:mod:`nucleai.train.style`), which is
how CellProfiler stores an 8- or 16-bit file's pixels. So an image file (``nucleai train``) and
CellProfiler's copy of it (StyleAugmentTrain) train the same model.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..labelio import files_by_stem, read_labels
from ..predict import PERCENTILES, NothingToSegment, normalize


@dataclass(frozen=True)
class Sample:
    """One image: its name (file stem), the image as read, its label image (None: unannotated)."""

    name: str
    image: np.ndarray
    labels: np.ndarray


def to_channels(image, n_channels):
    """An image as (H, W, n_channels): grey repeated to RGB, RGB averaged to grey.

    nucleAIzer converts every image to RGB so that one model serves fluorescence, brightfield
    and histology; a one-channel model gets the mean of the colour channels, which is the
    channel itself for grey stored as RGB. An alpha channel (4th of 4) is dropped.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array, C in 1, 3 or 4
    n_channels : 1 or 3

    Returns
    -------
    (H, W, n_channels) array (float32 when channels were averaged, else the input's dtype)

    Raises
    ------
    InputError
        For other shapes or channel counts.
    """
    image = np.asarray(image)
    if n_channels not in (1, 3):
        raise InputError(f"a model takes 1 or 3 channels, not {n_channels}")
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(f"image of shape {image.shape}: grey, RGB or RGBA (H, W[, 1|3|4]) expected")
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.shape[2] == n_channels:
        return image
    if n_channels == 3:
        return np.repeat(image, 3, axis=2)
    return image.astype(np.float32).mean(axis=2, keepdims=True)


def is_colour(image):
    """Whether an image has colour channels that differ (grey stored as RGB is not colour)."""
    image = np.asarray(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return False
    colour = image[..., :3]
    return not all(np.array_equal(colour[..., 0], colour[..., k]) for k in range(1, colour.shape[2]))


def prepare(image, n_channels, percentiles=PERCENTILES):
    """The network input for one image: :func:`to_channels`, then percentile normalisation."""
    return normalize(to_channels(image, n_channels), *percentiles)


def is_blank(image, percentiles=PERCENTILES):
    """Whether an image has no contrast to learn from: its grey version (channel mean) cannot be
    normalised (:func:`nucleai.predict.normalize`: equal percentiles), as for a blank or constant
    image. Training leaves such images out rather than failing on them."""
    try:
        prepare(image, 1, percentiles)
    except NothingToSegment:
        return True
    return False


def drop_blank(samples, what, log):
    """``samples`` without the blank ones (:func:`is_blank`), each left out with a log line."""
    kept = []
    for sample in samples:
        if is_blank(sample.image):
            log(f"warning: {what} image {sample.name} is blank (no contrast): left out of training")
        else:
            kept.append(sample)
    return kept


def read_samples(images_dir, labels_dir, image_suffixes, read_image):
    """Read every image of a folder with its label image (same stem) from another folder.

    Parameters
    ----------
    images_dir, labels_dir : Path
    image_suffixes : sequence of str
        Image file suffixes to read (e.g. those of ``nucleai segment``).
    read_image : callable
        ``read_image(path) -> array`` (e.g. ``nucleai.labelio.read_image``, so training
        reads files exactly as segmentation does).

    Returns
    -------
    list of Sample, in stem order

    Raises
    ------
    InputError
        Naming the file: no images, an image without a label image, a label image that is not
        2-D or whose shape differs from its image's.
    """
    images = files_by_stem(images_dir, suffixes=image_suffixes)
    truths = files_by_stem(labels_dir)
    if not images:
        raise InputError(f"no images ({' '.join(image_suffixes)}) in {images_dir}")
    missing = [images[stem] for stem in images if stem not in truths]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]} has no label image of the same stem in {labels_dir}{more}")
    samples = []
    for stem, path in images.items():
        image = read_image(path)
        labels = read_labels(truths[stem])
        if labels.ndim != 2:
            raise InputError(f"{truths[stem]}: a 2-D label image is needed, got shape {labels.shape}")
        if labels.shape != image.shape[:2]:
            raise InputError(f"{truths[stem]}: shape {labels.shape} differs from its image {path} "
                             f"({image.shape[:2]})")
        samples.append(Sample(stem, image, labels))
    return samples


def read_images(images_dir, image_suffixes, read_image):
    """Read every image of a folder as unannotated samples (``labels`` None), in stem order.

    Raises
    ------
    InputError
        When the folder holds no images.
    """
    images = files_by_stem(images_dir, suffixes=image_suffixes)
    if not images:
        raise InputError(f"no images ({' '.join(image_suffixes)}) in {images_dir}")
    return [Sample(stem, read_image(path), None) for stem, path in images.items()]


def split_validation(samples, fraction, seed):
    """Split samples at random into training and validation (at least one of each).

    Parameters
    ----------
    samples : sequence of Sample
    fraction : float
        Share of samples for validation, in (0, 1); rounded, at least 1, at most all but one.
    seed : int

    Returns
    -------
    train, val : lists of Sample (each in the input order)
    """
    if not 0 < fraction < 1:
        raise InputError(f"the validation fraction must be between 0 and 1, got {fraction}")
    if len(samples) < 2:
        raise InputError(f"{len(samples)} annotated image(s): a validation split needs at least 2 "
                         "(or give validation images separately)")
    n_val = min(len(samples) - 1, max(1, int(round(fraction * len(samples)))))
    chosen = set(np.random.default_rng(seed).permutation(len(samples))[:n_val].tolist())
    train = [s for i, s in enumerate(samples) if i not in chosen]
    val = [s for i, s in enumerate(samples) if i in chosen]
    return train, val


def median_object_diameter(label_images):
    """Median equivalent diameter (pixels) over all objects of several label images (NaN if none)."""
    areas = np.concatenate([np.bincount(np.asarray(labels).ravel())[1:] for labels in label_images])
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if areas.size else float("nan")
