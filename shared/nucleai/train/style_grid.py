"""A picture to judge one style's synthetic images against its real ones.

Style augmentation only helps when the generated images look like the style they imitate, and
no number says that as well as a look: :func:`save_style_grid` writes a PNG with a row of real
images and a row of synthetic ones, each with the outlines of its objects, so a person can see
at once whether textures, colours, object sizes and layouts match. The figure is drawn on its
own ``matplotlib.figure.Figure`` with the Agg canvas, leaving pyplot's global state alone.
"""
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from ..errors import InputError

__all__ = ["save_style_grid"]

#: Colour of the object outlines (RGB in [0, 1]): yellow shows on dark and on pale images.
OUTLINE = (1.0, 0.9, 0.0)


def save_style_grid(path, real_images, real_masks, synthetic_images, synthetic_masks, *,
                    title=None, n=4):
    """Write a PNG with a "real" and a "synthetic" row of images with their mask outlines.

    Parameters
    ----------
    path : str or Path
        The PNG to write; its folder must exist.
    real_images, synthetic_images : sequences of (H, W) or (H, W, 3) arrays
        uint8 images are shown as they are, float images as they are when within [0, 1] and
        stretched from their minimum to their maximum otherwise.
    real_masks, synthetic_masks : sequences of (H, W) integer label images
        One per image, of the image's height and width.
    title : str, optional
        Figure title (e.g. the style's name).
    n : int
        At most this many images per row (fewer are shown when fewer are given).

    Raises
    ------
    InputError
        Nothing to show, images and masks that do not pair up, a missing folder.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    rows = []
    for name, images, masks in (("real", real_images, real_masks),
                                ("synthetic", synthetic_images, synthetic_masks)):
        images, masks = list(images), list(masks)
        if len(images) != len(masks):
            raise InputError(f"{len(images)} {name} image(s) but {len(masks)} {name} mask(s)")
        if images:
            rows.append((name, [_overlay(image, mask, f"{name} image {i}")
                                for i, (image, mask) in enumerate(zip(images[:n], masks[:n]))]))
    if not rows:
        raise InputError("no real and no synthetic images: nothing to show")
    n_cols = max(len(panels) for _, panels in rows)
    figure = Figure(figsize=(2.5 * n_cols, 2.6 * len(rows) + (0.4 if title else 0)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), n_cols, squeeze=False)
    for (name, panels), row in zip(rows, axes):
        for j, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(panels):
                ax.imshow(panels[j], interpolation="nearest")
            else:
                ax.set_axis_off()
        row[0].set_ylabel(name, fontsize=12)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def _overlay(image, mask, what):
    """RGB float image in [0, 1] with the mask's object outlines painted in OUTLINE."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(f"{what}: grey or RGB (H, W[, 3]) expected, got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise InputError(f"{what}: mask shape {mask.shape} differs from the image's {image.shape[:2]}")
    if image.dtype == np.uint8:
        rgb = image.astype(np.float64) / 255
    else:
        rgb = image.astype(np.float64)
        lo, hi = rgb.min(), rgb.max()
        if lo < 0 or hi > 1:
            rgb = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., np.newaxis], 3, axis=2)
    rgb[find_boundaries(mask, mode="inner")] = OUTLINE
    return rgb
