"""One training run from annotated (and unannotated) images: what ``nucleai train`` and
StyleAugmentTrain both call.

:func:`check_setup` checks what can be checked before any image is read (the output folder, the
base and first-pass models, the patch size against the network), without TensorFlow, so a
CellProfiler pipeline fails validation instead of failing after its image sets ran.
:func:`run_training` then splits off validation images, decides the input channels, describes
the data for the model card and trains (:func:`nucleai.train.styletransfer.train_with_styles`),
with nucleAIzer's style augmentation when the options ask for it.

A folder holding a checkpoint is resumed only by the same run (:mod:`nucleai.train.record`:
settings checked by :func:`check_setup`, images by :func:`run_training`); ``restart`` starts
afresh there instead.

A front end that can stop a run (CellProfiler's Stop Analysis) passes ``should_stop``: a run
stopped in the detector's training is finished from its best epoch so far (thresholds, scores,
a model card saying it was stopped) and stays resumable; one stopped earlier (style clustering,
generators, network building) raises :class:`~nucleai.train.loop.TrainingStopped` and leaves
nothing of itself in the folder (:class:`_StopControl`).

Errors are :class:`~nucleai.errors.InputError` carrying the field at fault: a field of
:class:`~nucleai.train.options.TrainOptions`, or ``out``, ``model_name``, ``base``,
``first_pass``, ``labels`` (the annotated images), ``resume`` (a checkpoint of another run) for
the other arguments.
"""
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..models import CONFIG_FILE, read_json, read_spec
from . import detector, loop, record, styletransfer
from .data import drop_blank, split_validation
from .loop import TrainingStopped
from .seeding import caller_random_state_kept

#: Why a run stopped, in words.
STOPPED = {"epochs": "all epochs done", "early_stopping": "stopped early",
           "time_budget": "time budget used up; run again to continue",
           "stopped": "stopped on request; best epoch so far kept, run again to continue"}


class _StopControl:
    """Where a run is when a stop is asked decides how it stops.

    The detector's loop asks ``should_stop`` between steps itself (and the model is then
    finished from its best epoch). Before the loop (style clustering, first-pass segmentation,
    each style's generator, building the network) the only points the run passes are its log
    lines, where the next one raises :class:`TrainingStopped`, and the style generators' steps,
    each of which asks :meth:`requested` first (so a stop takes effect within one step).
    """

    def __init__(self, should_stop, log):
        self._should_stop = should_stop
        self._log = log
        self._in_loop = False

    def requested(self):
        """Whether a stop is asked (the style generators poll it every step)."""
        return self._should_stop()

    def loop_should_stop(self):
        self._in_loop = True
        return self._should_stop()

    def log(self, message):
        self._log(message)
        if not self._in_loop and self._should_stop():
            raise TrainingStopped("training was stopped before the detector's first epoch ended")


def _forget_stopped_run(out, log):
    """After a stop with nothing to keep: remove what this run wrote, unless the folder holds
    the checkpoint of an earlier run (kept resumable, as after Ctrl-C)."""
    if (Path(out) / loop.STATE_FILE).is_file() and (Path(out) / loop.BEST_WEIGHTS).is_file():
        log(f"stopped on request; {out} keeps the checkpoint of the earlier run")
        return
    record.clear_run(out)
    log(f"stopped on request before any epoch ended; nothing was kept in {out}")


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


def model_folder(parent, name):
    """The model folder ``name`` inside ``parent``, for a front end that asks for the two apart.

    Raises
    ------
    InputError
        (field ``model_name``) For an empty name, or one that is not a single folder name (a
        path such as ``../x`` or ``a/b``, ``.``, ``..``), which would write elsewhere.
    """
    name = str(name).strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InputError(f"the model name must be one folder name, not empty, '.', '..' or a path with '/' or "
                         f"'\\', got {name!r}",
                         "model_name")
    return Path(parent) / name


#: Annotated images a run needs: one to train on, one held out for validation.
MIN_ANNOTATED = 2


def check_image_count(options, n_images):
    """Check, before images are read, that ``n_images`` can be enough for a run that splits off
    its validation images (what a CellProfiler pipeline knows once its image sets are listed).

    Raises
    ------
    InputError
        ``labels`` for fewer than :data:`MIN_ANNOTATED` images; ``style`` when style
        augmentation leaves no image to be unannotated.
    """
    if n_images < MIN_ANNOTATED:
        raise InputError(f"the run has {n_images} image set(s); training needs at least {MIN_ANNOTATED} with "
                         "objects (one is held out for validation)", "labels")
    if options.style and n_images < MIN_ANNOTATED + 1:
        raise InputError(f"style augmentation needs unannotated image sets besides at least {MIN_ANNOTATED} "
                         f"annotated ones; the run has only {n_images}", "style")


def check_setup(options, out, *, base=None, first_pass=None, restart=False):
    """Check a run's folders, models and patch size before any image is read.

    Parameters
    ----------
    options : TrainOptions
    out : str or Path
        The model folder to write (or resume).
    base, first_pass : str or Path, optional
        Models (bundled name or folder) to fine-tune, and to segment the unannotated images
        (default: ``base``).
    restart : bool
        Start afresh in a folder holding a checkpoint (else only the same run resumes it).

    Raises
    ------
    InputError
        ``out``: a file, or a folder holding a model not trained here; ``resume``: a checkpoint
        of a run with other settings (:func:`nucleai.train.record.check_settings`); ``base``/``first_pass``:
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
    if not restart:
        record.check_settings(out, record.run_settings(options, base, first_pass))
    if not restart and record.has_checkpoint(out) and (out / CONFIG_FILE).is_file():
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
                 restart=False, data_description=(), command=None, progress=False, log=None,
                 should_stop=None, on_progress=None):
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
    base, first_pass, restart : optional
        See :func:`check_setup`.
    data_description : sequence of str
        Lines saying where the images came from, for the model card.
    command : str, optional
        The command that reproduces the run, for the model card.
    progress : bool
        Progress bars on stderr.
    log : callable, optional
    should_stop : callable, optional
        ``should_stop() -> bool``, polled during training: see the module docstring.
    on_progress : callable, optional
        ``on_progress(nucleai.train.loop.TrainingProgress)`` after every training step.

    Returns
    -------
    TrainingRun

    Raises
    ------
    InputError
        See :func:`check_setup`; ``labels`` when no annotated image has an object;
        ``val_fraction`` for fewer than 2 annotated images to split; ``style`` for style
        augmentation without unannotated images; ``resume`` for a checkpoint of a run on other
        images (:func:`nucleai.train.record.check_data`); and what training raises. All of
        them before anything is written.
    TrainingStopped
        Stopped on request before any epoch ended; what the run wrote is removed.

    Blank images (:func:`nucleai.train.data.is_blank`) are left out, each with a warning.
    """
    log = log or (lambda message: None)
    check_setup(options, out, base=base, first_pass=first_pass, restart=restart)
    annotated = drop_blank(annotated, "annotated", log)
    unlabeled = drop_blank(unlabeled, "unannotated", log)
    val = None if val is None else drop_blank(val, "validation", log)
    if not any(sample.labels.any() for sample in annotated + (val or [])):
        raise InputError(f"every label image is empty ({len(annotated) + len(val or [])} annotated images, "
                         "no object in any): there is nothing to train on", "labels")
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
    fingerprint = record.data_fingerprint(train, val, unlabeled)
    if restart:
        record.clear_run(out)
    else:
        record.check_data(out, fingerprint)
    if not record.has_checkpoint(out):
        record.write_record(out, record.run_settings(options, base, first_pass), fingerprint)
    n_channels = options.channels or detector.input_channels(out, train + val + unlabeled, base)
    log(f"training on {len(train)} training and {len(val)} validation images, {n_channels} channel(s)"
        + (f", {len(unlabeled)} unannotated for style augmentation" if unlabeled else ""))
    stop = _StopControl(should_stop or (lambda: False), log)
    try:
        with caller_random_state_kept():  # networks built to predict draw from Python's random too
            styled = styletransfer.train_with_styles(
                train, val, out, n_channels=n_channels, settings=options.loop_settings(), unlabeled=unlabeled,
                style=options.style_settings(), first_pass=first_pass, base=base, augmenter=options.augmenter(),
                data_description=description, command=command, progress=progress, log=stop.log,
                should_stop=stop.loop_should_stop, style_should_stop=stop.requested, on_progress=on_progress,
            )
    except TrainingStopped:
        _forget_stopped_run(out, log)
        raise
    return TrainingRun(detector=styled.detector, styles=styled.styles, n_train=len(train), n_val=len(val),
                       n_unlabeled=len(unlabeled))


def run_staged_training(staging_folder, out, options, *, base=None, first_pass=None, **keywords):
    """:func:`run_training` on the image sets of a staging folder (:mod:`nucleai.train.staging`),
    after :func:`check_setup`, so that a bad setup is reported before the images are read.
    ``keywords`` go to :func:`run_training`."""
    from .staging import read_staged

    check_setup(options, out, base=base, first_pass=first_pass, restart=keywords.get("restart", False))
    annotated, unlabeled = read_staged(staging_folder)
    return run_training(annotated, out, options, unlabeled=unlabeled, base=base, first_pass=first_pass,
                        **keywords)
