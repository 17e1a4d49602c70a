"""
StyleAugmentTrain
=================

**StyleAugmentTrain** trains a star-convex nucleus detector (the kind of model **RunStarConvex**
runs) on the image sets of a pipeline run, optionally with the style-transfer augmentation of
nucleAIzer (Hollandi et al., Cell Systems 2020).

Every image set contributes its image and, where given, its ground-truth objects; image sets with
0 objects are *unannotated* and, with style augmentation, show the module what your images look
like. Each image set is staged in the model folder, and the network is trained **once, at the end
of the run**, into a model folder that **RunStarConvex** loads as a *custom model folder*.

*Style augmentation:* the unannotated images are clustered by style; per style, a mask-to-image
generator (pix2pix) learns from the style's annotated images and a first-pass segmentation of its
unannotated ones, and renders synthetic masks shaped like the style's nuclei; the synthetic pairs
make up a share (10-50 %) of every minibatch. Generators, synthetic pairs and one PNG per style of
real against synthetic samples stay under ``styles/`` in the model folder.

*What is written* (in *output folder*/*model name*): the model in StarDist's layout
(``config.json``, ``weights_best.h5``, ``thresholds.json`` tuned on the validation images),
``nucleai.json``, ``MODEL.md`` (data, settings, validation scores), the loss curve, ``styles/`` and
``training_data/`` (the staged image sets, emptied at each run's start). Running again with the
same folder *continues* an unfinished training of the same settings and image sets; a folder
holding a model this module did not train, or another run, is refused. Blank image sets are left
out. Run the whole image list in one run (not in batches).

*While training* (at the end of the run), the module's window (the eye) shows the stage, the
epoch, the training loss and the time left, and the log says the same every
30 seconds. **Stop Analysis** stops training within seconds (while a style's generator trains, at
its next report): once an epoch has ended, the model is finished from the best epoch so far
(thresholds tuned, ``MODEL.md`` saying it was stopped) and running again with the same settings
continues it; stopped before, nothing of the model is kept. CellProfiler waits for this before it
ends the run, so the window answers again once the model is finished.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:** *StyleAugmentTrain_Annotated:* 1 when the image set was staged as
annotated (training or validation data), 0 when as unannotated style input.
*StyleAugmentTrain_Blank:* 1 when the image is blank (no contrast) and was left out of training,
with a warning naming the image set; else 0.

*When training fails* at the end of a run (no image set with objects, too few, ...), the module
says why, naming the setting; the other modules still write their outputs (spreadsheets), and a
headless run exits with status 1.

References
^^^^^^^^^^

-  Hollandi R, et al. (2020) "nucleAIzer: a parameter-free deep learning framework for nucleus
   segmentation using image style transfer." Cell Systems 10(5), 453-458.
-  Schmidt U, Weigert M, Broaddus C, Myers G (2018) "Cell Detection with Star-Convex Polygons."
   MICCAI 2018.
-  Isola P, Zhu J-Y, Zhou T, Efros AA (2017) "Image-to-image translation with conditional
   adversarial networks." CVPR 2017.
"""
import logging
import math
import re
import time
from pathlib import Path

from cellprofiler_core.constants.measurement import COLTYPE_INTEGER, EXPERIMENT, IMAGE
from cellprofiler_core.constants.pipeline import EXIT_STATUS
from cellprofiler_core.module import Module
from cellprofiler_core.pipeline import EndRun
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME, DEFAULT_OUTPUT_FOLDER_NAME, get_headless
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.subscriber import ImageSubscriber, LabelSubscriber
from cellprofiler_core.setting.text import Directory, Float, Integer, Text

from nucleai import models
from nucleai.errors import InputError
from nucleai.train import staging
from nucleai.train.options import TrainOptions

from _batch_paths import BatchPathsMixin
from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM
from _options import options_from_settings, typed_number, validate_before_run

LOGGER = logging.getLogger(__name__)

CATEGORY = "StyleAugmentTrain"
FTR_ANNOTATED = "Annotated"
M_ANNOTATED = f"{CATEGORY}_{FTR_ANNOTATED}"
FTR_BLANK = "Blank"
M_BLANK = f"{CATEGORY}_{FTR_BLANK}"

CHANNELS_AUTO = "Automatic"
CHANNELS_GREY = "1 (grey)"
CHANNELS_COLOUR = "3 (colour)"
CHANNELS = {CHANNELS_AUTO: None, CHANNELS_GREY: 1, CHANNELS_COLOUR: 3}

#: TrainOptions fields set by the number setting of the same name.
NUMBER_FIELDS = ("steps_per_epoch", "epochs", "minutes", "patch_size", "batch_size", "val_fraction", "seed",
                 "invert_prob", "n_styles", "min_per_style", "pairs_per_style", "generator_minutes",
                 "generator_size")

BASE_NONE = "None"
FIRST_PASS_BASE = "Use the base model"

#: Staging folder inside the model folder (format: :mod:`nucleai.train.staging`).
STAGING_DIR = "training_data"
#: Seconds between training progress lines in the log, and between redraws of the window.
LOG_EVERY_S = 30
SHOW_EVERY_S = 2
#: Characters per line of a path or message in the module's tables (longer ones are wrapped).
WRAP = 44


def _bundled_choices(pipeline=None):
    return models.bundled_models() or [models.DEFAULT_MODEL]


class StyleAugmentTrain(BatchPathsMixin, Module):
    module_name = "StyleAugmentTrain"
    category = "Advanced"
    variable_revision_number = 1

    def create_settings(self):
        self.image_name = ImageSubscriber("Select the input image", "None", doc="""\
The image to train on, typically a nuclear stain or any image whose nuclei the model should find
(brightfield, histology). Grey and colour images can be mixed; see *Network input channels*.""")
        self.truth_objects = LabelSubscriber("Select the ground-truth objects", "None", doc="""\
The annotated nuclei of each image set (e.g. label images loaded as objects by **NamesAndTypes**),
of the image's size. An image set with 0 objects is *unannotated*: style input when style
augmentation is on, ignored otherwise.""")
        self.output_folder = Directory(
            "Output folder", value=Directory.static_join_string(DEFAULT_OUTPUT_FOLDER_NAME, ""),
            allow_metadata=False, doc="The folder in which the model folder (named below) is created.")
        self.model_name = Text("Model name", "my_nuclei", doc="""\
The model folder written inside the output folder (one folder name, no path); load it in
**RunStarConvex** as a *custom model folder*. The same name again continues an unfinished training
of the same settings and image sets; a folder holding a model this module did not train, or
another training run, is refused (saying what differs): choose a new name to start afresh.""")
        self.channels = Choice("Network input channels", list(CHANNELS), value=CHANNELS_AUTO, doc=f"""\
Channels the network takes; grey images are repeated to three channels, colour averaged to one.
*{CHANNELS_AUTO}:* a continued model keeps its channels; otherwise 3 when any image has colour,
else the base model's, else 1. *{CHANNELS_GREY}:* fluorescence. *{CHANNELS_COLOUR}:* brightfield,
histology or a mix (a grey base model is widened to colour input).""")
        self.base_source = Choice("Base model to fine-tune", [BASE_NONE, MODEL_BUNDLED, MODEL_CUSTOM],
                                  value=BASE_NONE, doc=f"""\
Training usually goes faster and ends better from an existing model. *{BASE_NONE}:* a new network
from random weights; *{MODEL_BUNDLED}:* a model shipped with the plugins; *{MODEL_CUSTOM}:* a model
folder of your own (StarDist's layout). A fine-tuned model keeps its base's rays, grid, channels.""")
        self.base_bundled = Choice(
            "Bundled base model", _bundled_choices(), value=models.DEFAULT_MODEL, choices_fn=_bundled_choices,
            doc=f"*(Used only when fine-tuning a bundled model)* The folders of the plugins' ``models/`` "
            f"folder (or of the folder named by ``{models.MODELS_DIR_ENV}``).")
        self.base_folder = Directory("Base model folder", value=f"{ABSOLUTE_FOLDER_NAME}|", allow_metadata=False,
                                     doc="*(Used only when fine-tuning a custom model folder)* A StarDist-type "
                                     "model folder: ``config.json`` and ``weights_best.h5`` or ``weights_last.h5``.")
        self.steps_per_epoch = Integer("Steps per epoch", 100, minval=1, doc="""\
Minibatches per epoch. After every epoch the validation loss is computed, the best weights kept,
and training stops early when the validation loss no longer improves.""")
        self.epochs = Integer("Maximum epochs", 100, minval=1,
                              doc="The largest number of epochs trained (counted over continued runs).")
        self.minutes = Float("Time budget (minutes, 0 for none)", 0.0, minval=0.0, doc="""\
Wall-clock budget of the detector's training in this run (the generators have their own). No
epoch starts that would end after it; run the pipeline again to continue.""")
        self.patch_size = Integer("Patch size (pixels)", 256, minval=16, doc="""\
Side of the square training patches: a multiple of 16 for a new network, of the base model's
``div_by`` when fine-tuning. Smaller images are padded.""")
        self.batch_size = Integer("Batch size", 4, minval=1, doc="Patches per minibatch (optimiser step).")
        self.val_fraction = Float("Validation fraction", 0.15, minval=0.01, maxval=0.99, doc="""\
Share of the annotated image sets held out for validation (at random, seeded; at least one, never
all). They choose the best weights, tune the thresholds and give the scores in ``MODEL.md``.""")
        self.seed = Integer("Random seed", 0, minval=0,
                            doc="Seeds the validation split, the patches, the augmentation and the styles.")
        self.invert_prob = Float("Invert probability", 0.0, minval=0.0, maxval=1.0, doc="""\
Probability of inverting a training patch's contrast: 0 when all images share one contrast; e.g.
0.3 for a model meant for dark nuclei on bright backgrounds too.""")
        self.use_style = Binary("Use style augmentation?", True, doc="""\
*Yes:* learn the styles of the unannotated image sets and train on synthetic annotated images in
those styles too (see the module help); needs unannotated image sets and a first-pass model.
*No:* train on the annotated image sets alone.""")
        style = "*(Used only with style augmentation)* "
        self.n_styles = Integer("Number of styles (0 for automatic)", 0, minval=0, doc=style + """\
Style clusters of the unannotated images; 0 chooses (more clusters than visible kinds; the small
ones are dropped, as in nucleAIzer).""")
        self.min_per_style = Integer("Minimum images per style", 3, minval=1, doc=style
                                     + "Style clusters with fewer unannotated images are dropped.")
        self.pairs_per_style = Integer("Synthetic pairs per style", 20, minval=1, doc=style
                                       + "Synthetic annotated images rendered per style (nucleAIzer: 20).")
        self.share_percent = Integer("Synthetic share of each minibatch (%)", 30, minval=10, maxval=50,
                                     doc=style + "Mean share of synthetic images per minibatch, 10 to 50 %.")
        self.generator_minutes = Float("Generator time budget per style (minutes)", 10.0, minval=0.001,
                                       doc=style + "Training time of each style's mask-to-image generator.")
        self.generator_size = Integer("Generator crop size (pixels)", 256, minval=16, doc=style + """\
Side of the square crops the generators train on: even; a power of two (64, 128, 256) suits the
generator's network best.""")
        self.first_pass_source = Choice(
            "First-pass model for unannotated images", [FIRST_PASS_BASE, MODEL_BUNDLED, MODEL_CUSTOM],
            value=FIRST_PASS_BASE, doc=style + f"""\
Segments the unannotated images, so that each style's generator learns from (mask, image) pairs.
*{FIRST_PASS_BASE}:* the base model (so one must be chosen); *{MODEL_BUNDLED}*, *{MODEL_CUSTOM}:*
another model. A grey model gets images with dark nuclei on a bright background inverted.""")
        self.first_pass_bundled = Choice(
            "Bundled first-pass model", _bundled_choices(), value=models.DEFAULT_MODEL,
            choices_fn=_bundled_choices, doc="*(Used only for a bundled first-pass model)*")
        self.first_pass_folder = Directory("First-pass model folder", value=f"{ABSOLUTE_FOLDER_NAME}|",
                                           allow_metadata=False, doc="*(Used only for a custom first-pass "
                                           "model)* A StarDist-type model folder.")

    def settings(self):
        return [
            self.image_name, self.truth_objects, self.output_folder, self.model_name, self.channels,
            self.base_source, self.base_bundled, self.base_folder, self.steps_per_epoch, self.epochs,
            self.minutes, self.patch_size, self.batch_size, self.val_fraction, self.seed, self.invert_prob,
            self.use_style, self.n_styles, self.min_per_style, self.pairs_per_style, self.share_percent,
            self.generator_minutes, self.generator_size, self.first_pass_source, self.first_pass_bundled,
            self.first_pass_folder,
        ]

    def visible_settings(self):
        result = [self.image_name, self.truth_objects, self.output_folder, self.model_name, self.channels,
                  self.base_source]
        if self.base_source != BASE_NONE:
            result.append(self._base_setting())
        result += [self.steps_per_epoch, self.epochs, self.minutes, self.patch_size, self.batch_size,
                   self.val_fraction, self.seed, self.invert_prob, self.use_style]
        if self.use_style:
            result += [self.n_styles, self.min_per_style, self.pairs_per_style, self.share_percent,
                       self.generator_minutes, self.generator_size, self.first_pass_source]
            if self.first_pass_source != FIRST_PASS_BASE:
                result.append(self._first_pass_setting())
        return result

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 1 is the first; later revisions add their conversions here, in order.
        return setting_values, variable_revision_number

    def volumetric(self):
        return False

    # ----------------------------------------------------------------------------------------
    # settings -> the backend's arguments, and its errors -> settings

    def model_dir(self):
        """The model folder: output folder / model name (InputError ``model_name`` for a name
        that is not one folder name)."""
        from nucleai.train.run import model_folder

        return model_folder(self.output_folder.get_absolute_path(), self.model_name.value)

    def staging_dir(self):
        return self.model_dir() / STAGING_DIR

    def _base_setting(self):
        return self.base_bundled if self.base_source == MODEL_BUNDLED else self.base_folder

    def _first_pass_setting(self):
        if self.first_pass_source == FIRST_PASS_BASE:
            return self.first_pass_source
        return self.first_pass_bundled if self.first_pass_source == MODEL_BUNDLED else self.first_pass_folder

    def _fields(self):
        """Backend error field -> the setting that sets it."""
        return {**{name: getattr(self, name) for name in NUMBER_FIELDS}, "channels": self.channels,
                "image": self.image_name, "labels": self.truth_objects, "out": self.model_name,
                "model_name": self.model_name, "resume": self.model_name,
                "style": self.use_style, "synthetic_share": self.share_percent, "base": self._base_setting(),
                "first_pass": self._first_pass_setting()}

    @staticmethod
    def _chosen_model(source, bundled, folder, field):
        """The model folder a (source, bundled name, folder) trio names, or None."""
        if source == MODEL_BUNDLED:
            try:
                return models.bundled_model_dir(bundled.value)
            except InputError as error:
                raise InputError(str(error), field) from None
        if source == MODEL_CUSTOM:
            if not folder.custom_path.strip():
                raise InputError("no model folder chosen", field)
            return Path(folder.get_absolute_path())
        return None

    def _inputs(self):
        """(TrainOptions, base model folder or None, first-pass model folder or None)."""
        typed = {name: typed_number(getattr(self, name)) for name in NUMBER_FIELDS}
        for name in ("minutes", "n_styles"):  # 0: none / automatic
            typed[name] = None if typed[name] == 0 else typed[name]
        share = typed_number(self.share_percent)
        options = TrainOptions(
            **typed, channels=CHANNELS[self.channels.value], style=bool(self.use_style.value),
            synthetic_share=share / 100 if isinstance(share, (int, float)) else share,
        )
        base = self._chosen_model(self.base_source, self.base_bundled, self.base_folder, "base")
        first_pass = None
        if options.style:
            first_pass = self._chosen_model(self.first_pass_source, self.first_pass_bundled,
                                            self.first_pass_folder, "first_pass")
        return options, base, first_pass

    def _error(self, error):
        """An InputError naming this module and the setting of the field at fault."""
        setting = self._fields().get(error.field, self.image_name)
        hint = " (a new model name starts afresh)" if error.field == "resume" else ""
        return InputError(f"{self.module_name}: {error}{hint} (setting '{setting.text}')", error.field)

    def _runtime(self, call):
        """``call()``, with an InputError re-raised by :meth:`_error`."""
        try:
            return call()
        except InputError as error:
            raise self._error(error) from None

    def validate_module(self, pipeline):
        """Check the settings, folders and models (files only, no TensorFlow) before anything runs."""
        from nucleai.train.run import check_setup

        if self.output_folder.dir_choice == ABSOLUTE_FOLDER_NAME and not self.output_folder.custom_path.strip():
            raise ValidationError("choose the folder to write the model folder in", self.output_folder)

        def check():
            options, base, first_pass = self._inputs()
            check_setup(options, self.model_dir(), base=base, first_pass=first_pass)

        options_from_settings(check, self._fields(), self.image_name)

    # ----------------------------------------------------------------------------------------
    # run: stage every image set; post_run: train once

    def prepare_run(self, workspace):
        """Validate (a headless run calls no validate_module), check that the run has image sets
        enough, then empty the staging folder of an earlier run (only a folder this module made)."""
        from nucleai.train.run import check_image_count

        if not validate_before_run(self, workspace.pipeline):
            return False

        def check_and_clear():
            check_image_count(self._inputs()[0], len(workspace.measurements.get_image_numbers()))
            staging.clear_staging(self.staging_dir())

        try:
            self._runtime(check_and_clear)
        except InputError as error:
            LOGGER.error(str(error))  # headless CellProfiler shows no prepare-run error itself
            workspace.pipeline.report_prepare_run_error(self, str(error))
            return False
        return True

    def run(self, workspace):
        image = workspace.image_set.get_image(self.image_name.value)
        if image.volumetric:
            raise self._error(InputError(f"'{self.image_name.value}' is a 3-D image; 2-D images only", "image"))
        objects = workspace.object_set.get_objects(self.truth_objects.value)
        labels = objects.segmented if objects.count > 0 else None
        m = workspace.measurements
        feature = f"FileName_{self.image_name.value}"
        file_name = m.get_current_image_measurement(feature) if m.has_feature(IMAGE, feature) else None
        name = staging.staged_name(m.image_set_number, file_name)
        path = self._runtime(lambda: staging.stage_image_set(self.staging_dir(), name, image.pixel_data, labels))
        if path is None:
            LOGGER.warning(f"{self.module_name}: image set {m.image_set_number} ({file_name or name}): "
                           f"'{self.image_name.value}' is blank (no contrast); left out of training")
        m.add_image_measurement(M_ANNOTATED, int(labels is not None))
        m.add_image_measurement(M_BLANK, int(path is None))
        if self.show_window:
            workspace.display_data.image = image.pixel_data
            workspace.display_data.labels = labels
            staged_as = "annotated" if labels is not None else "unannotated"
            workspace.display_data.statistics = [
                ("Staged as", staged_as if path is not None else "left out (blank image)"),
                ("Objects", str(int(labels.max()) if labels is not None else 0)),
                # inside the output folder: the folder's own path is in the settings
                ("File", "not staged" if path is None else str(Path(path).relative_to(self.model_dir().parent))),
            ]

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 1))
        title = f"{self.image_name.value}, cycle #{workspace.measurements.image_number}"
        cplabels = [] if data.labels is None else [dict(name=self.truth_objects.value, labels=[data.labels])]
        if data.image.ndim == 3:
            figure.subplot_imshow_color(0, 0, data.image, title, normalize=True, cplabels=cplabels)
        else:
            figure.subplot_imshow_grayscale(0, 0, data.image, title, cplabels=cplabels)
        _table(figure, 1, 0, data.statistics)

    def post_run(self, workspace):
        """Train once on the staged image sets (:func:`nucleai.train.run.run_staged_training`),
        showing progress (:class:`_TrainingView`) and stopping when the GUI's analysis is
        cancelled (:func:`_stop_requested`)."""
        from nucleai.train.loop import TrainingStopped
        from nucleai.train.run import run_staged_training

        view = _TrainingView(self, workspace)

        def train():
            options, base, first_pass = self._inputs()
            description = [f"CellProfiler module {self.module_name}: image '{self.image_name.value}', "
                           f"ground-truth objects '{self.truth_objects.value}'; image sets staged in "
                           f"{self.staging_dir()}"]
            return run_staged_training(self.staging_dir(), self.model_dir(), options, base=base,
                                       first_pass=first_pass, data_description=description, log=view.log,
                                       should_stop=_stop_requested(workspace), on_progress=view.on_progress)

        try:
            summary = self._runtime(train).summary()
        except TrainingStopped:  # the backend has said so in the log, and removed what it wrote
            workspace.display_data.summary = [("Model folder", str(self.model_dir())),
                                              ("Training", "stopped before its first epoch ended: no model was kept")]
            return
        except Exception as error:
            if not get_headless():
                workspace.display_data.summary = [("Training failed", str(error))]
                raise  # the GUI shows it
            # headless CellProfiler 4.2.8 would skip the later modules' post_run (no spreadsheets)
            # and still exit 0: say why, let them run, and fail the run at its end
            LOGGER.error(str(error), exc_info=not isinstance(error, InputError))
            _fail_run_at_end(workspace)
            return
        for name, value in summary:
            LOGGER.info(f"{self.module_name}: {name}: {value}")
        workspace.display_data.summary = summary

    def display_post_run(self, workspace, figure):
        """The training's state (while it runs) or summary, alone in the window.

        The window still shows the last image set: CellProfiler 4.2.8 redraws a figure's canvas
        after ``display`` but not after ``display_post_run``, so the canvas is redrawn here, or
        the table would sit on the old picture.
        """
        summary = getattr(workspace.display_data, "summary", None)
        if summary:
            figure.set_subplots((1, 1))
            _table(figure, 0, 0, summary)
            figure.figure.canvas.draw_idle()

    # ----------------------------------------------------------------------------------------
    # measurement declarations

    def get_measurement_columns(self, pipeline):
        return [(IMAGE, M_ANNOTATED, COLTYPE_INTEGER), (IMAGE, M_BLANK, COLTYPE_INTEGER)]

    def get_categories(self, pipeline, object_name):
        return [CATEGORY] if object_name == IMAGE else []

    def get_measurements(self, pipeline, object_name, category):
        return [FTR_ANNOTATED, FTR_BLANK] if object_name == IMAGE and category == CATEGORY else []


def _wrapped(text, width=WRAP):
    """``text`` in lines of at most ``width`` characters, broken after a space or a path
    separator where it can be (a table cell wider than the window is cut off)."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[ /\\])", str(text)):
        while len(piece) > width:
            if line:
                lines.append(line.rstrip())
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line:
        lines.append(line.rstrip())
    return "\n".join(lines)


def _table(figure, x, y, rows):
    """(name, value) ``rows`` as a one-column table with row labels, values wrapped."""
    figure.subplot_table(x, y, [[_wrapped(value)] for _, value in rows], row_labels=[name for name, _ in rows])


def _stop_requested(workspace):
    """``should_stop`` for the training backend: whether the GUI's analysis was cancelled.

    In the GUI, CellProfiler 4.2.8 runs ``post_run`` on its analysis runner's interface thread
    (``cellprofiler_core.analysis._runner.Runner.interface``); Stop Analysis calls
    ``Runner.cancel()``, which sets ``runner.cancelled`` and then waits for that thread, so the
    GUI hangs until ``post_run`` returns. The workspace ``post_run`` gets has no cancel handle
    (its ``cancel_handler`` is None), but its ``post_run_display_handler`` is the runner's own
    bound method, so the runner is that method's ``__self__``. Headless runs (``pipeline.run``)
    have no runner: None, never stopped (Ctrl-C stops a headless training, resumably).
    """
    from cellprofiler_core.analysis._runner import Runner

    runner = getattr(workspace.post_run_display_handler, "__self__", None)
    if not isinstance(runner, Runner):
        return None
    return lambda: bool(runner.cancelled)


def _duration(seconds):
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60:02d} min"


class _TrainingView:
    """What ``post_run`` shows while it trains: the backend's last message and the detector's
    epoch, loss and time left, in the log (progress every :data:`LOG_EVERY_S`) and, in the GUI
    with the module's window open, in that window (at most every :data:`SHOW_EVERY_S`).

    The window is drawn through CellProfiler's post-run display request, which the analysis
    thread may send at any time (``workspace.post_run_display``: an event the GUI thread handles
    by calling :meth:`StyleAugmentTrain.display_post_run`); headless there is none.
    """

    def __init__(self, module, workspace):
        self.module = module
        self.workspace = workspace
        self.message = None
        self.progress = None
        self.last_log = self.last_shown = -math.inf

    def log(self, message):
        LOGGER.info(f"{self.module.module_name}: {message}")
        self.message = message
        self.show(self.rows())

    def on_progress(self, progress):
        self.progress = progress
        now = time.monotonic()
        if now - self.last_log >= LOG_EVERY_S:
            self.last_log = now
            LOGGER.info(f"{self.module.module_name}: epoch {progress.epoch}/{progress.epochs}, step "
                        f"{progress.step}/{progress.steps}, training loss {progress.loss:.4f}, "
                        f"{_duration(progress.seconds_left)} left")
        if now - self.last_shown >= SHOW_EVERY_S:
            self.show(self.rows())

    def rows(self):
        rows = [("Model folder", str(self.module.model_dir()))]
        p = self.progress
        if p is not None:
            rows += [("Training", f"epoch {p.epoch} of {p.epochs}, step {p.step} of {p.steps}"),
                     ("Training loss", f"{p.loss:.4f}"),
                     ("Time left", f"{_duration(p.seconds_left)} (less if it stops early)")]
        if self.message:
            rows.append(("Last message", self.message))
        return rows + [("To stop", "Stop Analysis (the best epoch so far is kept)")]

    def show(self, rows):
        """Show ``rows`` in the module's window, where there is one."""
        if self.module.show_window and self.workspace.post_run_display_handler is not None:
            self.last_shown = time.monotonic()
            self.workspace.display_data.summary = rows
            self.workspace.post_run_display(self.module)


def _fail_run_at_end(workspace):
    """Make this headless run end as failed once every module's post_run has run.

    CellProfiler records the run's exit status after post_run and exits 1 only when there is
    none, so the status is removed when the run ends (its EndRun event).
    """
    pipeline, measurements = workspace.pipeline, workspace.measurements

    def on_event(caller, event):
        if isinstance(event, EndRun):
            pipeline.remove_listener(on_event)
            if measurements.has_feature(EXPERIMENT, EXIT_STATUS):
                measurements.remove_measurement(EXPERIMENT, EXIT_STATUS)

    pipeline.add_listener(on_event)
