"""Mask-to-image generators for style augmentation: a small pix2pix (conditional GAN) per style.

nucleAIzer clusters the unannotated target images by style, trains one image-to-image network
per cluster that turns a nucleus mask into an image of that style, then renders synthetic masks
(real and simulated nucleus shapes) into realistic training images, so the segmentation network
sees annotated examples of every style. The network is pix2pix (Isola et al. 2017): a U-Net
generator trained against a PatchGAN discriminator that judges (mask, image) pairs, with the
objective ``adversarial + l1_weight * L1`` (lambda = 100): L1 gets the low frequencies (where
nuclei are, how bright), the discriminator the texture of the style that L1 alone blurs.

What the generator sees
    Two channels made from a label image (ints, 0 = background), each scaled from {0, 1} to
    {-1, 1}: the foreground ``labels > 0`` and the object boundaries (the objects' own pixels
    next to another label, :func:`skimage.segmentation.find_boundaries` mode ``"inner"``). The
    boundary channel is what keeps touching nuclei apart in the synthetic image: from the
    foreground alone the generator would paint two touching nuclei as one blob, and the
    synthetic image would contradict its own labels.

Images
    Every image is stretched from its own minimum ... maximum to -1 ... 1, whatever its type,
    so that an 8-bit file and CellProfiler's copy of it (the values divided by 255) train the
    same generator, as they train the same detector (:mod:`nucleai.train.data`). Microscopes
    rarely fill a 16-bit range, so a fixed scale would also teach the generator an almost black
    style; the output is 8-bit in any case. Grey images are repeated to 3 channels for a
    3-channel generator; colour images are averaged to grey for a 1-channel one (grey
    fluorescence is often stored as RGB(A) with equal channels); an alpha channel is dropped.

Networks
    Generator: a U-Net with ``depth`` stride-2 4x4 convolutions down (``n_filters * 2**level``
    filters, at most 8x), LeakyReLU 0.2, and as many stride-2 4x4 transposed convolutions up,
    ReLU, each concatenated with the encoder's output of the same size; ``tanh`` output.
    Normalisation is per image (instance normalisation: Keras' GroupNormalization with one
    group per channel) rather than batch normalisation: with pix2pix's batch of 1 the two are
    the same in training, but instance normalisation needs no moving statistics, so rendering
    (training mode off) behaves as training did. The first and the innermost layer are not
    normalised (a 1x1 bottleneck would be normalised to zero), and the innermost is followed by
    a ReLU, as in the paper's U-Net (it also spares TensorFlow's fused-kernel rewriter an error
    it reports for a LeakyReLU there). No dropout: the generator is a
    deterministic function of the mask, which is all style augmentation needs.
    Discriminator: a PatchGAN on ``concat(mask channels, image)``: three stride-2 and one
    stride-1 4x4 convolutions (``n_filters`` ... ``4 * n_filters``) and a 4x4 convolution to
    one logit per patch; receptive field 70 x 70 pixels, as in the paper.

Training
    Each step draws ``batch_size`` random ``size`` x ``size`` crops (images smaller than the
    crop are reflection-padded), flipped and rotated by multiples of 90 degrees alike in mask
    and image; then one Adam step (learning rate 2e-4, beta1 0.5, as in the paper) for the
    generator on ``adversarial + l1_weight * L1`` and, from the same forward pass, one for the
    discriminator on half its cross-entropy (real vs generated). Updating both from one forward
    pass (rather than alternating) halves the generator's forward cost per step. Training stops
    after ``steps`` steps or ``minutes`` of wall-clock time, whichever comes first.

Cost
    Defaults (``size`` 256, ``n_filters`` 32, ``depth`` 6, batch 1; 7.3 M generator weights)
    measured once on the 2-core development CPU (TensorFlow 2.21, oneDNN) with the other core
    busy: 3.5 steps/s (0.28 s per step, the first step's tracing of about 8 s included in the
    mean), so the 10-minute default budget is about 2,000 steps. On a 4-image synthetic
    H&E-like style, 2.5 minutes (490 steps) already rendered new masks as purple blobs on the
    pink textured background; longer training sharpens the texture.

Model folder (written by :func:`train_generator`, loaded by ``nucleai.models.load(folder,
kind="generator")`` like every model folder, see :mod:`nucleai.models`)
    ``config.json``     ``{"kind": "generator", "n_channels", "settings", "steps", "minutes",
                        "history"}``: the network (output channels and
                        :class:`GeneratorSettings`) and the training record; ``history`` holds
                        the mean losses per logging interval;
    ``weights_last.h5`` Keras HDF5 weights of the last step (the layout
                        :func:`nucleai.train.loop.save_weights` writes).

Example
-------
Train a generator on one style cluster and render synthetic masks with it::

    from nucleai.train import pix2pix

    generator = pix2pix.train_generator(
        cluster_labels, cluster_images, n_channels=3,
        settings=pix2pix.GeneratorSettings(minutes=10), out_dir="styles/cluster_3",
    )
    synthetic = pix2pix.render_images(generator, synthetic_masks, n_channels=3)

and later, from the folder::

    from nucleai import models

    loaded = models.load("styles/cluster_3", kind="generator")
    synthetic = pix2pix.render_images(loaded.keras_model, synthetic_masks, n_channels=3)
"""
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..labels import check_labels
from ..models import CONFIG_FILE, WEIGHTS_FILES, find_weights, load_weights
from ..runtime import FLOAT32, dtype_policy, prepare_tensorflow
from .seeding import seeded

KIND = "generator"
#: The generator is saved once, after its last step (there is no validation to pick a best one).
WEIGHTS_FILE = WEIGHTS_FILES[-1]
#: Input channels of every generator: the foreground and the boundaries (:func:`mask_channels`).
MASK_CHANNELS = 2
#: Steps per logged line (mean losses over the interval).
LOG_EVERY = 100
#: Rendering puts same-sized images into one batch up to this many pixels.
RENDER_PIXELS = 2**20
#: Generator filters grow as ``n_filters * 2**level`` up to this factor.
MAX_FILTER_FACTOR = 8


@dataclass(frozen=True)
class GeneratorSettings:
    """How one style's generator is built and trained.

    Attributes
    ----------
    size : int
        Side of the square training crops; a multiple of ``2**depth`` (the generator halves it
        ``depth`` times). The generator itself takes any size when rendering.
    n_filters : int
        Filters of the first generator and discriminator layer; cost grows with its square.
    depth : int
        Down-sampling levels of the generator: 6 at size 256 gives a 4 x 4 bottleneck, whose
        reach covers the whole crop.
    batch_size : int
        Crops per step (pix2pix: 1).
    learning_rate : float
        Adam learning rate of both networks (beta1 0.5).
    l1_weight : float
        Weight of the L1 term against the adversarial term (lambda; pix2pix: 100).
    steps : int or None
        Maximum training steps (None: only the time budget).
    minutes : float or None
        Wall-clock budget of the training call (None: only ``steps``); the first step always
        runs.
    seed : int
        Seeds the weights, the crops and their flips and rotations.
    """

    size: int = 256
    n_filters: int = 32
    depth: int = 6
    batch_size: int = 1
    learning_rate: float = 2e-4
    l1_weight: float = 100.0
    steps: int = None
    minutes: float = 10.0
    seed: int = 0

    def check(self):
        """Raise InputError naming the first setting out of range; return self."""
        for name in ("size", "n_filters", "depth", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InputError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {value!r}")
        if self.depth > 10:
            raise InputError(f"depth must be at most 10, got {self.depth}")
        if self.size % 2**self.depth:
            raise InputError(
                f"size must be a multiple of 2**depth = {2**self.depth} (depth {self.depth}), got {self.size}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            raise InputError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if not _is_number(self.learning_rate) or not self.learning_rate > 0:
            raise InputError(f"learning rate must be positive, got {self.learning_rate!r}")
        if not _is_number(self.l1_weight) or not self.l1_weight >= 0:
            raise InputError(f"l1 weight must be >= 0, got {self.l1_weight!r}")
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise InputError(f"steps must be a whole number >= 1 or None, got {self.steps!r}")
        if self.minutes is not None and (not _is_number(self.minutes) or not self.minutes > 0):
            raise InputError(f"minutes must be positive or None, got {self.minutes!r}")
        if self.steps is None and self.minutes is None:
            raise InputError("steps and minutes cannot both be None: training would never stop")
        return self


def depth_for_size(size, max_depth=6):
    """The generator depth for square crops of ``size``: halve while the bottleneck keeps >= 4 px.

    Depth 6 at 256 (pix2pix's 4 x 4 bottleneck reaches across the crop); smaller crops get
    fewer levels, never more than ``max_depth``.
    """
    depth = 0
    while depth < max_depth and size % 2 ** (depth + 1) == 0 and size // 2 ** (depth + 1) >= 4:
        depth += 1
    return max(depth, 1)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return _is_int(value) or isinstance(value, (float, np.floating))


# --------------------------------------------------------------------------------------------
# Data


def mask_channels(labels):
    """Generator input of one label image: (H, W, 2) float32 foreground and boundaries in {-1, 1}.

    Boundaries are the objects' pixels with a 4-neighbour of another label (background or
    another object), so touching nuclei are parted (see the module docstring).
    """
    import skimage.segmentation

    labels = np.asarray(labels)
    foreground = labels > 0
    boundary = skimage.segmentation.find_boundaries(labels, connectivity=1, mode="inner") & foreground
    return np.stack([foreground, boundary], axis=-1).astype(np.float32) * 2 - 1


def image_to_unit(image, i=0, n_channels=None):
    """One image as (H, W, n_channels) float32 in [-1, 1], stretched from its own range (see the
    module docstring); ``n_channels`` None keeps the image's (alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise InputError(f"image {i}: expected (H, W) grey, RGB or RGBA, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise InputError(f"image {i}: expected numbers, got {image.dtype}")
    values = image.astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"image {i}: holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if n_channels == 1 and unit.shape[2] == 3:
        unit = unit.mean(axis=2, keepdims=True)
    elif n_channels == 3 and unit.shape[2] == 1:
        unit = np.repeat(unit, 3, axis=2)
    return unit * 2 - 1


def _check_n_channels(n_channels):
    if not _is_int(n_channels) or n_channels not in (1, 3):
        raise InputError(f"n_channels must be 1 (grey) or 3 (RGB), got {n_channels!r}")
    return int(n_channels)


def _pad_to(x, shape):
    """Reflection-pad (H, W, C) at the bottom/right to at least ``shape`` (numpy reflects again
    when the padding exceeds the image)."""
    pad = [(0, max(0, s - n)) for s, n in zip(shape, x.shape[:2])] + [(0, 0)]
    if not any(p[1] for p in pad):
        return x
    return np.pad(x, pad, mode="reflect" if min(x.shape[:2]) > 1 else "edge")


def training_crop(x, y, size, rng):
    """One random crop of input ``x`` and target ``y`` (both (H, W, C), H and W >= ``size``),
    flipped and rotated by a multiple of 90 degrees alike: the style has no orientation."""
    top = rng.integers(x.shape[0] - size + 1)
    left = rng.integers(x.shape[1] - size + 1)
    window = (slice(top, top + size), slice(left, left + size))
    x, y = x[window], y[window]
    turns = int(rng.integers(4))
    x, y = np.rot90(x, turns), np.rot90(y, turns)
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    return x, y


# --------------------------------------------------------------------------------------------
# Networks


def _filters(settings, level):
    return settings.n_filters * min(2**level, MAX_FILTER_FACTOR)


def _instance_norm(filters, name):
    from keras import layers

    return layers.GroupNormalization(groups=filters, epsilon=1e-5, name=name)


def build_generator(n_channels, settings=GeneratorSettings()):
    """The U-Net generator (see the module docstring): (B, H, W, 2) masks -> (B, H, W, n_channels)
    images in [-1, 1]; H and W multiples of ``2**settings.depth``."""
    import keras
    from keras import layers

    n_channels = _check_n_channels(n_channels)
    settings.check()
    depth = settings.depth
    inputs = keras.Input((None, None, MASK_CHANNELS), name="masks")
    x, skips = inputs, []
    for level in range(depth):
        filters = _filters(settings, level)
        x = layers.Conv2D(filters, 4, strides=2, padding="same", name=f"down_{level}")(x)
        if level == depth - 1:
            x = layers.ReLU()(x)
        else:
            if level > 0:
                x = _instance_norm(filters, f"down_{level}_norm")(x)
            x = layers.LeakyReLU(0.2)(x)
        skips.append(x)
    for level in reversed(range(depth - 1)):
        filters = _filters(settings, level)
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name=f"up_{level}")(x)
        x = _instance_norm(filters, f"up_{level}_norm")(x)
        x = layers.ReLU()(x)
        x = layers.Concatenate()([x, skips[level]])
    outputs = layers.Conv2DTranspose(n_channels, 4, strides=2, padding="same", activation="tanh", name="image")(x)
    return keras.Model(inputs, outputs, name="pix2pix_generator")


def build_discriminator(n_channels, settings=GeneratorSettings()):
    """The PatchGAN (see the module docstring): (B, H, W, 2 + n_channels) mask and image ->
    (B, H/8, W/8, 1) logits, one per 70 x 70 patch."""
    import keras
    from keras import layers

    n_channels = _check_n_channels(n_channels)
    base = settings.n_filters
    inputs = keras.Input((None, None, MASK_CHANNELS + n_channels), name="masks_and_image")
    x = inputs
    for i, (filters, stride) in enumerate([(base, 2), (2 * base, 2), (4 * base, 2), (4 * base, 1)]):
        x = layers.Conv2D(filters, 4, strides=stride, padding="same", name=f"patch_{i}")(x)
        if i > 0:
            x = _instance_norm(filters, f"patch_{i}_norm")(x)
        x = layers.LeakyReLU(0.2)(x)
    logits = layers.Conv2D(1, 4, padding="same", name="logits")(x)
    return keras.Model(inputs, logits, name="pix2pix_discriminator")


def generator_depth(generator):
    """Down-sampling levels of a generator from :func:`build_generator` (its input sides must be
    multiples of ``2**depth``)."""
    depth = sum(1 for layer in generator.layers if layer.name.startswith("down_") and not layer.name.endswith("_norm"))
    if depth == 0:
        raise InputError(f"{generator.name!r} is not a pix2pix generator from nucleai.train.pix2pix")
    return depth


def _step_function(generator, discriminator, settings):
    """The compiled training step: one Adam step for each network from one forward pass.

    Returns ``step(x, y) -> (l1, adversarial, discriminator loss)``.
    """
    import keras
    import tensorflow as tf

    g_optimizer = keras.optimizers.Adam(settings.learning_rate, beta_1=0.5)
    d_optimizer = keras.optimizers.Adam(settings.learning_rate, beta_1=0.5)
    # optimiser variables made now, not inside the traced step
    g_optimizer.build(generator.trainable_variables)
    d_optimizer.build(discriminator.trainable_variables)
    l1_weight = float(settings.l1_weight)

    def cross_entropy(logits, real):
        labels = tf.ones_like(logits) if real else tf.zeros_like(logits)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = generator(x, training=True)
            real_logits = discriminator(tf.concat([x, y], axis=-1), training=True)
            fake_logits = discriminator(tf.concat([x, fake], axis=-1), training=True)
            l1 = tf.reduce_mean(tf.abs(y - fake))
            adversarial = cross_entropy(fake_logits, real=True)
            g_loss = adversarial + l1_weight * l1
            d_loss = 0.5 * (cross_entropy(real_logits, real=True) + cross_entropy(fake_logits, real=False))
        g_gradients = g_tape.gradient(g_loss, generator.trainable_variables)
        d_gradients = d_tape.gradient(d_loss, discriminator.trainable_variables)
        g_optimizer.apply_gradients(zip(g_gradients, generator.trainable_variables))
        d_optimizer.apply_gradients(zip(d_gradients, discriminator.trainable_variables))
        return l1, adversarial, d_loss

    return step


# --------------------------------------------------------------------------------------------
# Training, saving, loading


def _training_data(label_images, images, n_channels, size):
    """Checked (input, target) arrays per image, padded to at least ``size``."""
    label_images, images = list(label_images), list(images)
    if len(label_images) != len(images):
        raise InputError(f"{len(label_images)} label images but {len(images)} images: they must pair up")
    if not label_images:
        raise InputError("no training images")
    pairs = []
    for i, (labels, image) in enumerate(zip(label_images, images)):
        labels = check_labels(labels, f"label image {i}", ndim=2)
        image = image_to_unit(image, i, n_channels)
        if image.shape[:2] != labels.shape:
            raise InputError(f"image {i} is {image.shape[:2]} but its label image is {labels.shape}")
        pairs.append((labels, image))
    if not any((labels > 0).any() for labels, _ in pairs):
        raise InputError("the label images hold no objects: the generator would learn nothing about nuclei")
    return [
        (_pad_to(mask_channels(labels), (size, size)), _pad_to(image, (size, size)))
        for labels, image in pairs
    ]


def _write_json(path, data):
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def train_generator(label_images, images, *, n_channels, settings=GeneratorSettings(), out_dir=None,
                    progress=True, log=None, should_stop=None):
    """Train one style's mask-to-image generator on (label image, image) pairs.

    Parameters
    ----------
    label_images : sequence of (H, W) int arrays
        Object ids, 0 = background; at least one object over all of them.
    images : sequence of (H, W) or (H, W, C) arrays
        The style's images, C = 1, 3 or 4 (alpha dropped), each the size of its label image.
    n_channels : int
        1 (grey) or 3 (RGB) output channels.
    settings : GeneratorSettings
    out_dir : str or Path, optional
        Model folder (created) for ``config.json`` and ``weights_last.h5``, written when
        training ends.
    progress : bool
        Show a progress bar (tqdm, on stderr).
    log : callable, optional
        ``log(message)`` receives the mean losses every :data:`LOG_EVERY` steps and a last line.
    should_stop : callable, optional
        ``should_stop() -> bool``, asked before every step: True raises
        :class:`nucleai.train.loop.TrainingStopped` (nothing is written), so a front end's Stop
        takes effect within one step.

    Returns
    -------
    keras.Model
        The generator; see :func:`render_images`.

    Raises
    ------
    InputError
        Settings out of range, unequal counts, an image and label image of different sizes, a
        channel count other than 1, 3 or 4, label images that are not integers, no object.
    """
    prepare_tensorflow()
    from tqdm import tqdm

    settings.check()
    n_channels = _check_n_channels(n_channels)
    log = log or (lambda message: None)
    data = _training_data(label_images, images, n_channels, settings.size)

    with seeded(settings.seed):  # reproducible initial weights
        generator = build_generator(n_channels, settings)
        discriminator = build_discriminator(n_channels, settings)
    step = _step_function(generator, discriminator, settings)
    rng = np.random.default_rng(settings.seed)

    def next_batch():
        crops = [training_crop(*data[i], settings.size, rng) for i in rng.integers(len(data), size=settings.batch_size)]
        x = np.stack([np.ascontiguousarray(c[0]) for c in crops])
        y = np.stack([np.ascontiguousarray(c[1]) for c in crops])
        return x, y

    start = time.monotonic()
    budget = None if settings.minutes is None else 60.0 * settings.minutes
    done, history, interval = 0, [], []
    bar = tqdm(total=settings.steps, desc=f"pix2pix ({n_channels} channel{'s' if n_channels > 1 else ''})",
               disable=not progress, leave=False, dynamic_ncols=True)
    while True:
        if settings.steps is not None and done >= settings.steps:
            stopped = f"{settings.steps} steps"
            break
        if budget is not None and done and time.monotonic() - start >= budget:
            stopped = f"time budget of {settings.minutes:g} min"
            break
        if should_stop is not None and should_stop():
            from .loop import TrainingStopped

            bar.close()
            raise TrainingStopped(f"stopped on request after {done} steps of a style generator")
        losses = step(*next_batch())
        interval.append([float(value) for value in losses])
        done += 1
        bar.update()
        if done % LOG_EVERY == 0:
            history.append(_summary(done, interval))
            interval = []
            bar.set_postfix(l1=f"{history[-1]['l1']:.4f}", refresh=False)
            log(_describe(history[-1], time.monotonic() - start))
    bar.close()
    if interval:
        history.append(_summary(done, interval))
    minutes = (time.monotonic() - start) / 60.0
    log(f"stopped after {done} steps ({stopped}), {minutes:.1f} min: {_describe(history[-1])}")

    if out_dir is not None:
        from .loop import save_weights

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(generator, out_dir / WEIGHTS_FILE)
        _write_json(out_dir / CONFIG_FILE, {
            "kind": KIND, "n_channels": n_channels, "settings": dataclasses.asdict(settings),
            "steps": done, "minutes": minutes, "history": history,
        })
    return generator


def _summary(done, interval):
    l1, adversarial, discriminator = np.mean(interval, axis=0)
    return {"step": done, "l1": float(l1), "adversarial": float(adversarial), "discriminator": float(discriminator)}


def _describe(entry, seconds=None):
    speed = f", {entry['step'] / seconds:.2f} steps/s" if seconds else ""
    return (f"step {entry['step']}: L1 {entry['l1']:.4f}, adversarial {entry['adversarial']:.3f}, "
            f"discriminator {entry['discriminator']:.3f}{speed}")


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's model folder, checked; no TensorFlow involved.

    Attributes
    ----------
    path : Path
    config : dict
        config.json as stored (network and training record).
    weights : Path
    n_channels : int
        Output channels (1 grey, 3 RGB).
    settings : GeneratorSettings
        As trained (fields of other versions are ignored).
    n_channel_in : int
        :data:`MASK_CHANNELS`.
    div_by : tuple of int
        Input sides must be multiples of these (``2 ** depth``); :func:`render_images` pads.
    """

    path: Path
    config: dict = dataclasses.field(repr=False)
    weights: Path
    n_channels: int
    settings: GeneratorSettings
    n_channel_in: int = MASK_CHANNELS

    kind = KIND

    @property
    def name(self):
        return self.path.name

    @property
    def div_by(self):
        return (2**self.settings.depth,) * 2

    def files(self):
        """The files the generator is built from (for cache keys)."""
        return [self.path / CONFIG_FILE, self.weights]

    def build(self, precision=FLOAT32):
        """The loaded generator (TensorFlow), computing in ``precision``; use
        :func:`nucleai.models.load` for the cached one."""
        return GeneratorModel(self, precision)


def generator_spec(path, config):
    """The :class:`GeneratorSpec` of a located generator folder and its config.json (use
    :func:`nucleai.models.read_spec` with ``kind="generator"``, which finds the folder).

    Raises
    ------
    InputError
        Naming the folder: settings or channel count missing or out of range, no weights.
    """
    try:
        fields = {f.name for f in dataclasses.fields(GeneratorSettings)}
        settings = GeneratorSettings(**{k: v for k, v in config["settings"].items() if k in fields})
        n_channels = _check_n_channels(config["n_channels"])
        settings.check()
    except (InputError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"generator folder {path}: {CONFIG_FILE} is broken ({error})") from error
    return GeneratorSpec(path=path, config=config, weights=find_weights(path), n_channels=n_channels,
                         settings=settings)


class GeneratorModel:
    """A loaded generator: its :class:`GeneratorSpec` and the Keras network
    (``keras_model``, for :func:`render_images`)."""

    def __init__(self, spec, precision=FLOAT32):
        prepare_tensorflow()
        self.spec = spec
        self.precision = precision
        with dtype_policy(precision):
            self.keras_model = load_weights(build_generator(spec.n_channels, spec.settings), spec, "generator")

    @property
    def name(self):
        return self.spec.name


# --------------------------------------------------------------------------------------------
# Rendering


def render_images(generator, label_images, *, n_channels):
    """Render label images into images of the generator's style.

    Each image is reflection-padded to a multiple of ``2**depth``, rendered whole (instance
    normalisation sees the whole image, as in training) and cropped back; images of one padded
    size share a batch of up to :data:`RENDER_PIXELS` pixels.

    Parameters
    ----------
    generator : keras.Model
        From :func:`train_generator`, or a loaded generator's ``keras_model``
        (:class:`GeneratorModel`).
    label_images : sequence of (H, W) int arrays
        Any sizes.
    n_channels : int
        The generator's output channels (1 or 3); checked against it.

    Returns
    -------
    list of uint8 arrays
        (H, W) for 1 channel, (H, W, 3) for 3, in the order of ``label_images``.
    """
    n_channels = _check_n_channels(n_channels)
    produced = generator.outputs[0].shape[-1]
    if produced != n_channels:
        raise InputError(f"n_channels is {n_channels} but the generator makes {produced}-channel images")
    step = 2 ** generator_depth(generator)
    label_images = [check_labels(labels, f"label image {i}", ndim=2) for i, labels in enumerate(label_images)]
    groups = {}
    for i, labels in enumerate(label_images):
        shape = tuple(-(-s // step) * step for s in labels.shape)
        groups.setdefault(shape, []).append(i)
    rendered = [None] * len(label_images)
    for shape, indices in groups.items():
        per_batch = max(1, RENDER_PIXELS // (shape[0] * shape[1]))
        for first in range(0, len(indices), per_batch):
            chosen = indices[first : first + per_batch]
            x = np.stack([_pad_to(mask_channels(label_images[i]), shape) for i in chosen])
            out = np.asarray(generator(x, training=False), dtype=np.float32)  # bfloat16 too
            for i, image in zip(chosen, out):
                h, w = label_images[i].shape
                pixels = np.clip(np.rint((image[:h, :w] + 1) * 127.5), 0, 255).astype(np.uint8)
                rendered[i] = pixels[..., 0] if n_channels == 1 else pixels
    return rendered
