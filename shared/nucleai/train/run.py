"""One training run from annotated (and unannotated) images: what ``nucleai train`` and
StyleAugmentTrain both call.

:func:`check_setup` checks what can be checked before any image is read (the output folder, the
base and first-pass models, the patch size against the network), without TensorFlow, so a
CellProfiler pipeline fails validation instead of failing after its image sets ran.
:func:`run_training` then splits off validation images, decides the input channels, describes
the data for the model card and trains (:func:`nucleai.train.styletransfer.train_with_styles`),
with nucleAIzer's style augmentation when the options ask for it.

Errors are :class:`~nucleai.errors.InputError` carrying the field at fault: a field of
:class:`~nucleai.train.options.TrainOptions`, or ``out``, ``base``, ``first_pass``, ``labels``
(the annotated images) for the other arguments.
"""
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..models import CONFIG_FILE, read_json, read_spec
from . import detector, loop, styletransfer
from .data import split_validation
from .seeding import caller_random_state_kept

#: Why a run stopped, in words.
STOPPED = {"epochs": "all epochs done", "early_stopping": "stopped early",
           "time_budget": "time budget used up; run again to continue"}


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`run_training` produced.

    Attributes
    ----------
    detector : nucleai.train.detector.DetectorResult
    styles : nucleai.train.styletransfer.StyleReport or None
    n_train, n_val, n_unlabeled : int
        Images trained on, held out, and used as style input.
    """

    detector: object
    styles: object
    n_train: int
    n_val: int
    n_unlabeled: int

    def summary(self):
        """(name, value) rows for a person: folder, images, epochs, scores, thresholds, styles."""
        d, training = self.detector, self.detector.training
        rows = [
            ("Model folder", str(d.out_dir)),
            ("Images", f"{self.n_train} training, {self.n_val} validation, {self.n_unlabeled} unannotated"),
            ("Epochs", f"{training.epochs_done} ({STOPPED.get(training.stopped, training.stopped)})"),
            ("Validation DSB score", f"{d.validation.dsb_score:.4f}"),
            ("Validation score at IoU 0.5", f"{d.validation.score[0]:.4f}"),
            ("Probability threshold", f"{d.prob_thresh:g}"),
            ("Overlap threshold", f"{d.nms_thresh:g}"),
        ]
        if self.styles is None:
            return rows + [("Styles", "no style augmentation")]
        styles = self.styles
        dropped = f", {len(styles.dropped)} dropped (too small)" if styles.dropped else ""
        rows += [("Styles", f"{len(styles.kept)} kept of {styles.k} clusters{dropped}"),
                 ("Synthetic pairs", str(len(styles.synthetic)))]
        if styles.grids:
            rows.append(("Style samples", ", ".join(Path(p).name for p in styles.grids)))
        return rows


def _spec(model, field, what):
    try:
        return read_spec(model)
    except InputError as error:
        raise InputError(f"{what}: {error}", field) from None


def check_setup(options, out, *, base=None, first_pass=None):
    """Check a run's folders, models and patch size before any image is read.

    Parameters
    ----------
    options : TrainOptions
    out : str or Path
        The model folder to write (or resume).
    base, first_pass : str or Path, optional
        Models (bundled name or folder) to fine-tune, and to segment the unannotated images
        (default: ``base``).

    Raises
    ------
    InputError
        ``out``: a file, or a folder holding a model not trained here; ``base``/``first_pass``:
        a model that cannot be read; ``first_pass`` too: style augmentation without any model
        to segment the unannotated images; ``patch_size``: not a multiple of the network's
        ``div_by``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} is a file; a model is a folder", "out")
    if detector.holds_foreign_model(out):
        raise InputError(f"{out} already holds a model (config.json and weights) that was not trained here; "
                         "choose a new output folder", "out")
    base_spec = _spec(base, "base", "base model") if base is not None else None
    if options.style:
        if first_pass is None and base is None:
            raise InputError("style augmentation segments the unannotated images with a first-pass model: "
                             "give a base model to fine-tune, or a first-pass model", "first_pass")
        if first_pass is not None:
            _spec(first_pass, "first_pass", "first-pass model")
    if (out / loop.STATE_FILE).is_file() and (out / CONFIG_FILE).is_file():
        try:
            config = read_json(out / CONFIG_FILE)  # resumed: its own network
        except InputError as error:
            raise InputError(str(error), "out") from None
    elif base_spec is not None:
        config = base_spec.config
    else:
        config = detector.new_network_config(detector.NetworkSettings(), n_channels=1)
    detector.check_patch_size(options.patch_size, config)


def run_training(annotated, out, options, *, val=None, unlabeled=(), base=None, first_pass=None,
                 data_description=(), command=None, progress=False, log=None):
    """Train (or fine-tune, or resume) a star-convex detector into a model folder.

    Parameters
    ----------
    annotated : sequence of nucleai.train.data.Sample
        Annotated images; without ``val`` a seeded ``options.val_fraction`` of them is held out
        for validation.
    out : str or Path
        The model folder (resumed when it holds an unfinished run).
    options : TrainOptions
    val : sequence of Sample, optional
        Validation images given separately.
    unlabeled : sequence of Sample
        Unannotated images of the target kind: the style input (ignored without ``options.style``).
    base, first_pass : str or Path, optional
        See :func:`check_setup`.
    data_description : sequence of str
        Lines saying where the images came from, for the model card.
    command : str, optional
        The command that reproduces the run, for the model card.
    progress : bool
        Progress bars on stderr.
    log : callable, optional

    Returns
    -------
    TrainingRun

    Raises
    ------
    InputError
        See :func:`check_setup`; ``val_fraction`` for fewer than 2 annotated images to split;
        ``style`` for style augmentation without unannotated images; and what training raises.
    """
    log = log or (lambda message: None)
    check_setup(options, out, base=base, first_pass=first_pass)
    annotated, unlabeled = list(annotated), list(unlabeled)
    description = list(data_description)
    if val is None:
        try:
            train, val = split_validation(annotated, options.val_fraction, options.seed)
        except InputError as error:
            raise InputError(str(error), "val_fraction") from None
        description.append(f"validation: {len(val)} of the {len(annotated)} annotated images held out at random "
                           f"(fraction {options.val_fraction:g}, seed {options.seed}): "
                           + ", ".join(s.name for s in val))
    else:
        train, val = annotated, list(val)
    if options.style:
        if not unlabeled:
            raise InputError("style augmentation needs unannotated images of the target kind; none were given",
                             "style")
        description.append(f"unannotated images (style input): {len(unlabeled)}")
    elif unlabeled:
        log(f"{len(unlabeled)} unannotated images ignored (no style augmentation)")
        unlabeled = []
    n_channels = options.channels or detector.input_channels(out, train + val + unlabeled, base)
    log(f"training on {len(train)} training and {len(val)} validation images, {n_channels} channel(s)"
        + (f", {len(unlabeled)} unannotated for style augmentation" if unlabeled else ""))
    with caller_random_state_kept():  # networks built to predict draw from Python's random too
        styled = styletransfer.train_with_styles(
            train, val, out, n_channels=n_channels, settings=options.loop_settings(), unlabeled=unlabeled,
            style=options.style_settings(), first_pass=first_pass, base=base, augmenter=options.augmenter(),
            data_description=description, command=command, progress=progress, log=log,
        )
    return TrainingRun(detector=styled.detector, styles=styled.styles, n_train=len(train), n_val=len(val),
                       n_unlabeled=len(unlabeled))


def run_staged_training(staging_folder, out, options, *, base=None, first_pass=None, **keywords):
    """:func:`run_training` on the image sets of a staging folder (:mod:`nucleai.train.staging`),
    after :func:`check_setup`, so that a bad setup is reported before the images are read.
    ``keywords`` go to :func:`run_training`."""
    from .staging import read_staged

    check_setup(options, out, base=base, first_pass=first_pass)
    annotated, unlabeled = read_staged(staging_folder)
    return run_training(annotated, out, options, unlabeled=unlabeled, base=base, first_pass=first_pass,
                        **keywords)
