"""The automatic model choice: what kind of image this is, which bundled model fits it, and why.

A user should not have to know which model fits which image (issue 18). Per image,
:func:`image_kind` decides from the pixels alone whether it is

``fluorescence``
    bright nuclei on a dark background (grey, or a colour composite of fluorescence channels);
``brightfield``
    dark nuclei on a bright background, grey (a grey image stored as RGB is grey);
``histology``
    a stained sample in colour (H&E and the like): real colour on a bright background;

and :func:`choose_model` looks the kind up in :data:`MODEL_TABLE`, the one place that says which
bundled model serves which kind. :func:`segment_auto` does both, prepares the image the way the
table says (the channels the model takes, and where the table says so one of nucleAIzer's cheap
levers: the haematoxylin density of a brightfield image, :func:`nucleai.stain.haematoxylin`)
and runs :func:`nucleai.predict.segment` (or :func:`nucleai.tta.segment_tta`) with the chosen
model. :func:`no_objects_warning` is for every
caller of ``segment``, automatic or not: a result without objects on an image that has contrast
gets a warning naming the likely cause (wrong polarity, wrong model) instead of a silent 0.

The statistics (plain numpy, on at most :data:`MAX_SAMPLES` evenly strided pixels)
    All three are ratios, so they do not depend on the intensity scale: the CLI's 8-bit pixels
    and CellProfiler's 0-1 copy of them decide the same.

    - *colour spread*: for an image with 3 or 4 channels (alpha ignored), the mean over pixels
      of the spread between the colour channels (max - min) after each channel's median is
      subtracted (a constant tint or white balance is no colour), relative to the grey range
      (the 0.5th to 99.5th percentile of the channels' mean). Exactly 0 for a grey image stored
      as RGB; on the DSB 2018 histology images 0.079 to 0.49. Colour from
      :data:`COLOUR_SPREAD` on.
    - *background level*: where the median pixel (most of an image is background: nuclei cover
      a minority of it) lies between the 0.5th and the 99.5th percentile, per channel, the
      brightest channel's (a stained sample is bright in some channel even where the tissue is
      dense). Fluorescence sits low (DSB: 0.00 to 0.14, and 0.50 for one faint image whose range is
      grey levels 1 to 5), brightfield and histology high (0.84 to 0.95 and 0.70 to 0.95).
    - *skew* of the grey values (third standardised moment): bright nuclei on a dark background
      are a bright tail, positive skew (DSB fluorescence: 0.7 to 24); dark nuclei on a bright
      background a dark tail, negative (brightfield -2.4 to -1.5). It decides the polarity only
      when the background level is within :data:`UNSURE_BACKGROUND` of the middle.

    The bright-background polarity is ``background level > 0.5`` (or, near 0.5, ``skew < 0``);
    the kind is histology for colour with a bright background, brightfield for grey with a
    bright background, fluorescence otherwise. An image without contrast (its percentiles
    equal, or every pixel masked) is :data:`NO_CONTRAST`: it gets the fluorescence row's model,
    which gives it no objects and the segmentation's own reason (blank, constant, all masked).
    All 516 DSB 2018 images of the team's copy (train, val and unlabeled: 460 fluorescence, 48
    histology, 8 brightfield, as its ``index.json`` labels them) get their kind.
"""
from dataclasses import dataclass, replace

import numpy as np

from . import models, predict
from .errors import InputError
from .stain import haematoxylin
from .timing import timed

FLUORESCENCE, BRIGHTFIELD, HISTOLOGY = "fluorescence", "brightfield", "histology"
#: The kind of an image with nothing to segment (no contrast, or every pixel masked).
NO_CONTRAST = "no contrast"
#: What the CLI's ``--model`` and the modules' bundled-model choice call the automatic choice.
AUTO = "auto"
#: The bundled model trained on every kind (issue 18); used where the table names it and it is bundled.
VERSATILE_MODEL = "versatile_nuclei"

#: What a model sees of the image: the image itself or its haematoxylin density
#: (:mod:`nucleai.stain`; plain inversion, which it replaced, scored lower: see below).
AS_IS, HAEMATOXYLIN = "none", "haematoxylin"

#: kind -> the models that serve it, best first: (bundled model, what it sees of the image). The
#: first one bundled is used. Held-out DSB scores decided the rows (float32; the 4 annotated DSB
#: 2018 brightfield images and the 4 histology images of fold 0 of ``histo_nuclei``'s model card,
#: none of which the model trained on; ``scripts/train_versatile_model.py`` splits them the same):
#:
#: - brightfield: ``histo_nuclei`` on the haematoxylin density 0.134 / 0.253 / 0.271 / 0.285
#:   (mean 0.236), on the image as it is 0.097 / 0.153 / 0.204 / 0.182 (0.159), inverted 0.179;
#:   ``versatile_nuclei`` trained without these images (its two leave-two-out folds) on the
#:   haematoxylin density 0.185, as it is 0.174; ``fluo_nuclei`` on the haematoxylin density
#:   0.119, inverted 0.081, as it is 0.000. The density helped ``histo_nuclei`` and ``fluo_nuclei``
#:   on every image, ``versatile_nuclei``'s folds on 3 of the 4.
#: - histology: ``histo_nuclei`` as it is 0.229 (haematoxylin 0.247 but lower on 2 of the 4
#:   images, inverted 0.238: neither is kept), ``versatile_nuclei``'s fold 0 as it is 0.191,
#:   on the haematoxylin density 0.256 (higher on 3 of the 4 images; not yet switched to: see
#:   its model card).
#: - fluorescence: ``fluo_nuclei``, the specialist (``versatile_nuclei``: see its model card).
MODEL_TABLE = {
    FLUORESCENCE: (("fluo_nuclei", AS_IS), (VERSATILE_MODEL, AS_IS)),
    BRIGHTFIELD: (("histo_nuclei", HAEMATOXYLIN), (VERSATILE_MODEL, HAEMATOXYLIN), ("fluo_nuclei", HAEMATOXYLIN)),
    HISTOLOGY: (("histo_nuclei", AS_IS), (VERSATILE_MODEL, AS_IS)),
    NO_CONTRAST: (("fluo_nuclei", AS_IS), (VERSATILE_MODEL, AS_IS)),
}

#: Colour spread from which an image with 3 or 4 channels is colour (see the module docstring).
COLOUR_SPREAD = 0.04
#: Within this distance of 0.5 the background level is unsure and the skew decides the polarity.
UNSURE_BACKGROUND = 0.1
#: The statistics use at most this many pixels (evenly strided), so a large image costs little.
MAX_SAMPLES = 2**20
#: Percentiles that bound the range the background level and colour spread are measured in.
RANGE_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class ImageEvidence:
    """The statistics :func:`image_kind` decided on (see the module docstring); ``background`` and
    ``skew`` are None for an image without contrast."""

    channels: int
    colour_spread: float
    background: float
    skew: float

    def __str__(self):
        if self.background is None:
            return "no contrast"
        return (f"colour spread {self.colour_spread:.3f}, background at {self.background:.2f} of the "
                f"range, skew {self.skew:+.2f}")


@dataclass(frozen=True)
class ModelDecision:
    """What the automatic choice decided for one image.

    Attributes
    ----------
    kind : str
        :data:`FLUORESCENCE`, :data:`BRIGHTFIELD`, :data:`HISTOLOGY` or :data:`NO_CONTRAST`.
    model : str
        The bundled model used.
    preparation : str
        What the model saw of the image: :data:`AS_IS` or :data:`HAEMATOXYLIN`.
    evidence : ImageEvidence
    """

    kind: str
    model: str
    preparation: str
    evidence: ImageEvidence

    def __str__(self):
        return f"{self.kind} ({self.evidence}) -> {self.model}{seen_as(self.preparation)}"


def seen_as(preparation):
    """How a model saw the image, for messages: "" for the image as it is."""
    return {AS_IS: "", HAEMATOXYLIN: " on the haematoxylin density"}[preparation]


def _colour(x):
    """The colour channels (last axis) of an image: an alpha channel (4th of 4) dropped."""
    return x[..., :3] if x.shape[-1] == 4 else x


def _pixels(image, mask):
    """The image as (N, C) float64 samples: inside ``mask``, at most :data:`MAX_SAMPLES`."""
    x = np.asarray(image)
    x = predict.select_channels(x, 1 if x.ndim == 2 else x.shape[2])  # the checks segment makes
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise InputError("image has NaN or infinite pixels")
    if mask is not None and np.shape(mask) != x.shape[:2]:
        raise InputError(f"mask has shape {np.shape(mask)} but the image has {x.shape[:2]}")
    samples = x.reshape(-1, x.shape[2]) if mask is None else x[np.asarray(mask, bool)]
    step = max(1, -(-len(samples) // MAX_SAMPLES))
    return _colour(samples[::step]).astype(np.float64), x.shape[2]


def image_kind(image, mask=None):
    """The kind of image this is, from its pixels (see the module docstring for the rule).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        Any numeric dtype and intensity scale.
    mask : (H, W) bool array, optional
        Decide on these pixels only.

    Returns
    -------
    kind : str
        :data:`FLUORESCENCE`, :data:`BRIGHTFIELD`, :data:`HISTOLOGY` or :data:`NO_CONTRAST`.
    evidence : ImageEvidence

    Raises
    ------
    InputError
        For what :func:`nucleai.predict.segment` refuses too: no 2-D image, no pixels, a
        non-numeric dtype, NaN or infinite pixels.
    """
    samples, channels = _pixels(image, mask)
    no_contrast = ImageEvidence(channels, 0.0, None, None)
    if len(samples) == 0:
        return NO_CONTRAST, no_contrast
    grey = samples.mean(axis=1)
    lo, hi = np.percentile(grey, RANGE_PERCENTILES)
    if not hi > lo:
        return NO_CONTRAST, no_contrast
    low, median, high = np.percentile(samples, (RANGE_PERCENTILES[0], 50, RANGE_PERCENTILES[1]), axis=0)
    per_channel = (median - low) / np.where(high > low, high - low, np.inf)
    background = float(per_channel.max())
    spread = 0.0
    if samples.shape[1] == 3:
        centred = samples - median
        spread = float((centred.max(axis=1) - centred.min(axis=1)).mean() / (hi - lo))
    z = (grey - grey.mean()) / grey.std()
    skew = float((z**3).mean())
    evidence = ImageEvidence(channels, spread, background, skew)
    if abs(background - 0.5) < UNSURE_BACKGROUND:
        bright_background = skew < 0
    else:
        bright_background = background > 0.5
    if not bright_background:
        return FLUORESCENCE, evidence
    return (HISTOLOGY if spread >= COLOUR_SPREAD else BRIGHTFIELD), evidence


def choose_model(kind, available=None):
    """The model for images of ``kind``: the first bundled one of its :data:`MODEL_TABLE` row.

    Parameters
    ----------
    kind : str
    available : iterable of str, optional
        The bundled models (default :func:`nucleai.models.bundled_models`).

    Returns
    -------
    model : str
    preparation : str
        What the model is to see of the image (:data:`AS_IS` or :data:`HAEMATOXYLIN`).

    Raises
    ------
    InputError
        When none of the row's models is bundled, naming them.
    """
    available = set(models.bundled_models() if available is None else available)
    for model, preparation in MODEL_TABLE[kind]:
        if model in available:
            return model, preparation
    wanted = " or ".join(model for model, _ in MODEL_TABLE[kind])
    raise InputError(f"the automatic model choice has no model for {kind} images: it needs {wanted} "
                     f"in the bundled models ({models.models_dir()})")


def models_in_use(available=None):
    """Every model the automatic choice can pick with the bundled models, in table order.

    Raises
    ------
    InputError
        When some kind of image would have no model (:func:`choose_model`).
    """
    chosen = [choose_model(kind, available)[0] for kind in MODEL_TABLE]
    return list(dict.fromkeys(chosen))


def describe_choices(available=None):
    """What the automatic choice does with the bundled models, one ``kind -> model`` per kind of
    image, for help texts (so they follow :data:`MODEL_TABLE`)."""
    described = []
    for kind in (FLUORESCENCE, HISTOLOGY, BRIGHTFIELD):
        try:
            model, preparation = choose_model(kind, available)
        except InputError:
            model, preparation = "no bundled model", AS_IS
        described.append(f"{kind} -> {model}{seen_as(preparation)}")
    return "; ".join(described)


def decide(image, mask=None, available=None):
    """:func:`image_kind` and :func:`choose_model` in one: the :class:`ModelDecision` for an image."""
    kind, evidence = image_kind(image, mask)
    model, preparation = choose_model(kind, available)
    return ModelDecision(kind, model, preparation, evidence)


def prepare(image, decision, n_channel_in, channel=None):
    """The image as the decided model is to see it.

    A one-channel model gets, of an image with several different channels, the ``channel``
    given (counted from 0) or else the mean of the colour channels (a composite's nuclei stay
    where they are); a model of several channels gets the image as it is (:func:`nucleai.predict.
    select_channels` makes its channels). When the decision says so the model gets the
    haematoxylin density (:func:`nucleai.stain.haematoxylin`, grey float32) of the image (of the
    ``channel`` given, for a one-channel model), which colour deconvolution needs in colour.
    """
    x = np.asarray(image)
    if decision.preparation == HAEMATOXYLIN:
        if n_channel_in == 1 and channel is not None and x.ndim == 3:
            x = predict.select_channels(x, 1, channel)[..., 0]
        return haematoxylin(x)
    if n_channel_in == 1 and x.ndim == 3 and x.shape[2] > 1:
        colour = _colour(x)
        identical = all(np.array_equal(colour[..., 0], colour[..., k]) for k in range(1, colour.shape[2]))
        if channel is not None or identical:
            x = predict.select_channels(x, 1, channel)[..., 0]
        else:
            x = colour.mean(axis=2, dtype=np.float32)
    return x


def segment_auto(image, options=predict.SegmentOptions(), *, tta=None, mask=None, return_prob_map=False,
                 timings=None, available=None, precision="float32"):
    """Decide the image's kind, choose the model, prepare the image and segment it.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    options : nucleai.predict.SegmentOptions
        As for :func:`nucleai.predict.segment`; ``channel`` is the channel a one-channel model
        segments in an image with several different channels (see :func:`prepare`).
    tta : nucleai.tta.TTAOptions, optional
        Segment under test-time augmentation (:func:`nucleai.tta.segment_tta`).
    mask, return_prob_map
        As for :func:`nucleai.predict.segment`; the kind is decided inside the mask.
    timings : dict, optional
        Seconds added under ``"choose"`` (the decision and the preparation) and the
        segmentation's stages.
    available : iterable of str, optional
        The bundled models to choose from (default: all).
    precision : str
        What the chosen network computes in (:func:`nucleai.models.load`).

    Returns
    -------
    result : nucleai.predict.Segmentation or nucleai.tta.TTASegmentation
    decision : ModelDecision

    Raises
    ------
    InputError
        For an image :func:`image_kind` or the segmentation refuses, and when the table has no
        bundled model for the image's kind or the model does not load.
    """
    with timed(timings, "choose"):
        decision = decide(image, mask, available)
    model = models.load(decision.model, precision=precision)
    with timed(timings, "choose"):
        x = prepare(image, decision, model.spec.n_channel_in, options.channel)
    options = replace(options, channel=None)
    if tta is None:
        result = predict.segment(x, model, options, mask=mask, return_prob_map=return_prob_map, timings=timings)
    else:
        from .tta import segment_tta

        result = segment_tta(x, model, tta, options, mask=mask, return_prob_map=return_prob_map, timings=timings)
    return result, decision


def _fits(model, kind):
    """Whether the table runs ``model`` on ``kind`` images as they are."""
    return (model, AS_IS) in MODEL_TABLE.get(kind, ())


def no_objects_warning(image, result, model, decision=None, mask=None):
    """The warning for a segmentation that found nothing in an image that is not blank, else None.

    Parameters
    ----------
    image : array
        The image as given to the model choice (before channel selection or inversion).
    result : nucleai.predict.Segmentation or nucleai.tta.TTASegmentation
    model : str
        The name of the model that ran.
    decision : ModelDecision, optional
        The automatic choice's, when it chose; otherwise the kind is decided here.
    mask : (H, W) bool array, optional

    Returns
    -------
    str or None
        None when there are objects, or when the image had nothing to segment (its
        ``empty_reason``: blank, constant, all masked). Otherwise one sentence: what the image
        looks like, and the likely cause.
    """
    if result.count or result.empty_reason is not None:
        return None
    if decision is None:
        kind, evidence = image_kind(image, mask)
    else:
        kind, evidence = decision.kind, decision.evidence
    prepared = [p for m, p in MODEL_TABLE.get(kind, ()) if m == model]  # how the choice runs it on this kind
    if decision is None and prepared and AS_IS not in prepared and _fits(model, FLUORESCENCE):
        cause = (f"likely the wrong polarity: {model} finds bright nuclei on a dark background and this image "
                 "has dark nuclei on a bright background; use the automatic model choice (it picks a model "
                 "for such images) or invert the image")
    elif decision is None and prepared and AS_IS not in prepared:
        cause = (f"the automatic model choice runs {model}{seen_as(prepared[0])} of {kind} images, not the "
                 "image as it is; use it")
    elif decision is None and any(m == model for row in MODEL_TABLE.values() for m, _ in row) and not prepared:
        kinds = sorted(k for k in (FLUORESCENCE, BRIGHTFIELD, HISTOLOGY) if _fits(model, k))
        cause = (f"likely the wrong model: {model} is for {' and '.join(kinds)} images; use the automatic "
                 "model choice")
    elif decision is not None and decision.preparation != AS_IS:
        cause = (f"{model} ran{seen_as(decision.preparation)}, which makes dark nuclei bright; if its nuclei "
                 "are bright on a dark background the polarity was judged wrong (choose the model yourself), "
                 "otherwise it may hold no nuclei or nuclei of a very different size (rescale)")
    else:
        cause = ("likely causes: the wrong polarity (does the model expect bright nuclei on a dark background, "
                 "or dark on bright?), a model not trained on this kind of image, nuclei of a very different "
                 "size (rescale), thresholds set too high, or no nuclei at all")
    return f"no objects found although the image is not blank (it looks like {kind}: {evidence}); {cause}"
