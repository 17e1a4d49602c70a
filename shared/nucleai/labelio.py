"""Reading images, reading and writing label images, and pairing files across folders by stem.

The command line works on folders: ``nucleai segment`` writes one label TIFF per input image with
the input's stem, and ``nucleai evaluate`` pairs predictions with ground truth by stem. These
helpers keep those rules in one place.

Label images are 2-D images or 3-D stacks of non-negative integer ids, 0 = background. They are
read from TIFF (tifffile) or PNG (scikit-image) and written as zlib-compressed TIFF, uint16, or
uint32 when an id exceeds 65535 (what the rest of the ecosystem, Fiji and CellProfiler included,
reads). Decisions:

- A file with a colour or channel axis is refused, naming the file: an RGB-encoded label image or a
  multi-channel stack has no single id per pixel, and guessing a channel would give silent
  nonsense scores. For TIFF this is decided from the axes tifffile reports (``S`` samples or ``C``
  channels), so a 3-D stack is never mistaken for colour; a PNG cannot hold a stack, so any third
  axis there is colour.
- Floating-point label images (ImageJ/Fiji often save labels as 32-bit float) are accepted when
  every value is a non-negative whole number, and converted to an unsigned integer type.
"""
from pathlib import Path

import numpy as np
import skimage.io
import tifffile

from .errors import InputError

#: File suffixes read as label images (compared case-insensitively).
LABEL_SUFFIXES = (".tif", ".tiff", ".png")
TIFF_SUFFIXES = (".tif", ".tiff")
#: File suffixes read as images (compared case-insensitively).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def files_by_stem(directory, suffixes=LABEL_SUFFIXES):
    """Map each file stem in a folder to its path.

    Parameters
    ----------
    directory : str or Path
        Folder to list; not searched recursively. Hidden files (name starting with ".") are
        skipped, which also skips macOS resource forks like ``._image.tif``.
    suffixes : sequence of str, optional
        Suffixes to include, with the dot, compared case-insensitively.

    Returns
    -------
    dict of str to Path
        Stem (the name without its last suffix) to path, in sorted stem order.

    Raises
    ------
    InputError
        If the folder does not exist, or two files share a stem (``a.tif`` and ``a.png``), which
        would make the pairing ambiguous.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a folder")
    wanted = {suffix.lower() for suffix in suffixes}
    found = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in wanted or not path.is_file():
            continue
        if path.stem in found:
            raise InputError(
                f"{found[path.stem]} and {path} have the same stem; keep one of them"
            )
        found[path.stem] = path
    return dict(sorted(found.items()))


def _as_labels(data, path):
    """Integer label array from file data, or an InputError naming the file."""
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise InputError(
                f"{path}: floating-point image with non-integer values is not a label image"
            )
        if data.size and data.min() < 0:
            raise InputError(f"{path}: label image has negative values")
        top = data.max() if data.size else 0
        return data.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    if data.dtype == bool or not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"{path}: dtype {data.dtype} is not a label image (integers expected)")
    if np.issubdtype(data.dtype, np.signedinteger) and data.size and data.min() < 0:
        raise InputError(f"{path}: label image has negative values")
    return data


def read_labels(path):
    """Read a label image (2-D or 3-D stack) from TIFF or PNG.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff`` (read with tifffile, first series) or ``.png`` (scikit-image).

    Returns
    -------
    ndarray of unsigned or signed int
        The ids as stored (uint8, uint16, uint32, int32, ...); float files with whole values are
        converted to uint16 or uint32.

    Raises
    ------
    InputError
        For an unsupported suffix, a colour or channel axis, more than three dimensions,
        non-integer values or negative ids; the message names the file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if "S" in series.axes or "C" in series.axes:
                raise InputError(
                    f"{path}: has a colour/channel axis (axes {series.axes}, shape "
                    f"{series.shape}); a label image needs one id per pixel: save a single channel"
                )
            data = series.asarray()
    elif suffix == ".png":
        data = skimage.io.imread(path)
        if data.ndim == 3:
            raise InputError(
                f"{path}: has a colour axis (shape {data.shape}); a label image needs one id per "
                "pixel: save a single-channel (grey) PNG"
            )
    else:
        raise InputError(f"{path}: not a label image file ({', '.join(LABEL_SUFFIXES)} expected)")
    if data.ndim not in (2, 3):
        raise InputError(f"{path}: {data.ndim}-D (shape {data.shape}); 2-D or 3-D expected")
    return _as_labels(data, path)


def write_labels(path, labels):
    """Write a label image as a zlib-compressed TIFF, uint16 or uint32 as the ids require.

    Parameters
    ----------
    path : str or Path
        Output file, ``.tif`` or ``.tiff``; its folder must exist. An existing file is replaced.
    labels : ndarray of int
        2-D image or 3-D stack (written with axes ZYX) of non-negative ids, 0 = background.

    Raises
    ------
    InputError
        For another suffix, a dimension other than 2 or 3, non-integer or negative labels, or
        ids above 2**32 - 1.
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"{path}: label images are written as TIFF (.tif or .tiff)")
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"{path}: labels must be 2-D or 3-D, got shape {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InputError(f"{path}: labels must be non-negative, minimum is {labels.min()}")
    top = int(labels.max()) if labels.size else 0
    if top > np.iinfo(np.uint32).max:
        raise InputError(f"{path}: label id {top} does not fit in uint32")
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    tifffile.imwrite(
        path,
        labels.astype(dtype, copy=False),
        photometric="minisblack",
        compression="zlib",
        metadata={"axes": "YX" if labels.ndim == 2 else "ZYX"},
    )


def read_image(path):
    """An image file as an array: TIFF with tifffile, other formats with scikit-image.

    A TIFF stored channels-first (C, H, W with at most 4 channels) is turned channels-last.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            image = tifffile.imread(path)
        else:
            image = skimage.io.imread(path)
    except Exception as error:  # any decoder failure is the file's problem
        raise InputError(f"cannot read the image ({type(error).__name__}: {error})") from error
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] < image.shape[-1] and image.shape[0] <= 4 and image.shape[-1] > 4:
        image = np.moveaxis(image, 0, -1)  # channels-first TIFF (C, H, W)
    return image
