"""A staging folder of training images, written one image set at a time and read back at once.

CellProfiler hands a module one image set per ``run`` and trains nothing until ``post_run``, so
StyleAugmentTrain keeps nothing in memory: every image set is written here as it comes and the
whole set read back for training. Writing and reading live together in this module, so the
format is defined once:

``<folder>/images/<name>.tif``     an annotated image set's image;
``<folder>/labels/<name>.tif``     its label image (:func:`nucleai.labelio.write_labels`);
``<folder>/unlabeled/<name>.tif``  an unannotated image set's image (style input);
``<folder>/STAGED_BY_StyleAugmentTrain.txt``  marks the folder as staging, so that only such a
                                   folder is ever emptied.

Images are stored as given (floating-point as float32, booleans as 0/1 bytes), zlib-compressed,
colour as RGB: CellProfiler's pixels (values divided by the file's range) are what the module
trains on; training treats them as it treats the file's integers (:mod:`nucleai.train.data`).
Each file is written under a hidden temporary name and renamed, so an interrupted run leaves no
half file (the readers skip hidden files).
"""
import os
import re
import shutil
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..labelio import files_by_stem, read_labels, write_labels
from ..labels import check_labels
from .data import Sample, is_blank

IMAGES_DIR = "images"
LABELS_DIR = "labels"
UNLABELED_DIR = "unlabeled"
#: Marks a staging folder, so that only such a folder is ever emptied.
MARKER = "STAGED_BY_StyleAugmentTrain.txt"
#: Digits of the image number that starts every staged file name.
NUMBER_DIGITS = 5


def staged_name(image_number, file_name=None):
    """The staged file stem of an image set: zero-padded image number, then the file's stem
    reduced to characters safe on every file system (letters, digits, ``-``, ``_``, ``.``)."""
    name = f"{int(image_number):0{NUMBER_DIGITS}d}"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file_name).stem).strip("._") if file_name else ""
    return f"{name}_{stem}" if stem else name


def clear_staging(folder):
    """Empty a staging folder of an earlier run.

    Raises
    ------
    InputError
        (field ``out``) When the folder exists but is not marked as staging: it is not ours to
        delete.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not (folder / MARKER).is_file():
        raise InputError(f"{folder} exists but was not written by StyleAugmentTrain", "out")
    shutil.rmtree(folder)


def stage_image_set(folder, name, image, labels=None):
    """Write one image set into the staging folder (created); ``labels`` None: unannotated.

    Parameters
    ----------
    folder : str or Path
    name : str
        The file stem (e.g. :func:`staged_name`).
    image : (H, W) or (H, W, C) array, C in 1, 3 or 4
    labels : (H, W) int array, optional

    Returns
    -------
    Path or None
        The image file written; None for a blank image (:func:`nucleai.train.data.is_blank`:
        nothing to learn from, and training would fail on it), which is not staged.

    Raises
    ------
    InputError
        ``image`` (field) for another shape, ``labels`` for labels that are not a label image of
        the image's size, ``out`` when the folder cannot be written.
    """
    folder = Path(folder)
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise InputError(f"the image has shape {image.shape}: grey or RGB(A) expected", "image")
    if labels is not None:
        labels = check_labels(labels, "the ground-truth objects", ndim=2, shape=image.shape[:2], field="labels")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32, copy=False)
    if is_blank(image):
        return None
    try:
        for sub in (IMAGES_DIR, LABELS_DIR, UNLABELED_DIR):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        marker = folder / MARKER
        if not marker.is_file():
            marker.write_text("Image sets staged by CellProfiler's StyleAugmentTrain for training; "
                              "emptied at the start of each run.\n")
    except OSError as error:
        raise InputError(f"cannot write the staging folder {folder}: {error}", "out") from error
    import tifffile

    path = folder / (IMAGES_DIR if labels is not None else UNLABELED_DIR) / f"{name}.tif"
    photometric = "rgb" if image.ndim == 3 and image.shape[2] in (3, 4) else "minisblack"
    _write_atomic(path, lambda tmp: tifffile.imwrite(tmp, image, photometric=photometric, compression="zlib"))
    if labels is not None:
        _write_atomic(folder / LABELS_DIR / f"{name}.tif", lambda tmp: write_labels(tmp, labels))
    return path


def read_staged(folder):
    """The staged image sets: (annotated, unannotated) lists of Sample, in name order.

    Raises
    ------
    InputError
        (field ``labels``) When no annotated image set was staged.
    """
    import tifffile

    folder = Path(folder)
    images = folder / IMAGES_DIR
    staged = files_by_stem(images, suffixes=(".tif",)) if images.is_dir() else {}
    if not staged:
        raise InputError("no image set had ground-truth objects; training needs annotated image sets "
                         f"(nothing staged in {images})", "labels")
    annotated = [Sample(stem, tifffile.imread(path), read_labels(folder / LABELS_DIR / f"{stem}.tif"))
                 for stem, path in staged.items()]
    unlabeled_dir = folder / UNLABELED_DIR
    unlabeled = [] if not unlabeled_dir.is_dir() else [
        Sample(stem, tifffile.imread(path), None)
        for stem, path in files_by_stem(unlabeled_dir, suffixes=(".tif",)).items()
    ]
    return annotated, unlabeled


def _write_atomic(path, write):
    """``write(tmp_path)`` then rename to ``path`` (the temporary name starts with '.')."""
    tmp = path.with_name(f".{os.getpid()}-{path.name}")
    write(tmp)
    os.replace(tmp, path)
