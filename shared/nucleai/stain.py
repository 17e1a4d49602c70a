"""Colour deconvolution: the haematoxylin density of a brightfield or histology image.

Nuclei take up haematoxylin, so in its density (Ruifrok & Johnston's colour deconvolution, via
:func:`skimage.color.rgb2hed`) they are bright on a dark background whatever the colour of the
counter-stain. For a grey image the density is the optical density ``-log(I / max I)`` up to a
factor: dark nuclei on a bright background become bright on dark, like inversion but on the
log scale light is absorbed in. One of nucleAIzer's cheap levers (issue 18); on the 4 annotated
DSB 2018 brightfield images it raised every model's score (see ``nucleai.modality.MODEL_TABLE``).
"""
import numpy as np
from skimage.color import rgb2hed

from .predict import select_channels


def haematoxylin(image):
    """The haematoxylin density of ``image`` as a float32 grey image.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        Grey (repeated to RGB), RGB, or RGBA (alpha dropped), as a three-channel model takes it
        (:func:`nucleai.predict.select_channels`); any intensity scale: the image is divided by
        its own maximum first, so an 8-bit image and its 0-1 copy give the same result.

    Returns
    -------
    (H, W) float32 array, >= 0.

    Raises
    ------
    InputError
        For an image a three-channel model cannot take.
    """
    rgb = select_channels(image, 3).astype(np.float64)
    top = rgb.max()
    return rgb2hed(rgb / top if top > 0 else rgb)[..., 0].astype(np.float32)
