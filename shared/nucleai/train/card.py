"""The model card (MODEL.md) of a trained detector: data, settings, training, scores, command.

A model folder should say how it came about, so that a user can judge whether it suits their
images and reproduce it: which data (and split), which network and settings, how training
went (epochs, early stopping, time), the tuned thresholds, the validation scores, the command
and the software versions.
"""
import dataclasses
import platform
from importlib import metadata

CARD_FILE = "MODEL.md"
_PACKAGES = ("cellprofiler-nucleai", "tensorflow-cpu", "tensorflow", "keras", "numpy", "stardist")


def _versions():
    found = []
    for name in _PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found + [f"Python {platform.python_version()}"])


def _settings_table(settings):
    rows = ["| setting | value |", "| --- | --- |"]
    rows += [f"| {key} | {value} |" for key, value in dataclasses.asdict(settings).items()]
    return rows


def render_model_card(detector, *, config, settings, augmenter, n_train, n_val, n_extra=0,
                      n_val_trained_on=0, base=None, data_description=(), command=None):
    """MODEL.md's text for a :class:`nucleai.train.detector.DetectorResult`.

    Parameters
    ----------
    detector : DetectorResult
    config : dict
        The model's config.json.
    settings : nucleai.train.loop.TrainSettings
    augmenter : dataclass instance or None
        The augmentation (its fields are listed).
    n_train, n_val, n_extra : int
        Image counts.
    n_val_trained_on : int
        Validation images that are also training images (their scores are then not held out;
        the card says so).
    base : Path, optional
        The model fine-tuned from.
    data_description : sequence of str
        Lines about where the data came from (folders, split).
    command : str, optional

    Returns
    -------
    str
    """
    training = detector.training
    evaluation = detector.validation
    name = detector.out_dir.name
    minutes = sum(h["seconds"] for h in training.history) / 60
    stopped = {
        "epochs": "all epochs done",
        "early_stopping": f"early stopping ({settings.patience} epochs without a better validation loss)",
        "time_budget": "wall-clock budget used up (run the same command again to continue)",
        "stopped": "stopped on request; the best epoch so far is kept (run again to continue)",
    }[training.stopped]
    lines = [
        f"# {name}: star-convex nucleus detector",
        "",
        "A model folder in stardist's layout (`config.json`, `thresholds.json`, `weights_best.h5`),",
        "trained with `nucleai train`; the `stardist` package loads it as well. `nucleai.json` holds",
        "the training objects' median diameter for the rescale option.",
        "",
        "## Network",
        f"stardist `StarDist2D` architecture: U-Net depth {config['unet_n_depth']}, "
        f"{config['unet_n_filter_base']} base filters, {config['net_conv_after_unet']}-channel head, "
        f"{config['n_rays']} rays, grid {tuple(config['grid'])}, {config['n_channel_in']} input channel(s).",
        f"Started from: {base if base is not None else 'random initial weights'}.",
        "",
        "## Data",
        f"- {n_train} training images, {n_val} validation images"
        + (f", {n_extra} extra (synthetic) images" if n_extra else ""),
        *[f"- {line}" for line in data_description],
        f"- images converted to {config['n_channel_in']} channel(s) (grey repeated to RGB, RGB averaged "
        "to grey) and normalised to their (1, 99.8) percentiles, as at prediction",
        "- validation images are used only for the best epoch (validation loss), early stopping and "
        "the thresholds; never trained on" if not n_val_trained_on else
        f"- {n_val_trained_on} of the {n_val} validation images are also training images: the validation "
        "scores below are not held-out scores",
        "",
        "## Training settings",
        *_settings_table(settings),
        "",
    ]
    if augmenter is not None and dataclasses.is_dataclass(augmenter):
        lines += ["Augmentation (per patch):", "", *_settings_table(augmenter), ""]
    lines += [
        "## Training",
        f"- {training.epochs_done} epochs ({training.epochs_done * settings.steps_per_epoch} steps), "
        f"stopped: {stopped}",
        f"- best validation loss {training.best_val_loss:.4f} at epoch {training.best_epoch} "
        "(`weights_best.h5`); `loss_curve.png` shows the curves, `train_state.json` the history",
        f"- {minutes:.1f} minutes of training; {_versions()}",
        "",
        "## Thresholds",
        f"Tuned on the validation images for the mean DSB score: **prob_thresh {detector.prob_thresh:g}, "
        f"nms_thresh {detector.nms_thresh:g}** (`thresholds.json`).",
        "",
        f"## Validation scores ({evaluation.n_images} images, tuned thresholds)",
        "| measure (mean over images) | value |",
        "| --- | --- |",
        f"| DSB score (mean over IoU 0.50 ... 0.95) | **{evaluation.dsb_score:.4f}** |",
        f"| score TP/(TP+FP+FN) at IoU 0.5 | **{evaluation.score[0]:.4f}** |",
        f"| precision / recall / F1 at IoU 0.5 | {evaluation.precision[0]:.4f} / "
        f"{evaluation.recall[0]:.4f} / {evaluation.f1[0]:.4f} |",
        f"| objects true / predicted | {evaluation.n_truth} / {evaluation.n_pred} |",
        "",
    ]
    if command:
        lines += ["## Command", "", f"    {command}", ""]
    return "\n".join(lines)


def write_model_card(path, detector, **kwargs):
    """Write :func:`render_model_card` to ``path``; returns the path."""
    path.write_text(render_model_card(detector, **kwargs))
    return path
