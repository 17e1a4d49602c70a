"""Training a star-convex nucleus detector end to end into a StarDist-layout model folder.

:func:`train_detector` wires the parts: the network (:mod:`.starconvex`, new or fine-tuned from
a model folder), the data (:mod:`.data`: channels, normalisation), the generic loop
(:mod:`.loop`: patches, augmentation, extra pairs, validation, early stopping, checkpoints,
resume), then threshold tuning for the mean DSB score on the validation images
(:func:`nucleai.thresholds.tune_thresholds`), the validation scores at the tuned thresholds
through the prediction path users run (:func:`nucleai.predict.segment`), the training objects'
median diameter (``nucleai.json``) and the model card (:mod:`.card`).

The folder written holds ``config.json`` (from the start, so every checkpoint is a loadable
model), ``weights_best.h5`` and ``weights_last.h5``, ``thresholds.json``, ``nucleai.json``
(``object_diameter``, and ``base_model``: the folder a fine-tuned model started from),
``MODEL.md``, and the loop's ``train_state.json``, ``optimizer_last.npz``, ``loss_curve.png``.
Running again with the same folder resumes training (the network is then rebuilt from the
folder's own ``config.json``; a base model is not needed again).
"""
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..models import CONFIG_FILE, METADATA_FILE, div_by, read_spec
from ..predict import PERCENTILES
from . import card, loop, starconvex
from .augment import Augmenter
from .data import median_object_diameter, prepare, to_channels
from .seeding import seeded


#: Key of nucleai.json recording the model a fine-tuned model started from.
BASE_KEY = "base_model"


@dataclass(frozen=True)
class NetworkSettings:
    """Architecture of a new network (a fine-tuned one keeps its base's).

    Defaults are stardist's (32 rays, grid 2, U-Net depth 3 with 32 base filters, 128-channel
    head), the bundled model's architecture.
    """

    n_rays: int = 32
    grid: tuple = (2, 2)
    unet_n_depth: int = 3
    unet_n_filter_base: int = 32
    net_conv_after_unet: int = 128


@dataclass(frozen=True)
class DetectorResult:
    """What :func:`train_detector` produced.

    Attributes
    ----------
    out_dir : Path
    training : nucleai.train.loop.TrainResult
    prob_thresh, nms_thresh : float
        Tuned on the validation images.
    validation : nucleai.metrics.DatasetEvaluation
        Scores on the validation images at the tuned thresholds.
    object_diameter : float
        Median equivalent diameter of the training objects (pixels).
    """

    out_dir: Path
    training: object
    prob_thresh: float
    nms_thresh: float
    validation: object
    object_diameter: float


def holds_foreign_model(out_dir):
    """Whether a folder holds a model (config.json and weights) that training did not start
    there (training leaves ``train_state.json``, and a folder with one is resumed)."""
    out_dir = Path(out_dir)
    return ((out_dir / CONFIG_FILE).is_file() and any(out_dir.glob("*.h5"))
            and not (out_dir / loop.STATE_FILE).is_file())


def input_channels(out_dir, samples, base=None):
    """The network's input channels when the user did not choose them.

    A resumed model keeps its channels; otherwise 3 when any image has colour (nucleAIzer's
    RGB input; a grey base is then widened), else the base model's, else 1.
    """
    from .data import is_colour

    out_dir = Path(out_dir)
    if (out_dir / loop.STATE_FILE).is_file() and (out_dir / CONFIG_FILE).is_file():
        return int(json.loads((out_dir / CONFIG_FILE).read_text())["n_channel_in"])
    if any(is_colour(sample.image) for sample in samples):
        return 3
    if base is not None:
        return read_spec(base).n_channel_in
    return 1


def new_network_config(network, n_channels, settings=None):
    """The config.json of a new network (``network``: NetworkSettings), recording ``settings``."""
    return starconvex.stardist_config(
        n_rays=network.n_rays, grid=network.grid, n_channel_in=n_channels,
        unet_n_depth=network.unet_n_depth, unet_n_filter_base=network.unet_n_filter_base,
        net_conv_after_unet=network.net_conv_after_unet,
        **(_training_keywords(settings) if settings is not None else {}),
    )


def base_config(spec):
    """A base model's config; keys an older stardist did not write take today's defaults, as
    stardist does."""
    return {**starconvex.stardist_config(spec.n_rays, spec.grid, spec.n_channel_in), **spec.config}


def check_patch_size(patch_size, config):
    """Raise InputError (field ``patch_size``) unless the patch sides are multiples of the
    network's ``div_by``."""
    required = div_by(config)
    if any(p % d for p, d in zip(patch_size, required)):
        raise InputError(f"patch size {tuple(patch_size)} must be a multiple of {required} for this network",
                         "patch_size")


def _network(out_dir, settings, network, n_channels, base, log):
    """The model config and Keras network: resumed, fine-tuned from ``base``, or new."""
    state = out_dir / loop.STATE_FILE
    if state.is_file():
        config = json.loads((out_dir / CONFIG_FILE).read_text())
        starconvex.check_compatible(config, n_channel_in=n_channels, source=f"{out_dir} (resumed)")
        metadata = out_dir / METADATA_FILE
        base_path = json.loads(metadata.read_text()).get(BASE_KEY) if metadata.is_file() else None
        return config, starconvex.build_network(config), base_path
    if holds_foreign_model(out_dir):
        raise InputError(f"{out_dir} already holds a model (config.json and weights) that was not "
                         "trained here; choose a new output folder", "out")
    if base is None:
        config = new_network_config(network, n_channels, settings)
        with seeded(settings.seed):  # reproducible initial weights
            return config, starconvex.build_network(config), None
    spec = read_spec(base)
    widen = spec.n_channel_in == 1 and n_channels == 3
    if not widen:
        starconvex.check_compatible(spec.config, n_channel_in=n_channels, source=f"base model {spec.path}")
    config = {**base_config(spec), **starconvex.training_record(**_training_keywords(settings))}
    with seeded(settings.seed):
        model = starconvex.build_network(config)
        try:
            model.load_weights(str(spec.weights))
        except (ValueError, OSError) as error:  # another architecture; a truncated or corrupt HDF5 file
            raise InputError(f"{spec.weights}: does not load into the network of its config.json ({error})",
                             "base") from error
        if widen:
            config = {**config, "n_channel_in": 3, "net_input_shape": [None, None, 3]}
            grey_model, model = model, starconvex.build_network(config)
            starconvex.widen_to_colour(grey_model, model)
    log(f"fine-tuning {spec.path} ({spec.weights.name})"
        + (", widened from grey to colour input" if widen else ""))
    return config, model, spec.path


def _training_keywords(settings):
    """The settings a model's config records (:func:`nucleai.train.starconvex.training_record`)."""
    return dict(
        patch_size=settings.patch_size, batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, epochs=settings.epochs,
        steps_per_epoch=settings.steps_per_epoch, lr_factor=settings.lr_factor,
        lr_patience=settings.lr_patience,
    )


def train_detector(train, val, out_dir, *, n_channels, settings=loop.TrainSettings(),
                   network=NetworkSettings(), base=None, augmenter=Augmenter(), extra=(),
                   percentiles=PERCENTILES, data_description=None, command=None, progress=True,
                   log=None, should_stop=None, on_progress=None):
    """Train (or fine-tune, or resume) a star-convex detector into a model folder.

    Parameters
    ----------
    train, val : sequence of nucleai.train.data.Sample
        Annotated training and validation images (as read: any dtype, grey or colour).
    out_dir : str or Path
        The model folder (created; resumed when it holds a ``train_state.json``).
    n_channels : 1 or 3
        Input channels of the network; images are converted by :func:`.data.to_channels`.
    settings : nucleai.train.loop.TrainSettings
        Patch size, batch, steps, epochs, budget, seed, ... The patch size must be a multiple
        of the network's ``div_by``.
    network : NetworkSettings
        Architecture of a new network (ignored when fine-tuning or resuming).
    base : str or Path, optional
        A model folder (stardist layout) or bundled model name to start from. A grey (1-channel)
        base for a colour network is widened (:func:`.starconvex.widen_to_colour`).
    augmenter : callable, optional
        See :func:`nucleai.train.loop.fit`.
    extra : sequence of Sample, optional
        Extra (e.g. synthetic) annotated images, drawn at ``settings.extra_share`` per minibatch.
    percentiles : (float, float)
        Normalisation percentiles (as at prediction).
    data_description : list of str, optional
        Lines describing the data for the model card.
    command : str, optional
        The command that ran this, for the model card.
    progress : bool
    log : callable, optional
    should_stop, on_progress : callable, optional
        See :func:`nucleai.train.loop.fit`. Stopped on request, the model is finished (thresholds,
        scores, card) from the best epoch so far; :class:`nucleai.train.loop.TrainingStopped`
        when no epoch had finished.

    Returns
    -------
    DetectorResult

    Raises
    ------
    InputError
        For a base model with other channels, an output folder holding a foreign model, a patch
        size the network cannot take, images with the wrong channels, ... (see
        :func:`nucleai.train.loop.fit`).
    """
    from .. import metrics, thresholds
    from ..models import load
    from ..predict import SegmentOptions, segment

    log = log or (lambda message: None)
    settings.check()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} is a file; a model is a folder", "out")
    config, model, base_path = _network(out_dir, settings, network, n_channels, base, log)
    check_patch_size(settings.patch_size, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config))
    metadata = {} if base_path is None else {BASE_KEY: str(base_path)}
    if not (out_dir / loop.STATE_FILE).is_file():  # resumed: a finished or stopped model keeps its metadata
        (out_dir / METADATA_FILE).write_text(json.dumps(metadata))

    def pairs(samples, what):
        prepared = []
        for sample in samples:
            try:
                prepared.append((prepare(sample.image, n_channels, percentiles), sample.labels))
            except InputError as error:
                raise InputError(f"{what} image {sample.name}: {error}") from None
        return prepared

    n_rays, grid = int(config["n_rays"]), tuple(config["grid"])
    result = loop.fit(
        model, lambda labels: starconvex.targets(labels, n_rays, grid),
        [starconvex.prob_loss, starconvex.dist_loss(n_rays, float(config["train_background_reg"]))],
        pairs(train, "training"), pairs(val, "validation"), out_dir, settings,
        loss_weights=list(config["train_loss_weights"]), augmenter=augmenter, extra_pairs=pairs(extra, "extra"),
        progress=progress, log=log, should_stop=should_stop, on_progress=on_progress,
    )

    diameter = median_object_diameter([s.labels for s in train])
    (out_dir / METADATA_FILE).write_text(json.dumps({"object_diameter": diameter, **metadata}))
    val_images = [to_channels(s.image, n_channels) for s in val]
    val_truths = [s.labels for s in val]
    trained = load(out_dir)
    search = thresholds.tune_thresholds(trained, val_images, val_truths, percentiles=percentiles)
    thresholds.write_thresholds(out_dir, search.prob_thresh, search.nms_thresh)
    evaluation = metrics.summarize(
        metrics.evaluate_image(truth, segment(image, trained, SegmentOptions(
            prob_thresh=search.prob_thresh, nms_thresh=search.nms_thresh, percentiles=percentiles)).labels)
        for image, truth in zip(val_images, val_truths)
    )
    log(f"thresholds tuned on {len(val)} validation images: prob {search.prob_thresh:g}, "
        f"nms {search.nms_thresh:g}; mean DSB score {evaluation.dsb_score:.4f}, "
        f"score at IoU 0.5 {evaluation.score[0]:.4f}")
    detector = DetectorResult(
        out_dir=out_dir, training=result, prob_thresh=search.prob_thresh, nms_thresh=search.nms_thresh,
        validation=evaluation, object_diameter=diameter,
    )
    card.write_model_card(
        out_dir / card.CARD_FILE, detector, config=config, settings=settings, augmenter=augmenter,
        n_train=len(train), n_val=len(val), n_extra=len(extra), base=base_path,
        n_val_trained_on=len({s.name for s in val} & {s.name for s in train}),
        data_description=data_description or [], command=command,
    )
    return detector
