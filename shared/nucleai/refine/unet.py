"""The refinement U-Net: network, model folder, and tiled prediction of the nucleus probability.

nucleAIzer moves every object's contour to a U-Net's thresholded probability map
(:mod:`nucleai.refine.rules`). The network here classifies every pixel as background, nucleus
interior or nucleus boundary (the pixels of a nucleus with a 4-neighbour of another label);
the boundary class makes it learn where touching nuclei part, which a plain foreground target
blurs. The map the rules use is the *nucleus probability* ``1 - P(background)`` = interior +
boundary.

Model folder (a refinement model is a folder, like a detector)
    ``config.json``     ``{"kind": "unet", "n_channel_in", "n_classes": 3, "unet_n_depth",
                        "unet_n_filter_base", "unet_n_conv_per_depth", "percentiles"}``;
    ``weights_best.h5`` (or ``weights_last.h5``) Keras HDF5 weights, as the training loop
                        (:mod:`nucleai.train.loop`) writes them;
    ``refine.json``     the tuned p1 ... p6 (:mod:`nucleai.refine.params`; published values
                        without it);
    ``MODEL.md``        the model card.
    The ``kind`` tells it apart from a star-convex (stardist) model folder. The folder is found,
    checked and loaded (once per process) by :mod:`nucleai.models`: ``models.load(name_or_path,
    kind="unet")`` gives a :class:`UNetModel`; this module defines its spec and network.

Network
    A plain 2-D U-Net: per level ``unet_n_conv_per_depth`` 3x3 ReLU convolutions (``base *
    2**level`` filters), 2x2 max pooling, the same at the bottom, then 2x upsampling,
    concatenation with the skip connection and the convolutions again; a 1x1 softmax head with
    3 classes. Inputs are normalised to their (1, 99.8) percentiles as for the detector.

Tiling
    Images whose padded side exceeds :data:`TILE_SIDE` are predicted in tiles whose cores
    partition the image, each with :func:`receptive_radius` pixels of context (the layout of
    :func:`nucleai.predict.tile_layout`); the network is fully convolutional, so tiled and
    whole-image predictions agree to float precision.
"""
import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..models import CONFIG_FILE, as_float32, compiled_forward, div_by, find_weights, load_weights
from ..runtime import FLOAT32, dtype_policy, prepare_tensorflow
from ..predict import (
    PERCENTILES, auto_tiles, normalize, pad_to_multiple, parse_tiles, select_channels, tile_layout,
)
from ..timing import timed
from .params import PARAMETERS_FILE, read_parameters

KIND = "unet"
CLASSES = ("background", "interior", "boundary")
#: Auto tiling keeps every tile's core at most this many pixels per side (memory of the
#: 16-filter first level at 1024 x 1024: 64 MB per feature map).
TILE_SIDE = 1024


def unet_config(n_channel_in=1, depth=3, filter_base=16, conv_per_depth=2, percentiles=PERCENTILES):
    """A refinement U-Net's ``config.json`` dictionary."""
    return {
        "kind": KIND, "n_channel_in": int(n_channel_in), "n_classes": len(CLASSES),
        "classes": list(CLASSES), "unet_n_depth": int(depth), "unet_n_filter_base": int(filter_base),
        "unet_n_conv_per_depth": int(conv_per_depth), "percentiles": [float(p) for p in percentiles],
    }


def check_config(config, source="config.json"):
    """Validate a refinement U-Net config; returns it. Raises InputError naming ``source``."""
    if config.get("kind") != KIND:
        raise InputError(
            f"{source}: not a refinement U-Net (kind {config.get('kind', 'missing')!r}, expected "
            f"{KIND!r}); a star-convex model folder is used by RunStarConvex / nucleai segment"
        )
    for key in ("n_channel_in", "unet_n_depth", "unet_n_filter_base", "unet_n_conv_per_depth"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{source}: {key} must be a whole number >= 1, found {value!r}")
    if config.get("n_classes") != len(CLASSES):
        raise InputError(f"{source}: n_classes must be {len(CLASSES)} ({', '.join(CLASSES)})")
    percentiles = config.get("percentiles", list(PERCENTILES))
    if not (isinstance(percentiles, list) and len(percentiles) == 2 and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise InputError(f"{source}: percentiles must be [low, high] within 0 ... 100, found {percentiles!r}")
    return config


def receptive_radius(config):
    """Pixels of context on each side that determine one output pixel (an upper bound).

    Each 3x3 convolution at level ``l`` widens the field by ``2**l`` per side, on the way down
    and up; each pooling adds up to ``2**l`` more.
    """
    depth, n_conv = int(config["unet_n_depth"]), int(config["unet_n_conv_per_depth"])
    convs = n_conv * (2 * sum(2**level for level in range(depth)) + 2**depth)
    return convs + sum(2**level for level in range(depth))


def build_unet(config):
    """The Keras U-Net for a config (see the module docstring); softmax over :data:`CLASSES`."""
    import keras
    from keras import layers

    depth, base = int(config["unet_n_depth"]), int(config["unet_n_filter_base"])
    n_conv = int(config["unet_n_conv_per_depth"])

    def convolutions(x, filters):
        for _ in range(n_conv):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        return x

    inputs = keras.Input((None, None, int(config["n_channel_in"])), name="input")
    x, skips = inputs, []
    for level in range(depth):
        x = convolutions(x, base * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = convolutions(x, base * 2**depth)
    for level in reversed(range(depth)):
        x = layers.UpSampling2D(2)(x)
        x = layers.Concatenate()([x, skips[level]])
        x = convolutions(x, base * 2**level)
    outputs = layers.Conv2D(len(CLASSES), 1, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="refine_unet")


def target_classes(labels):
    """Training target of one label patch: one-hot (h, w, 3) background / interior / boundary.

    Boundary pixels are an object's pixels with a 4-neighbour of another label (background or
    another object), so touching nuclei are parted by their boundaries.
    """
    import skimage.segmentation

    labels = np.asarray(labels)
    boundary = skimage.segmentation.find_boundaries(labels, connectivity=1, mode="inner") & (labels > 0)
    classes = np.where(boundary, 2, (labels > 0).astype(np.int64))
    return np.eye(len(CLASSES), dtype=np.float32)[classes]


# --------------------------------------------------------------------------------------------
# Model folders (found, cached and loaded by nucleai.models: ``models.load(name, kind="unet")``)


@dataclass(frozen=True)
class UNetSpec:
    """A refinement model folder, checked; no TensorFlow involved.

    Attributes
    ----------
    path : Path
    config : dict
    weights : Path
    params : dict
        p1 ... p6 from refine.json, or the published values.
    params_from : str
        ``"refine.json"`` or ``"published"``.
    n_channel_in : int
    div_by : tuple of int
        Input sides must be multiples of these (:func:`nucleai.models.div_by`).
    """

    path: Path
    config: dict = field(repr=False)
    weights: Path
    params: dict
    params_from: str
    n_channel_in: int
    div_by: tuple

    kind = KIND

    @property
    def name(self):
        return self.path.name

    def files(self):
        """The files the model is built from, refine.json included (for cache keys: re-tuned
        parameters give a new model object)."""
        files = [self.path / CONFIG_FILE, self.weights]
        if (self.path / PARAMETERS_FILE).is_file():
            files.append(self.path / PARAMETERS_FILE)
        return files

    def build(self, precision=FLOAT32):
        """The loaded model (TensorFlow), computing in ``precision``; use
        :func:`nucleai.models.load` for the cached one."""
        return UNetModel(self, precision)


def unet_spec(path, config):
    """The :class:`UNetSpec` of a located refinement model folder and its config.json (use
    :func:`nucleai.models.read_spec` with ``kind="unet"``, which finds the folder).

    Raises
    ------
    InputError
        Naming the folder or file: config.json not a U-Net's, no weights file, refine.json
        unreadable or with parameters out of range.
    """
    config = check_config(config, source=str(path / CONFIG_FILE))
    weights = find_weights(path)
    params, params_from = read_parameters(path)
    return UNetSpec(path=path, config=config, weights=weights, params=params, params_from=params_from,
                    n_channel_in=int(config["n_channel_in"]), div_by=div_by(config))


class UNetModel:
    """A loaded refinement U-Net: its spec and one compiled forward pass."""

    def __init__(self, spec, precision=FLOAT32):
        prepare_tensorflow()
        self.spec = spec
        self.precision = precision
        with dtype_policy(precision):
            self.keras_model = load_weights(build_unet(spec.config), spec, "U-Net")
        keras_model = self.keras_model

        def forward(batch):
            return as_float32(keras_model(batch, training=False))

        self._forward = compiled_forward(forward, spec.n_channel_in)

    @property
    def name(self):
        return self.spec.name

    def predict_classes(self, x):
        """Class probabilities (h, w, 3) for one normalised (h, w, C) input, sides multiples of
        ``spec.div_by``."""
        with contextlib.redirect_stdout(io.StringIO()):
            out = self._forward(np.ascontiguousarray(x, dtype=np.float32)[np.newaxis])
        return np.asarray(out)[0]  # a view of TensorFlow's buffer, not a copy


# --------------------------------------------------------------------------------------------
# Prediction


def predict_classes(image, model, *, tiles="auto", channel=None, percentiles=None, timings=None):
    """Per-pixel class probabilities of one image, predicted in tiles when large.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    model : UNetModel
    tiles : "auto" or (ny, nx) or "YxX"
        ``"auto"``: tiles of at most :data:`TILE_SIDE` pixels per side.
    channel : int, optional
        For a multi-channel image and a one-channel model: the channel (0-based).
    percentiles : (low, high), optional
        Normalisation percentiles; the model's (config.json) by default.
    timings : dict, optional
        Seconds added under ``"normalize"`` and ``"network"``.

    Returns
    -------
    (H, W, 3) float32 array
        Probabilities of background, interior, boundary.
    """
    spec = model.spec
    percentiles = spec.config.get("percentiles", PERCENTILES) if percentiles is None else percentiles
    with timed(timings, "normalize"):
        x = select_channels(image, spec.n_channel_in, channel)
        shape = x.shape[:2]
        x = pad_to_multiple(normalize(x, *percentiles), spec.div_by)
    n_tiles = auto_tiles(x.shape[:2], TILE_SIDE) if tiles == "auto" else parse_tiles(tiles)
    overlap = receptive_radius(spec.config)
    layout = tile_layout(x.shape[:2], n_tiles, spec.div_by, (overlap, overlap))
    out = np.empty(x.shape[:2] + (len(CLASSES),), np.float32)
    with timed(timings, "network"):
        for window, core in layout:
            predicted = model.predict_classes(x[window])
            local = tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, window))
            out[core] = predicted[local]
    return out[: shape[0], : shape[1]]


def predict_probability(image, model, **options):
    """Nucleus probability ``1 - P(background)`` per pixel, (H, W) float32 in [0, 1].

    Takes the options of :func:`predict_classes`.
    """
    classes = predict_classes(image, model, **options)
    return np.clip(1.0 - classes[..., 0], 0.0, 1.0).astype(np.float32)
