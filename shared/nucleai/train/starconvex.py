"""The star-convex (StarDist) network, its training targets and losses, in our own code.

The network is stardist's ``StarDist2D`` architecture (Schmidt et al. 2018, stardist 0.9), built
here from a stardist ``config.json`` dictionary with the same layers, in the same order, with
the same names, so that weights move between the two by Keras' order-based HDF5 loading: a
folder we write (config.json + weights_*.h5) loads with ``stardist.models.StarDist2D(None,
name, basedir)`` and with :func:`nucleai.models.load_model`, and a stardist-trained folder can
be fine-tuned here. The graph:

- input ``(None, None, n_channel_in)``;
- while the subsampling reached is below ``grid``: ``unet_n_conv_per_depth`` 3x3 convolutions
  with ``unet_n_filter_base`` filters, then 2x2 max pooling (per axis still below the grid);
- csbdeep's U-Net block (``unet_n_depth`` levels; ``unet_n_filter_base * unet_expansion **
  level`` filters; ``down_level_L_no_i``, ``max_L``, ``middle_i``, ``up_level_L_no_i``; skip
  connections concatenated after upsampling);
- ``features``: a 3x3 convolution with ``net_conv_after_unet`` filters (when > 0);
- heads ``prob`` (1x1, sigmoid, 1 channel) and ``dist`` (1x1, linear, ``n_rays`` channels).

Targets (per label patch, at grid resolution, as stardist's data generator makes them):
``prob`` is the object probability, each object's Euclidean distance transform divided by its
maximum (:func:`object_probability` on the grid-subsampled labels); ``dist`` is
:func:`nucleai.geometry.star_dist` with the grid, and the probability rides along as an extra
channel weighting the distance loss.

Losses (stardist's defaults): binary cross-entropy on ``prob``; on ``dist`` the mean absolute
error weighted by the object probability and normalised by its mean, plus ``1e-4`` times the
mean absolute predicted distance on background; weights 1 and 0.2.
"""
import numpy as np
import scipy.ndimage as ndi

from ..errors import InputError
from ..geometry import star_dist

#: stardist's default weights of the (prob, dist) losses.
LOSS_WEIGHTS = (1.0, 0.2)
#: stardist's default regulariser pulling background distances to 0.
BACKGROUND_REG = 1e-4


def training_record(patch_size=(256, 256), batch_size=4, learning_rate=3e-4, epochs=400,
                    steps_per_epoch=100, lr_factor=0.5, lr_patience=40):
    """The ``train_*`` entries of a stardist config that record how a model was trained.

    stardist reads them only to train; we write them so a config says how its weights were made
    (defaults: stardist's). ``lr_factor`` and ``lr_patience`` are the learning-rate schedule
    (``train_reduce_lr``).
    """
    return {
        "train_patch_size": [int(s) for s in patch_size], "train_batch_size": int(batch_size),
        "train_learning_rate": float(learning_rate), "train_epochs": int(epochs),
        "train_steps_per_epoch": int(steps_per_epoch), "train_tensorboard": False,
        "train_reduce_lr": {"factor": float(lr_factor), "patience": int(lr_patience), "min_delta": 0},
    }


def stardist_config(n_rays=32, grid=(2, 2), n_channel_in=1, unet_n_depth=3, unet_n_filter_base=32,
                    net_conv_after_unet=128, **training):
    """A ``config.json`` dictionary in the format of stardist 0.9's ``Config2D``.

    Every key stardist writes is present, with stardist's defaults for the ones not given, so
    stardist reads the file unchanged. The ``train_*`` entries only record how we trained.

    Parameters
    ----------
    n_rays : int
    grid : (int, int)
        Output subsampling, powers of 2.
    n_channel_in : int
    unet_n_depth, unet_n_filter_base, net_conv_after_unet : int
        Network size (stardist's defaults: 3, 32, 128).
    **training
        Keywords of :func:`training_record`, recorded as ``train_*``.

    Returns
    -------
    dict
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 2 or any(g < 1 or g & (g - 1) for g in grid):
        raise InputError(f"grid must be two powers of 2, got {grid}")
    if int(n_rays) < 3:
        raise InputError(f"n_rays must be at least 3, got {n_rays}")
    if int(n_channel_in) < 1:
        raise InputError(f"the number of input channels must be at least 1, got {n_channel_in}")
    return {
        "n_dim": 2, "axes": "YXC", "n_channel_in": int(n_channel_in), "n_channel_out": 1 + int(n_rays),
        "train_checkpoint": "weights_best.h5", "train_checkpoint_last": "weights_last.h5",
        "train_checkpoint_epoch": "weights_now.h5",
        "n_rays": int(n_rays), "grid": list(grid), "backbone": "unet", "n_classes": None,
        "unet_n_depth": int(unet_n_depth), "unet_kernel_size": [3, 3],
        "unet_n_filter_base": int(unet_n_filter_base), "unet_n_conv_per_depth": 2,
        "unet_pool": [2, 2], "unet_activation": "relu", "unet_last_activation": "relu",
        "unet_batch_norm": False, "unet_dropout": 0.0, "unet_expansion": 2, "unet_prefix": "",
        "net_conv_after_unet": int(net_conv_after_unet),
        "net_input_shape": [None, None, int(n_channel_in)], "net_mask_shape": [None, None, 1],
        "train_shape_completion": False, "train_completion_crop": 32,
        "train_background_reg": BACKGROUND_REG,
        "train_foreground_only": 0.9, "train_sample_cache": True, "train_dist_loss": "mae",
        "train_loss_weights": list(LOSS_WEIGHTS), "train_class_weights": [1, 1],
        "train_n_val_patches": None, **training_record(**training), "use_gpu": False,
    }


def div_by(config):
    """Input sizes must be multiples of these (y, x): ``unet_pool ** unet_n_depth * grid``."""
    return tuple(p ** int(config["unet_n_depth"]) * g for p, g in zip(config["unet_pool"], config["grid"]))


def build_network(config):
    """The Keras model stardist's ``StarDist2D`` builds for this config, built by us.

    Parameters
    ----------
    config : dict
        A stardist 2-D config (``config.json``), single-class, U-Net backbone.

    Returns
    -------
    keras.Model
        Input ``(B, H, W, n_channel_in)``; outputs ``[prob (B, H/gy, W/gx, 1),
        dist (B, H/gy, W/gx, n_rays)]``.
    """
    import keras
    from keras import layers

    if config.get("backbone", "unet") != "unet" or config.get("n_dim", 2) != 2:
        raise InputError("only 2-D stardist models with a U-Net backbone can be trained")
    if config.get("n_classes") is not None:
        raise InputError("multi-class stardist models (n_classes) cannot be trained here")
    kernel = tuple(config["unet_kernel_size"])
    pool = tuple(config["unet_pool"])
    activation = config["unet_activation"]
    n_conv = int(config["unet_n_conv_per_depth"])
    base = int(config["unet_n_filter_base"])
    expansion = config["unet_expansion"]
    depth = int(config["unet_n_depth"])
    prefix = config.get("unet_prefix", "")
    batch_norm = bool(config["unet_batch_norm"])
    dropout = float(config["unet_dropout"] or 0.0)

    def conv_block(x, filters, name, block_activation=activation):
        if batch_norm:
            x = layers.Conv2D(filters, kernel, padding="same", kernel_initializer="glorot_uniform", name=name)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation(block_activation)(x)
        else:
            x = layers.Conv2D(filters, kernel, padding="same", kernel_initializer="glorot_uniform",
                              activation=block_activation, name=name)(x)
        if dropout > 0:
            x = layers.Dropout(dropout)(x)
        return x

    inputs = keras.Input((None, None, int(config["n_channel_in"])), name="input")
    x = inputs
    pooled, grid = np.array([1, 1]), np.array(config["grid"])
    while tuple(pooled) != tuple(grid):
        step = 1 + (grid > pooled)
        pooled *= step
        for _ in range(n_conv):
            x = layers.Conv2D(base, kernel, padding="same", activation=activation)(x)
        x = layers.MaxPooling2D(tuple(int(s) for s in step))(x)

    skips = []
    for level in range(depth):
        for i in range(n_conv):
            x = conv_block(x, int(base * expansion**level), f"{prefix}down_level_{level}_no_{i}")
        skips.append(x)
        x = layers.MaxPooling2D(pool, name=f"{prefix}max_{level}")(x)
    for i in range(n_conv - 1):
        x = conv_block(x, int(base * expansion**depth), f"{prefix}middle_{i}")
    x = conv_block(x, int(base * expansion ** max(0, depth - 1)), f"{prefix}middle_{n_conv}")
    for level in reversed(range(depth)):
        x = layers.Concatenate(axis=-1)([layers.UpSampling2D(pool)(x), skips[level]])
        for i in range(n_conv - 1):
            x = conv_block(x, int(base * expansion**level), f"{prefix}up_level_{level}_no_{i}")
        x = conv_block(
            x, int(base * expansion ** max(0, level - 1)), f"{prefix}up_level_{level}_no_{n_conv}",
            activation if level > 0 else config["unet_last_activation"],
        )
    if int(config["net_conv_after_unet"]) > 0:
        x = layers.Conv2D(int(config["net_conv_after_unet"]), kernel, name="features", padding="same",
                          activation=activation)(x)
    prob = layers.Conv2D(1, (1, 1), name="prob", padding="same", activation="sigmoid")(x)
    dist = layers.Conv2D(int(config["n_rays"]), (1, 1), name="dist", padding="same", activation="linear")(x)
    # stardist wraps the input in a list; the weights and their order are the same either way
    return keras.Model(inputs, [prob, dist])


def object_probability(labels):
    """Per object, its Euclidean distance transform divided by its maximum (stardist's edt_prob).

    1 at each object's most interior pixel, falling towards its boundary, 0 on background.
    Touching objects are kept apart (the transform of one object treats the others as
    outside); an object cut by the image border is treated as continuing beyond it.

    Parameters
    ----------
    labels : (H, W) int array

    Returns
    -------
    (H, W) float32 array
    """
    labels = np.asarray(labels)
    prob = np.zeros(labels.shape, np.float32)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        # one pixel of context on each side that is not the image border, so the transform
        # measures distance to the object's own edge there but not at the image border
        grown = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(box, labels.shape))
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(box, grown))
        mask = labels[grown] == i
        edt = ndi.distance_transform_edt(mask)[inner]
        mask = mask[inner]
        prob[box][mask] = edt[mask] / (edt[mask].max() + 1e-10)
    return prob


def targets(labels, n_rays, grid):
    """Training targets of one label patch for the (prob, dist) outputs.

    Parameters
    ----------
    labels : (h, w) int array
        h and w multiples of ``grid``.
    n_rays : int
    grid : (int, int)

    Returns
    -------
    prob : (h / gy, w / gx, 1) float32 array
    dist_and_mask : (h / gy, w / gx, n_rays + 1) float32 array
        Ray lengths, then the probability again as the distance loss's weight.
    """
    labels = np.asarray(labels)
    prob = object_probability(labels[:: grid[0], :: grid[1]])
    dist = star_dist(labels, n_rays, grid)
    return prob[..., np.newaxis], np.concatenate([dist, prob[..., np.newaxis]], axis=-1)


def prob_loss(y_true, y_pred):
    """Binary cross-entropy of the object probability (mean over the channel axis)."""
    from keras import ops

    return ops.mean(ops.binary_crossentropy(ops.cast(y_true, "float32"), y_pred), axis=-1)


def dist_loss(n_rays, background_reg=BACKGROUND_REG):
    """The distance loss for ``n_rays`` rays: probability-weighted mean absolute error.

    ``y_true`` holds the ray lengths and, as its last channel, the object probability ``m``:
    loss = mean_rays(m * |d_true - d_pred|) / (mean(m) + eps) + background_reg *
    mean_rays((1 - m) * |d_pred|), as stardist's ``masked_loss_mae`` with ``reg_weight``.
    """
    from keras import ops

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        d_true, mask = y_true[..., :n_rays], y_true[..., n_rays:]
        error = ops.mean(mask * ops.abs(d_true - y_pred), axis=-1) / (ops.mean(mask) + 1e-7)
        if background_reg > 0:
            error = error + background_reg * ops.mean((1 - mask) * ops.abs(y_pred), axis=-1)
        return error

    return loss


def widen_to_colour(grey_model, colour_model):
    """Copy a one-channel network's weights into the same network taking three channels.

    nucleAIzer feeds every image as RGB; a grey model becomes a colour one that computes
    exactly the same on grey images repeated into three channels (the first convolution's
    kernel is repeated over the channels and divided by 3), and a colour image starts as the
    mean of its channels. Fine-tuning on colour images then learns to use the colours.

    Parameters
    ----------
    grey_model, colour_model : keras.Model
        Built by :func:`build_network` from configs that differ only in ``n_channel_in``
        (1 and 3).
    """
    grey_weights = grey_model.get_weights()
    colour_shapes = [w.shape for w in colour_model.get_weights()]
    if len(grey_weights) != len(colour_shapes):
        raise InputError("the grey and colour networks differ in more than their input channels")
    widened = []
    for weight, shape in zip(grey_weights, colour_shapes):
        if weight.shape != shape:
            if weight.ndim != 4 or weight.shape[2] != 1 or shape[:2] + shape[3:] != weight.shape[:2] + weight.shape[3:]:
                raise InputError("the grey and colour networks differ in more than their input channels")
            weight = np.repeat(weight, shape[2], axis=2) / shape[2]
        widened.append(weight)
    colour_model.set_weights(widened)


def check_compatible(config, n_channel_in=None, n_rays=None, grid=None, source="the base model"):
    """InputError unless a base model's config matches the requested channels, rays and grid.

    ``None`` accepts whatever the config has.
    """
    wanted = {"n_channel_in": n_channel_in, "n_rays": n_rays, "grid": None if grid is None else list(grid)}
    names = {"n_channel_in": "input channels", "n_rays": "rays", "grid": "grid"}
    for key, value in wanted.items():
        have = list(config[key]) if key == "grid" else int(config[key])
        if value is not None and have != value:
            raise InputError(f"{source} has {names[key]} {have}, but {value} was asked for; "
                             f"fine-tuning keeps the base model's {names[key]}")
