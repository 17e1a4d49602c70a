"""The star-convex (StarDist) network for training, its targets and losses.

The network is stardist's ``StarDist2D`` (Schmidt et al. 2018, stardist 0.9), built by stardist
from a ``config.json`` dictionary (:func:`build_network`), so a folder we write (config.json +
weights_*.h5) loads with ``stardist.models.StarDist2D(None, name, basedir)`` and with
:func:`nucleai.models.load`, and a stardist-trained folder can be fine-tuned here. Targets and
losses are ours (stardist's training code needs its own data generator and Keras callbacks), and
are checked against stardist's.

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


def build_network(config):
    """The Keras network of stardist's ``StarDist2D`` for this config, built by stardist itself
    (as :mod:`nucleai.models` builds it for prediction), so training and prediction use one
    network and a folder we write loads in stardist layer for layer.

    Parameters
    ----------
    config : dict
        A stardist 2-D config (``config.json``), single-class, U-Net backbone.

    Returns
    -------
    keras.Model
        Input ``(B, H, W, n_channel_in)`` (stardist's model takes a one-element list; this one
        the array itself, over the same layers); outputs ``[prob (B, H/gy, W/gx, 1), dist (B,
        H/gy, W/gx, n_rays)]``. Initial weights are drawn as Keras draws them (seed them with
        :func:`nucleai.train.seeding.seeded`).

    Raises
    ------
    InputError
        For another backbone or dimensionality, multi-class models, or a config stardist rejects.
    """
    import contextlib
    import io

    import keras

    if config.get("backbone", "unet") != "unet" or config.get("n_dim", 2) != 2:
        raise InputError("only 2-D stardist models with a U-Net backbone can be trained")
    if config.get("n_classes") is not None:
        raise InputError("multi-class stardist models (n_classes) cannot be trained here")
    with contextlib.redirect_stdout(io.StringIO()):
        from stardist.models import Config2D, StarDist2D

        network = StarDist2D(Config2D(**Config2D.update_loaded_config(dict(config))), basedir=None).keras_model
    return keras.Model(network.inputs[0], network.outputs)


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
