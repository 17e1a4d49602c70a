"""nucleAIzer's style-transfer augmentation, and training a detector with it.

When a new kind of image has few annotations, nucleAIzer (Hollandi et al. 2020) learns the
kind's look from unannotated images and renders synthetic annotated images in that look:

1. cluster the unannotated target images by style (:mod:`.style`; more clusters than visible
   types, too-small clusters dropped);
2. per style, pair images with masks: annotated images that fall inside the style bring their
   annotations, unannotated ones a first-pass segmentation by an existing model; train a
   mask -> image generator on those pairs (:mod:`.pix2pix`);
3. synthesise masks that follow the style's measured objects, half real nucleus shapes, half
   simulated star-convex shapes (:mod:`.synthetic_masks`), and render them with the style's
   generator (20 pairs per style by default);
4. train the detector with those pairs making up a share (10-50 %) of every minibatch, with
   the same conventional augmentation as the real images (:func:`.detector.train_detector`).

Everything a style produced stays in the model folder under ``styles/``: the generator
(``style_<i>/``), the synthetic pairs (``synthetic/images``, ``synthetic/labels``) and a PNG grid
of real against synthetic samples per style, so a person can judge them; a resumed run reuses
the synthetic pairs instead of training the generators again.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import models
from ..errors import InputError
from . import pix2pix, style, style_grid, synthetic_masks
from .data import Sample, to_channels
from .loop import TrainSettings

#: Sub-folder of the model folder holding everything the styles produced.
STYLES_DIR = "styles"
#: Record of the styles found, in STYLES_DIR.
STYLES_FILE = "styles.json"


@dataclass(frozen=True)
class StyleSettings:
    """Choices of the style augmentation (nucleAIzer's values as defaults where it gives them).

    Attributes
    ----------
    k : int or None
        Number of style clusters; None chooses it (:func:`.style.cluster_styles`' rule).
    min_cluster_size : int
        Styles with fewer images are dropped (too few to train a generator on).
    pairs_per_style : int
        Synthetic (image, mask) pairs rendered per style (nucleAIzer: 20).
    share : float
        Mean share of synthetic pairs in each training minibatch (nucleAIzer: 0.1 to 0.5).
    real_shape_share : float
        Share of synthetic objects that are real nucleus shapes (the rest simulated).
    generator : nucleai.train.pix2pix.GeneratorSettings
        Size and budget of each style's generator.
    seed : int
    """

    k: int = None
    min_cluster_size: int = 3
    pairs_per_style: int = 20
    share: float = 0.3
    real_shape_share: float = 0.5
    generator: pix2pix.GeneratorSettings = field(default_factory=pix2pix.GeneratorSettings)
    seed: int = 0

    def check(self):
        """Raise InputError naming the first setting out of range; return self."""
        if self.k is not None and (not isinstance(self.k, int) or self.k < 1):
            raise InputError(f"number of styles must be a whole number >= 1 (or automatic), got {self.k!r}")
        for name in ("min_cluster_size", "pairs_per_style"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name.replace('_', ' ')} must be a whole number >= 1, got {value!r}")
        if not 0.1 <= self.share <= 0.5:
            raise InputError(f"synthetic share must be between 0.1 and 0.5 (10-50 %), got {self.share}")
        if not 0 <= self.real_shape_share <= 1:
            raise InputError(f"real shape share must be between 0 and 1, got {self.real_shape_share}")
        self.generator.check()
        return self


@dataclass(frozen=True)
class StyleReport:
    """What :func:`synthesise_styles` found and made.

    Attributes
    ----------
    k : int
        Clusters made (before dropping small ones).
    rule : str
        How ``k`` was chosen.
    kept : list of dict
        Per kept style: ``style``, ``unlabeled`` and ``annotated`` image counts, generator
        ``pairs``, ``objects_per_image`` of its synthetic masks, ``generator_minutes``.
    dropped : list of (int, int)
        (cluster, size) of clusters too small to learn from.
    grids : list of Path
        One PNG per kept style, real against synthetic samples.
    synthetic : list of Sample
        The synthetic annotated images, all styles.
    """

    k: int
    rule: str
    kept: list
    dropped: list
    grids: list
    synthetic: list

    def describe(self):
        """Lines for the model card."""
        lines = [f"style clusters of the unannotated images: {self.k} ({self.rule})"]
        for info in self.kept:
            lines.append(
                f"style {info['style']}: {info['unlabeled']} unannotated + {info['annotated']} annotated images, "
                f"generator trained on {info['pairs']} pairs for {info['generator_minutes']:.1f} min, "
                f"{info['synthetic']} synthetic pairs (~{info['objects_per_image']:.0f} objects each)"
            )
        for cluster, size in self.dropped:
            lines.append(f"cluster {cluster} dropped: {size} image(s), fewer than the minimum per style")
        lines.append(f"synthetic pairs in training: {len(self.synthetic)}")
        return lines


@dataclass(frozen=True)
class StyledTraining:
    """What :func:`train_with_styles` produced: the detector, and the styles (None without)."""

    detector: object
    styles: StyleReport = None


def _as_generator_sees(image, n_channels):
    """An image as its style's generator learns it (:func:`.pix2pix.image_to_unit`), in uint8."""
    unit = pix2pix.image_to_unit(to_channels(image, n_channels), n_channels=n_channels)
    return np.rint((unit + 1) * 127.5).astype(np.uint8)


def dark_objects(image):
    """Whether nuclei are darker than the background (brightfield, histology).

    The background covers most of an image, so a median in the upper half of the 1-99
    percentile range means a bright background; a grey first-pass model trained on
    fluorescence then gets the image's haematoxylin density (:func:`first_pass_labels`).
    """
    grey = to_channels(image, 1)[..., 0].astype(np.float64)
    low, high = np.percentile(grey, (1, 99))
    return bool(np.median(grey) > (low + high) / 2)


def first_pass_labels(model, images, log):
    """Label images of unannotated images from an existing model, at its own thresholds.

    A grey model (trained on fluorescence: bright nuclei) gets a bright-background image's
    haematoxylin density, where nuclei are bright: on the 4 annotated DSB 2018 brightfield
    images ``fluo_nuclei`` scores DSB 0.119 on it against 0.081 on the inverted grey image, and
    on the 8 histology images 0.237 against 0.230.
    """
    from ..predict import segment
    from ..stain import haematoxylin

    labels = []
    for image in images:
        if model.spec.n_channel_in == 1 and dark_objects(image):
            channels = haematoxylin(image)[..., None]
        else:
            channels = to_channels(image, model.spec.n_channel_in)
        labels.append(segment(channels, model).labels)
    log(f"first-pass segmentation of {len(images)} unannotated images: "
        f"{int(np.median([l.max() for l in labels])) if labels else 0} objects per image (median)")
    return labels


def _read_synthetic(folder):
    """Synthetic pairs written by an earlier run (resume), or None."""
    import tifffile

    from ..labelio import read_labels

    record = folder / STYLES_FILE
    if not record.is_file():
        return None
    report = json.loads(record.read_text())
    synthetic = [
        Sample(name, tifffile.imread(folder / "synthetic" / "images" / f"{name}.tif"),
               read_labels(folder / "synthetic" / "labels" / f"{name}.tif"))
        for name in report.pop("synthetic")
    ]
    return StyleReport(**{**report, "grids": [Path(p) for p in report["grids"]],
                          "dropped": [tuple(d) for d in report["dropped"]]}, synthetic=synthetic)


def _write_synthetic(folder, report):
    import tifffile

    from ..labelio import write_labels

    for sub in ("images", "labels"):
        (folder / "synthetic" / sub).mkdir(parents=True, exist_ok=True)
    for sample in report.synthetic:
        tifffile.imwrite(folder / "synthetic" / "images" / f"{sample.name}.tif", sample.image)
        write_labels(folder / "synthetic" / "labels" / f"{sample.name}.tif", sample.labels)
    record = {"k": report.k, "rule": report.rule, "kept": report.kept, "dropped": report.dropped,
              "grids": [str(p) for p in report.grids], "synthetic": [s.name for s in report.synthetic]}
    (folder / STYLES_FILE).write_text(json.dumps(record, indent=1))


def synthesise_styles(annotated, unlabeled, out_dir, *, n_channels, settings=StyleSettings(),
                      first_pass=None, progress=True, log=None, should_stop=None):
    """Cluster the unannotated images by style and render synthetic annotated images per style.

    Parameters
    ----------
    annotated : sequence of Sample
        Annotated images; those inside a style's cluster (:func:`.style.nearest_style`) train
        its generator with their real masks and lend their nucleus shapes.
    unlabeled : sequence of Sample
        The unannotated target images (``labels`` ignored).
    out_dir : str or Path
        Folder for the generators, synthetic pairs and grids (created). When it already holds
        a finished record, that is returned instead (resume).
    n_channels : 1 or 3
        Channels of the synthetic images (those of the detector to train).
    settings : StyleSettings
    first_pass : nucleai.models.StarConvexModel, optional
        Segments the unannotated images of a style; needed unless every style has annotated
        images to learn from.
    progress : bool
    log : callable, optional
    should_stop : callable, optional
        Asked before every generator step (:func:`.pix2pix.train_generator`): True stops the
        run with :class:`nucleai.train.loop.TrainingStopped`.

    Returns
    -------
    StyleReport

    Raises
    ------
    InputError
        Too few unannotated images for one style, no model for the first pass, ...
    """
    log = log or (lambda message: None)
    settings.check()
    out_dir = Path(out_dir)
    done = _read_synthetic(out_dir)
    if done is not None:
        log(f"reusing the {len(done.synthetic)} synthetic pairs of {out_dir}")
        return done
    if not unlabeled:
        raise InputError("style augmentation needs unannotated images of the target kind", "style")
    clusters = style.cluster_styles([s.image for s in unlabeled], k=settings.k,
                                    min_cluster_size=settings.min_cluster_size, seed=settings.seed)
    log(f"{clusters.k} style clusters ({clusters.rule}); kept {len(clusters.kept)}, "
        f"dropped {len(clusters.dropped)}")
    annotated_style = [style.nearest_style(clusters, s.image) for s in annotated]
    kept, grids, synthetic = [], [], []
    out_dir.mkdir(parents=True, exist_ok=True)
    for style_id in clusters.kept:
        members = [s for s, label in zip(unlabeled, clusters.labels) if label == style_id]
        known = [s for s, label in zip(annotated, annotated_style) if label == style_id]
        images = [s.image for s in known] + [s.image for s in members]
        if members and first_pass is None:
            raise InputError(f"style {style_id} has {len(members)} unannotated images to segment first; "
                             "give a first-pass model (or a base model)", "first_pass")
        masks = [s.labels for s in known] + (first_pass_labels(first_pass, [s.image for s in members], log)
                                             if members else [])
        pairs = [(m, i) for m, i in zip(masks, images) if m.max() > 0]
        if not pairs:
            log(f"style {style_id}: no objects found in its images; skipped")
            continue
        log(f"style {style_id}: training its generator on {len(pairs)} (mask, image) pairs")
        generator_dir = out_dir / f"style_{style_id}"
        generator = pix2pix.train_generator([m for m, _ in pairs], [to_channels(i, n_channels) for _, i in pairs],
                                            n_channels=n_channels, settings=settings.generator,
                                            out_dir=generator_dir, progress=progress, log=log,
                                            should_stop=should_stop)
        minutes = models.read_spec(generator_dir, kind="generator").config.get("minutes", float("nan"))
        stats = synthetic_masks.measure_objects([m for m, _ in pairs])
        shape = tuple(int(v) for v in np.median([m.shape for m, _ in pairs], axis=0))
        new_masks = synthetic_masks.synthesise_masks(stats, shape, settings.pairs_per_style,
                                                     real_share=settings.real_shape_share,
                                                     seed=settings.seed + style_id)
        new_images = pix2pix.render_images(generator, new_masks, n_channels=n_channels)
        synthetic += [Sample(f"style{style_id}_{i:03d}", image, mask)
                      for i, (image, mask) in enumerate(zip(new_images, new_masks))]
        grid = out_dir / f"style_{style_id}_real_vs_synthetic.png"
        style_grid.save_style_grid(grid, [_as_generator_sees(i, n_channels) for _, i in pairs],
                                   [m for m, _ in pairs], new_images, new_masks,
                                   title=f"style {style_id}: real (top) and synthetic (bottom)")
        grids.append(grid)
        kept.append({"style": int(style_id), "unlabeled": len(members), "annotated": len(known),
                     "pairs": len(pairs), "generator_minutes": float(minutes),
                     "synthetic": len(new_masks),
                     "objects_per_image": float(np.mean([m.max() for m in new_masks]))})
    if not synthetic:
        raise InputError("no style produced synthetic images (no objects in any style's images)")
    report = StyleReport(k=int(clusters.k), rule=clusters.rule, kept=kept,
                         dropped=[(int(c), int(n)) for c, n in clusters.dropped], grids=grids,
                         synthetic=synthetic)
    _write_synthetic(out_dir, report)
    return report


def train_with_styles(train, val, out_dir, *, n_channels, settings=TrainSettings(), unlabeled=(),
                      style=None, first_pass=None, base=None, augmenter=None, data_description=None,
                      command=None, progress=True, log=None, style_should_stop=None, **detector_options):
    """Train a detector (:func:`.detector.train_detector`), with style augmentation when asked.

    Parameters
    ----------
    train, val : sequence of Sample
        Annotated training and validation images.
    out_dir : str or Path
        The model folder; the styles go to ``out_dir/styles``.
    n_channels : 1 or 3
    settings : nucleai.train.loop.TrainSettings
        Its ``extra_share`` is replaced by ``style.share`` (0 without styles).
    unlabeled : sequence of Sample
        Unannotated target images (style input).
    style : StyleSettings or None
        None trains without style augmentation.
    first_pass : str or Path, optional
        Model (bundled name or folder) segmenting the unannotated images; default ``base``.
    base : str or Path, optional
        Model to fine-tune.
    augmenter, data_description, command, progress, log, detector_options
        Passed on to :func:`.detector.train_detector`.
    style_should_stop : callable, optional
        The style stage's stop question (:func:`synthesise_styles`' ``should_stop``).

    Returns
    -------
    StyledTraining
    """
    from dataclasses import replace

    from .augment import Augmenter
    from .detector import train_detector

    log = log or (lambda message: None)
    description = list(data_description or [])
    report = None
    if style is not None:
        style.check()
        first_pass = first_pass if first_pass is not None else base
        try:
            model = models.load(first_pass) if first_pass is not None else None
        except InputError as error:
            raise InputError(f"first-pass model: {error}", "first_pass") from None
        report = synthesise_styles(train, unlabeled, Path(out_dir) / STYLES_DIR, n_channels=n_channels,
                                   settings=style, first_pass=model, progress=progress, log=log,
                                   should_stop=style_should_stop)
        description += report.describe()
        settings = replace(settings, extra_share=style.share)
    else:
        settings = replace(settings, extra_share=0.0)
        if unlabeled:
            log(f"{len(unlabeled)} unannotated images ignored (no style augmentation)")
    detector = train_detector(
        train, val, out_dir, n_channels=n_channels, settings=settings, base=base,
        augmenter=augmenter if augmenter is not None else Augmenter(),
        extra=report.synthetic if report else (), data_description=description, command=command,
        progress=progress, log=log, **detector_options,
    )
    return StyledTraining(detector=detector, styles=report)
