"""Refining the objects of one image: the U-Net's probability map, then the rules.

The one function the command line (``nucleai refine``, ``nucleai segment --refine``) and the
RefineContoursUNet module share, so that all three refine identically.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..timing import timed
from .params import check_parameters
from .rules import refine
from .unet import predict_probability


@dataclass
class RefinedImage:
    """The refinement of one image's objects and the probability map it used."""

    refinement: object  # nucleai.refine.rules.Refinement
    prob: np.ndarray


def refine_image(image, labels, model, *, params=None, tiles="auto", channel=None, percentiles=None,
                 timings=None):
    """Refine the objects ``labels`` of ``image`` with a refinement U-Net.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    labels : (H, W) int array
        The objects to refine (any upstream method), same height and width as the image.
    model : nucleai.refine.unet.UNetModel
    params : mapping, optional
        p1 ... p6; missing ones from the model folder (refine.json, else the published values).
    tiles, channel, percentiles, timings
        As for :func:`nucleai.refine.unet.predict_classes`; ``timings`` also gets ``"refine"``.

    Returns
    -------
    RefinedImage

    Raises
    ------
    InputError
        When image and objects differ in size (before the network runs), or for anything the
        prediction or the rules refuse.
    """
    image_shape = np.shape(image)[:2]
    labels_shape = np.shape(labels)
    if len(labels_shape) != 2 or labels_shape != image_shape:
        raise InputError(
            f"the objects are {'x'.join(map(str, labels_shape))} but the image is "
            f"{'x'.join(map(str, image_shape))}; they must have the same size"
        )
    params = check_parameters({**model.spec.params, **(params or {})})
    prob = predict_probability(image, model, tiles=tiles, channel=channel, percentiles=percentiles,
                               timings=timings)
    with timed(timings, "refine"):
        refinement = refine(labels, prob, params)
    return RefinedImage(refinement=refinement, prob=prob)
