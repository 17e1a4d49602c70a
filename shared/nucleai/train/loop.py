"""A generic training loop for Keras networks that learn from (image, label image) pairs.

The loop knows nothing about star-convex polygons: it trains any Keras model whose regression
or classification targets can be computed from a label image: the star-convex detector
(:mod:`nucleai.train.detector`) uses it, and so can a U-Net pixel classifier.

What the caller gives
    ``model``
        A ``keras.Model`` (TensorFlow backend) taking a batch of images ``(B, h, w, C)``
        float32 and giving one or more outputs. It need not be compiled (the loop runs its own
        compiled step: Adam on the weighted sum of the mean losses).
    ``targets(labels) -> tuple of arrays``
        For one label patch ``(h, w)`` (ints, 0 = background) the target of every output, in
        output order, each without the batch axis (e.g. ``(h // 2, w // 2, 1)``). The loop
        stacks them into batches. Called after augmentation, so it sees the labels the network
        is shown.
    ``losses``
        One Keras loss per output (a callable ``loss(y_true, y_pred)``), with ``loss_weights``.
    ``train_pairs``, ``val_pairs``
        Sequences of ``(image, labels)``: image ``(H, W, C)`` float32 already normalised as at
        prediction time, labels ``(H, W)`` ints. Images smaller than the patch are padded
        (mirrored, labels with them). The validation pairs are never trained on.
    ``augmenter`` (optional)
        A callable ``augmenter(image, labels, rng) -> (image, labels)`` returning arrays of the
        same shape, e.g. :class:`nucleai.train.augment.Augmenter`. If it has a method
        ``margin(patch_size) -> int``, the loop cuts that many extra pixels on each side before
        augmenting and keeps the central patch afterwards (so an arbitrary rotation has real
        image data in its corners).
    ``extra_pairs`` (optional)
        More ``(image, labels)`` pairs, e.g. synthetic images from style transfer, of which
        ``settings.extra_share`` of every minibatch is drawn (on average; the count per batch is
        the share times the batch size, rounded up or down at random so the mean is exact).
        Augmented like the real pairs. Never used for validation.

What the loop does, per epoch
    ``settings.steps_per_epoch`` minibatches: each sample is a random patch (with probability
    ``settings.foreground_prob`` one containing an object pixel, see
    :mod:`nucleai.train.patches`), augmented, its targets computed; one optimiser step (Adam)
    per batch (:func:`training_patch` makes one sample, to look at what the network is shown).
    The next batch is prepared in a worker thread during the step (``targets`` and
    ``augmenter`` run there, one batch at a time). Then the validation loss on fixed patches
    (``settings.val_patches_per_image`` per validation image, cut once with the seed, not
    augmented), the learning rate multiplied by ``lr_factor`` after ``lr_patience`` epochs
    without a better validation loss, early stopping after ``patience`` such epochs.

Files written to ``out_dir`` (created)
    ``weights_best.h5``  weights of the epoch with the lowest validation loss;
    ``weights_last.h5``  weights after the latest epoch;
    ``optimizer_last.npz``  the optimiser's state after the latest epoch;
    ``train_state.json``  epochs done, history, best epoch, learning rate, patience counters,
    random generator state and the settings;
    ``loss_curve.png``  training and validation loss per epoch (redrawn at most once a minute,
    drawing costs about a second, and when the call returns).
    Weights are Keras' HDF5 format (``.h5``, the format stardist reads and writes), each file
    replaced atomically after the epoch, and Ctrl-C held back while an epoch's checkpoint is
    written, so an interrupted run leaves a consistent, resumable folder.

Resuming
    When ``out_dir`` holds a ``train_state.json``, :func:`fit` continues from it: it loads
    ``weights_last.h5`` and the optimiser state, restores the history, counters, learning rate
    and random generator, and runs the epochs still missing up to ``settings.epochs`` (a run
    that stopped early or used all its epochs does nothing more). The model given must have
    the same architecture. ``settings.minutes`` is a budget per call, so a run cut by the budget
    goes on when called again.

Stopping on request and progress
    ``should_stop()`` (optional) is asked after every optimiser step and before every epoch;
    when it answers true the unfinished epoch is dropped and :func:`fit` returns with
    ``stopped == "stopped"``, leaving the checkpoint of the last whole epoch (resumable, as after
    Ctrl-C) and its best weights; with no epoch ever finished there are no best weights and it
    raises :class:`TrainingStopped` instead. ``on_progress(TrainingProgress)`` (optional) is
    called after every step, so a front end can show epoch, loss and time left.

Wall-clock budget
    With ``settings.minutes`` the loop does not start an epoch it expects (from the mean epoch
    time so far, validation included) to end after the budget; the first epoch of a call always
    runs.

Example
-------
Train a one-output pixel classifier (foreground probability) with this loop::

    import keras
    from nucleai.train import loop
    from nucleai.train.augment import Augmenter

    inputs = keras.Input((None, None, 1))
    hidden = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)

    def targets(labels):
        return ((labels > 0)[..., None].astype("float32"),)

    result = loop.fit(
        model, targets, [keras.losses.BinaryCrossentropy()],
        train_pairs, val_pairs, "out/foreground",
        settings=loop.TrainSettings(patch_size=(128, 128), epochs=20, steps_per_epoch=50),
        augmenter=Augmenter(),
    )
    print(result.best_epoch, result.best_val_loss, result.stopped)
"""
import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .patches import center_crop, sample_patch

STATE_FILE = "train_state.json"
BEST_WEIGHTS = "weights_best.h5"
LAST_WEIGHTS = "weights_last.h5"
OPTIMIZER_FILE = "optimizer_last.npz"
LOSS_CURVE = "loss_curve.png"
#: Seconds between redraws of the loss curve during training.
CURVE_INTERVAL = 60.0


@dataclass(frozen=True)
class TrainSettings:
    """Everything the loop needs to know besides the model and the data.

    Attributes
    ----------
    patch_size : (int, int)
        Training and validation patch size (h, w); must suit the network (e.g. multiples of
        its ``div_by``).
    batch_size : int
        Patches per optimiser step.
    steps_per_epoch : int
        Optimiser steps between validations.
    epochs : int
        Maximum number of epochs (counted over resumed runs).
    learning_rate : float
        Initial Adam learning rate.
    lr_patience : int
        Epochs without a better validation loss before the learning rate is multiplied by
        ``lr_factor`` (0: never).
    lr_factor : float
    patience : int
        Epochs without a better validation loss before training stops (0: never).
    minutes : float or None
        Wall-clock budget of this call (None: unlimited).
    foreground_prob : float
        Probability that a training patch is chosen to contain an object pixel (stardist: 0.9).
    extra_share : float
        Mean fraction of each minibatch drawn from ``extra_pairs`` (0 to 1; needs extra pairs).
    val_patches_per_image : int
        Fixed validation patches per validation image.
    seed : int
        Seeds patch choice, augmentation and the validation patches.
    """

    patch_size: tuple = (256, 256)
    batch_size: int = 4
    steps_per_epoch: int = 100
    epochs: int = 100
    learning_rate: float = 3e-4
    lr_patience: int = 10
    lr_factor: float = 0.5
    patience: int = 25
    minutes: float = None
    foreground_prob: float = 0.9
    extra_share: float = 0.0
    val_patches_per_image: int = 1
    seed: int = 0

    def check(self):
        """Raise InputError naming the first setting out of range; return self."""
        size = tuple(self.patch_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise InputError(f"patch size must be two positive whole numbers, got {self.patch_size!r}")
        for name in ("batch_size", "steps_per_epoch", "epochs", "val_patches_per_image"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {value!r}")
        for name in ("lr_patience", "patience", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InputError(f"{name.replace('_', ' ')} must be a whole number >= 0, got {value!r}")
        if not self.learning_rate > 0:
            raise InputError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 < self.lr_factor <= 1:
            raise InputError(f"learning-rate factor must be in (0, 1], got {self.lr_factor}")
        if self.minutes is not None and not self.minutes > 0:
            raise InputError(f"minutes must be positive, got {self.minutes}")
        for name in ("foreground_prob", "extra_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InputError(f"{name.replace('_', ' ')} must be between 0 and 1, got {value}")
        return self


class TrainingStopped(Exception):
    """Training was stopped on request (``should_stop``) before any epoch had finished, so
    there are no best weights to make a model of."""


@dataclass(frozen=True)
class TrainingProgress:
    """Where :func:`fit` is, for ``on_progress``.

    Attributes
    ----------
    epoch, epochs : int
        The epoch running (1-based, counted over resumed calls) and the maximum.
    step, steps : int
        Steps done in this epoch, and per epoch.
    loss : float
        Mean training loss of this epoch so far.
    seconds_left : float
        Estimated seconds until the last epoch ends (or the time budget does), from the time
        per step so far; early stopping may end training sooner.
    """

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    seconds_left: float


def seconds_left(settings, epochs_done, step, seconds_per_step, elapsed):
    """Estimated seconds until the run ends: the steps left (this epoch's and those of the
    epochs after it) at ``seconds_per_step``, at most what is left of ``settings.minutes``."""
    steps_left = (settings.epochs - epochs_done) * settings.steps_per_epoch - step
    left = max(steps_left, 0) * seconds_per_step
    if settings.minutes is not None:
        left = min(left, 60 * settings.minutes - elapsed)
    return max(left, 0.0)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` did (over all resumed calls).

    Attributes
    ----------
    epochs_done : int
    best_epoch : int
        1-based epoch of ``weights_best.h5`` (0 if no epoch ran).
    best_val_loss : float
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean training loss), ``val_loss``, ``learning_rate``,
        ``seconds``.
    stopped : str
        ``"epochs"`` (all epochs done), ``"early_stopping"``, ``"time_budget"`` or
        ``"stopped"`` (on request: ``should_stop``).
    out_dir : Path
    """

    epochs_done: int
    best_epoch: int
    best_val_loss: float
    history: list
    stopped: str
    out_dir: Path

    @property
    def best_weights(self):
        return self.out_dir / BEST_WEIGHTS


def save_weights(model, path):
    """Write Keras weights in the HDF5 (``.h5``) layout stardist and Keras 2 read, atomically.

    Keras 3 writes ``.h5`` weights only through its legacy saver, which is what csbdeep (and so
    stardist) call too; the file is written beside the target and renamed, so a reader never
    sees a half-written file.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    os.replace(partial, path)


def _save_optimizer(optimizer, path):
    values = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **values)
    os.replace(partial, path)


def _load_optimizer(optimizer, path):
    with np.load(path) as data:
        stored = [data[f"v{i}"] for i in range(len(data.files))]
    if len(stored) != len(optimizer.variables) or any(
        s.shape != tuple(v.shape) for s, v in zip(stored, optimizer.variables)
    ):
        raise InputError(f"{path}: the optimiser state does not fit this network")
    for variable, value in zip(optimizer.variables, stored):
        variable.assign(value)


def _write_json(path, data):
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


@contextlib.contextmanager
def _interrupt_deferred():
    """Hold back Ctrl-C (SIGINT) while the block runs, then raise it: the weights, optimiser
    state and train_state.json of one epoch are written together or not at all. Only the main
    thread can handle signals; elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(frame))
    previous = signal.default_int_handler if previous is None else previous  # None: set outside Python
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])  # Python's default raises KeyboardInterrupt


def plot_loss_curve(history, path):
    """Training and validation loss per epoch as a PNG.

    Drawn on a bare matplotlib ``Figure`` (rendered by Agg), without pyplot and without
    switching matplotlib's backend, so it is safe inside a GUI process such as CellProfiler.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.add_subplot()
    axes.plot(epochs, [h["loss"] for h in history], label="training")
    axes.plot(epochs, [h["val_loss"] for h in history], label="validation")
    best = min(history, key=lambda h: h["val_loss"])
    axes.axvline(best["epoch"], color="grey", linestyle=":", label=f"best (epoch {best['epoch']})")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("loss")
    if min(min(h["loss"], h["val_loss"]) for h in history) > 0:
        axes.set_yscale("log")
    axes.legend()
    figure.tight_layout()
    partial = Path(path).with_name(Path(path).name + ".partial.png")
    figure.savefig(partial)
    os.replace(partial, path)


def _pad_pair(image, labels, size):
    """Mirror-pad image and labels alike so both are at least ``size`` (h, w)."""
    pad = [(0, max(0, s - n)) for s, n in zip(size, labels.shape)]
    if not any(p[1] for p in pad):
        return image, labels
    return np.pad(image, pad + [(0, 0)], mode="symmetric"), np.pad(labels, pad, mode="symmetric")


def _check_pairs(pairs, what):
    checked = []
    channels = None
    for i, (image, labels) in enumerate(pairs):
        image, labels = np.asarray(image), np.asarray(labels)
        if image.ndim != 3 or labels.ndim != 2 or image.shape[:2] != labels.shape:
            raise InputError(
                f"{what} pair {i}: image {image.shape} and labels {labels.shape} must be "
                "(H, W, C) and (H, W)"
            )
        if channels is None:
            channels = image.shape[2]
        elif image.shape[2] != channels:
            raise InputError(f"{what} pair {i}: {image.shape[2]} channels, the first had {channels}")
        checked.append((image.astype(np.float32, copy=False), labels))
    return checked


def training_patch(image, labels, settings, rng, augmenter=None):
    """One training sample as the loop makes it: padded, cut, augmented, cropped.

    Useful to look at what the network is shown.

    Parameters
    ----------
    image : (H, W, C) float32 array
    labels : (H, W) int array
    settings : TrainSettings
        ``patch_size`` and ``foreground_prob`` are used.
    rng : numpy.random.Generator
    augmenter : callable, optional
        See :func:`fit`.

    Returns
    -------
    image : (h, w, C) array, labels : (h, w) array
        ``(h, w) = settings.patch_size``.
    """
    margin = int(augmenter.margin(settings.patch_size)) if hasattr(augmenter, "margin") else 0
    size = tuple(s + 2 * margin for s in settings.patch_size)
    image, labels = _pad_pair(image, labels, size)
    image, labels = sample_patch(image, labels, size, rng, settings.foreground_prob)
    if augmenter is not None:
        image, labels = augmenter(image, labels, rng)
    if margin:
        image, labels = center_crop(image, labels, settings.patch_size)
    return image, labels


def _batch(patches, targets):
    """Stack patches into (x, [target batches])."""
    x = np.stack([np.ascontiguousarray(image, np.float32) for image, _ in patches])
    per_patch = [tuple(targets(labels)) for _, labels in patches]
    ys = [np.stack([t[k] for t in per_patch]).astype(np.float32, copy=False) for k in range(len(per_patch[0]))]
    return x, ys


def _validation_batches(val_pairs, targets, settings):
    rng = np.random.default_rng([settings.seed, 1])
    patches = [
        training_patch(*pair, settings, rng)
        for pair in val_pairs
        for _ in range(settings.val_patches_per_image)
    ]
    return [
        _batch(patches[i : i + settings.batch_size], targets)
        for i in range(0, len(patches), settings.batch_size)
    ]


def _extra_count(settings, rng, has_extra):
    if not has_extra or settings.extra_share == 0:
        return 0
    mean = settings.extra_share * settings.batch_size
    return int(math.floor(mean) + (rng.random() < mean - math.floor(mean)))


def _to_float(value):
    import keras

    return float(keras.ops.convert_to_numpy(value))


def _step_functions(model, losses, loss_weights, optimizer):
    """Compiled training and validation steps: the weighted sum of the mean of each loss.

    Our own ``tf.function`` rather than Keras' ``train_on_batch``: it is traced once (Keras'
    traces its step twice, seconds each for a U-Net), and the loss is exactly
    ``sum_k weight_k * mean(loss_k(target_k, output_k))`` (Keras' default reduction) plus the
    model's own regularisation losses.
    """
    import tensorflow as tf

    weights = [1.0] * len(losses) if loss_weights is None else [float(w) for w in loss_weights]

    def total_loss(x, ys, training):
        outputs = model(x, training=training)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        terms = [w * tf.reduce_mean(fn(y, out)) for fn, w, y, out in zip(losses, weights, ys, outputs)]
        return tf.add_n(terms + list(model.losses))

    @tf.function(reduce_retracing=True)
    def train_step(x, ys):
        with tf.GradientTape() as tape:
            loss = total_loss(x, ys, True)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function(reduce_retracing=True)
    def val_step(x, ys):
        return total_loss(x, ys, False)

    return train_step, val_step


def fit(model, targets, losses, train_pairs, val_pairs, out_dir, settings=TrainSettings(), *,
        loss_weights=None, augmenter=None, extra_pairs=(), progress=True, log=None, should_stop=None,
        on_progress=None):
    """Train ``model`` on patches of (image, labels) pairs; see the module docstring.

    Parameters
    ----------
    model : keras.Model
    targets : callable
        ``targets(labels_patch) -> tuple`` of one target array per model output.
    losses : sequence of callables
        One Keras loss per output.
    train_pairs, val_pairs : sequence of (image, labels)
        Image (H, W, C) float32, normalised; labels (H, W) ints.
    out_dir : str or Path
        Checkpoints, state and loss curve (created; resumed from when it holds a state file).
    settings : TrainSettings
    loss_weights : sequence of float, optional
        Weight per loss (default: all 1).
    augmenter : callable, optional
        ``augmenter(image, labels, rng) -> (image, labels)``; optional ``margin(patch_size)``.
    extra_pairs : sequence of (image, labels), optional
        Pairs mixed into every minibatch at ``settings.extra_share``.
    progress : bool
        Show a progress bar per epoch (tqdm, on stderr).
    log : callable, optional
        ``log(message)`` receives one line per epoch and per event (resume, stop).
    should_stop : callable, optional
        ``should_stop() -> bool``, asked after every step and before every epoch (see the
        module docstring).
    on_progress : callable, optional
        ``on_progress(TrainingProgress)`` after every step.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingStopped
        Stopped on request before any epoch (of this or an earlier call) had finished.
    InputError
        For settings out of range, no training or validation pairs, pairs of unequal shapes or
        channel counts, extra pairs asked for but not given, or a state file that does not fit.
    """
    import keras
    from tqdm import tqdm

    settings.check()
    log = log or (lambda message: None)
    should_stop = should_stop or (lambda: False)
    on_progress = on_progress or (lambda progress: None)
    train_pairs = _check_pairs(train_pairs, "training")
    val_pairs = _check_pairs(val_pairs, "validation")
    extra_pairs = _check_pairs(extra_pairs, "extra")
    if not train_pairs:
        raise InputError("no training images")
    if not val_pairs:
        raise InputError("no validation images")
    if settings.extra_share > 0 and not extra_pairs:
        raise InputError(f"an extra share of {settings.extra_share} needs extra (e.g. synthetic) pairs")
    channels = {pairs[0][0].shape[2] for pairs in (train_pairs, val_pairs, extra_pairs) if pairs}
    if len(channels) > 1:
        raise InputError(f"training, validation and extra images differ in channels: {sorted(channels)}")
    expected = model.inputs[0].shape[-1]
    if expected is not None and channels != {expected}:
        raise InputError(f"the network takes {expected} channels but the images have {channels.pop()}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    state = {
        "epochs_done": 0, "best_epoch": 0, "best_val_loss": math.inf, "since_best": 0,
        "since_lr_change": 0, "learning_rate": settings.learning_rate, "history": [],
        "stopped": None, "rng": None,
    }
    losses = list(losses)
    if len(losses) != len(model.outputs):
        raise InputError(f"the network has {len(model.outputs)} outputs but {len(losses)} losses were given")
    if loss_weights is not None and len(loss_weights) != len(losses):
        raise InputError(f"{len(loss_weights)} loss weights for {len(losses)} losses")
    optimizer = keras.optimizers.Adam(settings.learning_rate)
    # optimiser variables made now, not inside the first traced step
    optimizer.build(model.trainable_variables)
    train_step, val_step = _step_functions(model, losses, loss_weights, optimizer)
    rng = np.random.default_rng(settings.seed)
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            model.load_weights(str(out_dir / LAST_WEIGHTS))
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{out_dir}: cannot resume from {STATE_FILE} ({type(error).__name__}: {error})") from error
        _load_optimizer(optimizer, out_dir / OPTIMIZER_FILE)
        optimizer.learning_rate.assign(state["learning_rate"])
        rng.bit_generator.state = state["rng"]
        log(f"resuming after epoch {state['epochs_done']} (best {state['best_epoch']}: "
            f"validation loss {state['best_val_loss']:.4f})")

    val_batches = _validation_batches(val_pairs, targets, settings)
    start = time.monotonic()
    stopped = state["stopped"] or "epochs"
    epoch_seconds = []
    last_curve = start
    while state["stopped"] is None and state["epochs_done"] < settings.epochs:
        if should_stop():
            stopped = "stopped"
            break
        if settings.minutes is not None and epoch_seconds:
            expected_end = time.monotonic() - start + np.mean(epoch_seconds)
            if expected_end > 60 * settings.minutes:
                stopped = "time_budget"
                log(f"time budget of {settings.minutes:g} min: no time for another epoch")
                break
        epoch = state["epochs_done"] + 1
        epoch_start = time.monotonic()
        losses_seen = []
        bar = tqdm(range(settings.steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)

        def next_batch():
            n_extra = _extra_count(settings, rng, bool(extra_pairs))
            chosen = [train_pairs[i] for i in rng.integers(len(train_pairs), size=settings.batch_size - n_extra)]
            chosen += [extra_pairs[i] for i in rng.integers(len(extra_pairs), size=n_extra)] if n_extra else []
            return _batch([training_patch(*pair, settings, rng, augmenter) for pair in chosen], targets)

        # the next batch is cut and augmented in one worker thread while the network trains on
        # this one; batches are made one after another, so the random sequence is that of a
        # serial loop, and all of the epoch's are made before its state is saved
        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = worker.submit(next_batch)
            for step in bar:
                x, ys = pending.result()
                if step + 1 < settings.steps_per_epoch:
                    pending = worker.submit(next_batch)
                losses_seen.append(_to_float(train_step(x, ys)))
                bar.set_postfix(loss=f"{np.mean(losses_seen):.4f}", refresh=False)
                per_step = (np.mean(epoch_seconds) / settings.steps_per_epoch if epoch_seconds
                            else (time.monotonic() - epoch_start) / (step + 1))
                on_progress(TrainingProgress(
                    epoch=epoch, epochs=settings.epochs, step=step + 1, steps=settings.steps_per_epoch,
                    loss=float(np.mean(losses_seen)),
                    seconds_left=seconds_left(settings, state["epochs_done"], step + 1, per_step,
                                              time.monotonic() - start)))
                if should_stop():
                    stopped = "stopped"
                    break
        bar.close()
        if stopped == "stopped":  # this epoch is dropped: the checkpoint of the last whole one stays
            log(f"stopped on request during epoch {epoch}; keeping the checkpoint after epoch "
                f"{state['epochs_done']} (best: epoch {state['best_epoch']})")
            break
        sizes = [len(x) for x, _ in val_batches]
        val_losses = [_to_float(val_step(x, ys)) for x, ys in val_batches]
        val_loss = float(np.average(val_losses, weights=sizes))
        learning_rate = _to_float(optimizer.learning_rate)

        state["epochs_done"] = epoch
        if val_loss < state["best_val_loss"]:
            state.update(best_epoch=epoch, best_val_loss=val_loss, since_best=0, since_lr_change=0)
            save_weights(model, out_dir / BEST_WEIGHTS)
        else:
            state["since_best"] += 1
            state["since_lr_change"] += 1
        if settings.lr_patience and state["since_lr_change"] >= settings.lr_patience:
            optimizer.learning_rate.assign(learning_rate * settings.lr_factor)
            state["since_lr_change"] = 0
            log(f"learning rate {learning_rate:.3g} -> {learning_rate * settings.lr_factor:.3g}")
        seconds = time.monotonic() - epoch_start
        epoch_seconds.append(seconds)
        state["history"].append({
            "epoch": epoch, "loss": float(np.mean(losses_seen)), "val_loss": val_loss,
            "learning_rate": learning_rate, "seconds": seconds,
        })
        if settings.patience and state["since_best"] >= settings.patience:
            state["stopped"] = stopped = "early_stopping"
        state["learning_rate"] = _to_float(optimizer.learning_rate)
        state["rng"] = rng.bit_generator.state
        state["settings"] = dataclasses.asdict(settings)
        with _interrupt_deferred():  # Ctrl-C leaves this epoch's checkpoint whole, or the last one
            save_weights(model, out_dir / LAST_WEIGHTS)
            _save_optimizer(optimizer, out_dir / OPTIMIZER_FILE)
            _write_json(state_path, state)
        if time.monotonic() - last_curve > CURVE_INTERVAL:
            plot_loss_curve(state["history"], out_dir / LOSS_CURVE)
            last_curve = time.monotonic()
        log(f"epoch {epoch}: loss {state['history'][-1]['loss']:.4f}, validation loss {val_loss:.4f}"
            f"{' (best)' if state['best_epoch'] == epoch else ''}, {seconds:.1f} s")
        if state["stopped"]:
            log(f"early stopping: no better validation loss for {settings.patience} epochs")
    if state["history"]:
        plot_loss_curve(state["history"], out_dir / LOSS_CURVE)
    if stopped == "stopped" and not state["best_epoch"]:
        raise TrainingStopped("training was stopped before its first epoch ended: there are no weights to keep")
    return TrainResult(
        epochs_done=state["epochs_done"], best_epoch=state["best_epoch"],
        best_val_loss=state["best_val_loss"], history=state["history"], stopped=stopped,
        out_dir=out_dir,
    )
