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


def _decode_labels(path):
    """The array of a label file and, for TIFF, the axes tifffile reports (first series)."""
    if path.suffix.lower() in TIFF_SUFFIXES:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return series.asarray(), series.axes
    return np.asarray(skimage.io.imread(path)), None


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
        For an unsupported suffix, a file that cannot be decoded (truncated, corrupt, not an
        image), a colour or channel axis, more than three dimensions, non-integer values or
        negative ids; the message names the file.
    """
    path = Path(path)
    if path.suffix.lower() not in LABEL_SUFFIXES:
        raise InputError(f"{path}: not a label image file ({', '.join(LABEL_SUFFIXES)} expected)")
    try:
        data, tiff_axes = _decode_labels(path)
    except Exception as error:  # any decoder failure is the file's problem
        raise InputError(
            f"{path}: cannot read the label image ({type(error).__name__}: {error})"
        ) from error
    if tiff_axes is not None and ("S" in tiff_axes or "C" in tiff_axes):
        raise InputError(
            f"{path}: has a colour/channel axis (axes {tiff_axes}, shape {data.shape}); a label "
            "image needs one id per pixel: save a single channel"
        )
    if tiff_axes is None and data.ndim == 3:  # a PNG cannot hold a stack
        raise InputError(
            f"{path}: has a colour axis (shape {data.shape}); a label image needs one id per "
            "pixel: save a single-channel (grey) PNG"
        )
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
        For another suffix, a dimension other than 2 or 3, non-integer or negative labels, ids
        above 2**32 - 1, or a file the system refuses to write (the message names it).
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
    try:
        tifffile.imwrite(
            path,
            labels.astype(dtype, copy=False),
            photometric="minisblack",
            compression="zlib",
            metadata={"axes": "YX" if labels.ndim == 2 else "ZYX"},
        )
    except OSError as error:  # a folder in the way, read-only folder, full disk
        raise InputError(f"{path}: cannot write the label image ({error.strerror or error})") from error


#: Axis letters ``read_image`` accepts in ``axes``: rows, columns, channels, planes, time points.
IMAGE_AXES = "YXCZT"
#: A third axis this long or shorter may be channels (grey + alpha, RGB, RGBA).
MAX_CHANNELS = 4


def read_image(path, axes=None):
    """A 2-D image file as a (H, W) or (H, W, C) array.

    TIFF is read with tifffile (first series), other formats with scikit-image.

    Layout rule, without ``axes``: 2-D is a grey image; 3-D with a last axis of at most
    :data:`MAX_CHANNELS` is channels-last, else with a first axis of at most that many it is
    channels-first (a planar TIFF) and turned channels-last. Anything else (a third axis longer
    than that at both ends, a TIFF whose axes say Z or T, four or more dimensions) is a stack or
    volume, which nucleai does not segment yet: it is refused, naming the file, rather than read
    as an image with hundreds of channels.

    Parameters
    ----------
    path : str or Path
    axes : str, optional
        The file's layout in letters of :data:`IMAGE_AXES` (``"YX"``, ``"YXC"``, ``"CYX"``), for
        files the rule above reads wrongly. Z or T refuse the file (3-D is not supported yet).

    Raises
    ------
    InputError
        For an unreadable file, ``axes`` that do not fit the file, or a stack or volume.
    """
    path = Path(path)
    stack_axes = ""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                stack_axes = "".join(a for a in series.axes if a in "ZT")
                image = series.asarray()
        else:
            image = skimage.io.imread(path)
    except Exception as error:  # any decoder failure is the file's problem
        raise InputError(f"{path}: cannot read the image ({type(error).__name__}: {error})") from error
    image = np.asarray(image)
    if axes is not None:
        return _apply_axes(image, axes, path)
    if stack_axes or image.ndim > 3 or (
        image.ndim == 3 and min(image.shape[0], image.shape[-1]) > MAX_CHANNELS
    ):
        raise InputError(
            f"{path}: shape {image.shape} looks like a stack or volume"
            f"{f' (TIFF axes {series.axes})' if stack_axes else ''}; nucleai segments 2-D images "
            "(3-D is not supported yet): save one plane or a projection per file, or give the "
            "layout with axes (--axes YXC / CYX) if this is one image with many channels"
        )
    if image.ndim == 3 and image.shape[-1] > MAX_CHANNELS:
        image = np.moveaxis(image, 0, -1)  # channels-first (C, H, W)
    return image


def check_axes(axes):
    """``axes`` in capitals if they are letters of :data:`IMAGE_AXES`, each once, Y and X among
    them; else an InputError with field ``"axes"`` (so a command can refuse them before reading
    any file)."""
    axes = str(axes).upper()
    if len(set(axes)) != len(axes) or set(axes) - set(IMAGE_AXES) or not {"Y", "X"} <= set(axes):
        raise InputError(
            f"axes {axes!r}: give each of Y and X once, optionally C, e.g. YX, YXC or CYX", "axes"
        )
    return axes


def _apply_axes(image, axes, path):
    """``image`` reordered to (H, W[, C]) as ``axes`` describe it, or an InputError."""
    axes = check_axes(axes)
    if len(axes) != image.ndim:
        raise InputError(f"{path}: axes {axes!r} name {len(axes)} axes but the image has shape {image.shape}", "axes")
    volume = [a for a in axes if a in "ZT"]
    if volume:
        raise InputError(
            f"{path}: axes {axes!r} hold {'/'.join(volume)} planes; nucleai segments 2-D images "
            "(3-D and time series are not supported yet): save one plane per file",
            "axes",
        )
    order = [axes.index(a) for a in "YXC" if a in axes]
    return np.transpose(image, order)


def label_image_doubt(labels):
    """Why a label image read from a file looks like something else, or None.

    A file of the wrong kind scores without error, and nonsense: a binary mask (0/255 or 0/1)
    is one object covering every nucleus, a raw intensity image one "object" per grey level. Both
    show as ids split into many separate regions, which a label image (one region per id, bar a
    few fragments) does not have.

    Parameters
    ----------
    labels : ndarray of int
        A 2-D label image.

    Returns
    -------
    str or None
        The doubt in words, for a warning naming the file.
    """
    import skimage.measure

    labels = np.asarray(labels)
    ids = np.unique(labels[labels > 0])
    if labels.ndim != 2 or ids.size == 0:
        return None
    regions = int(skimage.measure.label(labels, background=0, connectivity=2).max())
    if ids.size == 1 and regions > 1:
        return (f"one id ({ids[0]}) covers {regions} separate regions: a binary mask, not a label "
                "image (give each object its own id, e.g. with skimage.measure.label)")
    if regions > 2 * ids.size:
        return (f"its {ids.size} ids cover {regions} separate regions: an intensity image or "
                "mask rather than a label image (one id per object)?")
    return None
