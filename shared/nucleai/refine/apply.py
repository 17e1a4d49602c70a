"""Refining the objects of one image: the U-Net's probability map, then the rules.

The one function the command line (``nucleai refine``, ``nucleai segment --refine``) and the
RefineContoursUNet module share, so that all three refine identically, and the one options object
they fill (:class:`RefineOptions`), so that every option is checked in one place.
"""
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..options import check_number
from ..predict import NothingToSegment, parse_tiles
from ..timing import timed
from .params import NAMES, check_parameter
from .rules import refine
from .unet import predict_probability


@dataclass(frozen=True)
class RefineOptions:
    """How to refine one image's objects, checked once when made.

    Attributes
    ----------
    p1, p2, p3, p4, p5, p6 : number or None
        The rules' parameters (:mod:`nucleai.refine.params`: meaning and valid range of each);
        None takes the model's (its ``refine.json``, else the published values).
    tiles : "auto" or (ny, nx)
        Tiles of the U-Net prediction; ``"auto"``: tiles of at most
        :data:`nucleai.refine.unet.TILE_SIDE` pixels per side. ``"YxX"`` text is accepted.
    channel : int or None
        For a colour image and a one-channel model: the channel the U-Net sees, from 0 (None: a
        grey image, or one whose channels are identical).

    Raises
    ------
    InputError
        With ``field`` set to the option at fault.
    """

    p1: float = None
    p2: int = None
    p3: float = None
    p4: int = None
    p5: int = None
    p6: float = None
    tiles: object = "auto"
    channel: int = None

    def __post_init__(self):
        for name in NAMES:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_parameter(name, getattr(self, name)))
        object.__setattr__(self, "tiles", parse_tiles(self.tiles))
        if self.channel is not None:
            object.__setattr__(self, "channel", check_number(self.channel, "channel", low=0, integer=True))

    @property
    def given(self):
        """The parameters set here (not None), as a dict."""
        return {name: getattr(self, name) for name in NAMES if getattr(self, name) is not None}

    def parameters(self, tuned):
        """The complete p1 ... p6: those set here, the others from ``tuned`` (the model's)."""
        return {**tuned, **self.given}


@dataclass
class RefinedImage:
    """The refinement of one image's objects and the probability map it used.

    ``empty_reason`` is :data:`nucleai.predict.BLANK` or :data:`~nucleai.predict.CONSTANT` for an
    image without contrast (then the refinement has no objects and ``prob`` is 0), else None.
    """

    refinement: object  # nucleai.refine.rules.Refinement
    prob: np.ndarray
    empty_reason: str = None


def refine_image(image, labels, model, options=RefineOptions(), *, timings=None):
    """Refine the objects ``labels`` of ``image`` with a refinement U-Net.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    labels : (H, W) int array
        The objects to refine (any upstream method), same height and width as the image.
    model : nucleai.refine.unet.UNetModel
    options : RefineOptions
        Parameters not set there come from the model folder (refine.json, else the published
        values).
    timings : dict, optional
        Seconds added under ``"normalize"``, ``"network"`` and ``"refine"``.

    Returns
    -------
    RefinedImage
        For a blank or constant image (nothing the U-Net could see, as :func:`nucleai.predict.
        segment` decides it) no objects, a probability map of 0 and the ``empty_reason``: an image
        without contrast has no nuclei to move contours to.

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
    empty_reason = None
    try:
        prob = predict_probability(image, model, tiles=options.tiles, channel=options.channel, timings=timings)
    except NothingToSegment as blank:
        empty_reason, prob, labels = blank.reason, np.zeros(image_shape, np.float32), np.zeros(labels_shape, np.uint16)
    with timed(timings, "refine"):
        refinement = refine(labels, prob, options.parameters(model.spec.params))
    return RefinedImage(refinement=refinement, prob=prob, empty_reason=empty_reason)
