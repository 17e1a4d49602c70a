"""Training a refinement U-Net with the suite's shared trainer.

The U-Net (:mod:`nucleai.refine.unet`) is trained by :func:`nucleai.train.loop.fit`, the loop
StyleAugmentTrain's detectors use, with the same conventional augmentation
(:class:`nucleai.train.augment.Augmenter`) and the same image preparation
(:func:`nucleai.train.data.prepare`: channels, then (1, 99.8) percentile normalisation). Only the
network, its per-pixel targets (:func:`nucleai.refine.unet.target_classes`) and the loss
(categorical cross-entropy) are the U-Net's own. The loop writes ``weights_best.h5`` (lowest
validation loss), ``weights_last.h5``, ``train_state.json`` and ``loss_curve.png`` into the model
folder and resumes from them when called again; :func:`train_unet` adds ``config.json`` first,
so the folder is a refinement model folder as soon as a weights file exists.
"""
import json
from pathlib import Path

from ..errors import InputError
from ..models import CONFIG_FILE, div_by
from .unet import build_unet, check_config, target_classes, unet_config

#: Training defaults for the bundled model: 128-pixel patches hold several DSB nuclei (median
#: diameter about 20 px) and keep a CPU step short.
PATCH_SIZE = (128, 128)
BATCH_SIZE = 8


def default_settings(**changes):
    """The loop's :class:`~nucleai.train.loop.TrainSettings` for a U-Net, with ``changes``."""
    from ..train.loop import TrainSettings

    values = dict(patch_size=PATCH_SIZE, batch_size=BATCH_SIZE, steps_per_epoch=100, epochs=200,
                  learning_rate=1e-3, lr_patience=6, patience=15, val_patches_per_image=1)
    values.update(changes)
    return TrainSettings(**values)


def prepare_pairs(samples, n_channel_in):
    """``(image, labels)`` pairs for the loop from :class:`nucleai.train.data.Sample` objects."""
    from ..train.data import prepare

    return [(prepare(sample.image, n_channel_in), sample.labels) for sample in samples]


def train_unet(train_pairs, val_pairs, out_dir, *, config=None, settings=None, augmenter=None,
               progress=True, log=None):
    """Train (or resume training) a refinement U-Net into the model folder ``out_dir``.

    Parameters
    ----------
    train_pairs, val_pairs : sequence of (image, labels)
        Normalised (H, W, C) float32 images and their label images (:func:`prepare_pairs`).
        The validation pairs choose the best epoch and stop training early; never trained on.
    out_dir : path-like
        The model folder (created); ``config.json`` is written, the loop writes the rest.
    config : dict, optional
        :func:`nucleai.refine.unet.unet_config` (default: depth 3, 16 base filters).
    settings : nucleai.train.loop.TrainSettings, optional
        :func:`default_settings` by default; the patch size must be a multiple of the U-Net's
        ``2 ** depth``.
    augmenter : callable, optional
        :class:`nucleai.train.augment.Augmenter` with its defaults by default.
    progress : bool
    log : callable, optional
        Receives one line per epoch and event (see :func:`nucleai.train.loop.fit`).

    Returns
    -------
    nucleai.train.loop.TrainResult
    """
    import keras

    from ..train.augment import Augmenter
    from ..train.loop import fit

    config = check_config(dict(config or unet_config()))
    settings = settings or default_settings()
    step = div_by(config)
    if any(int(s) % d for s, d in zip(settings.patch_size, step)):
        raise InputError(f"patch size {tuple(settings.patch_size)} must be a multiple of "
                         f"{' x '.join(map(str, step))} (2 ** depth in both axes)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_FILE
    if config_path.is_file() and json.loads(config_path.read_text()) != config:
        raise InputError(f"{config_path} describes another network; train into a new folder")
    config_path.write_text(json.dumps(config, indent=1) + "\n")
    return fit(
        build_unet(config),
        lambda labels: (target_classes(labels),),
        [keras.losses.CategoricalCrossentropy()],
        train_pairs,
        val_pairs,
        out_dir,
        settings,
        augmenter=Augmenter() if augmenter is None else augmenter,
        progress=progress,
        log=log,
    )
