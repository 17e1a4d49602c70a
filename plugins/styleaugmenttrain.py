"""
StyleAugmentTrain
=================

**StyleAugmentTrain** trains a star-convex nucleus detector (the kind of model **RunStarConvex**
runs) on the image sets of a pipeline run, optionally with the style-transfer augmentation of
nucleAIzer (Hollandi et al., Cell Systems 2020).

Every image set contributes its image and, where given, its ground-truth objects (for example
label images loaded as objects by **NamesAndTypes**, or objects edited by hand). Image sets whose
ground-truth objects are empty (0 objects) are *unannotated*: with style augmentation they show
the module what your images look like. Nothing is kept in memory: each image set is written to a
staging folder inside the model folder, and the network is trained **once, at the end of the
run**. The result is a model folder that **RunStarConvex** loads as a *custom model folder*.

Style augmentation
^^^^^^^^^^^^^^^^^^
When your kind of image has few annotations, nucleAIzer learns its look from unannotated images
and renders synthetic annotated images in that look:

#. the unannotated images are clustered by style (image appearance); clusters with fewer than the
   *minimum images per style* are dropped;
#. per style, a mask-to-image generator (pix2pix) is trained on pairs of an image and its
   nucleus masks: the ground truth of annotated images of that style, and a first-pass
   segmentation of the unannotated ones by an existing model;
#. the generator renders synthetic images from synthetic masks shaped like the style's nuclei;
#. the detector is trained with the synthetic pairs making up a share (10-50 %) of every
   minibatch.

The generators, the synthetic pairs and one PNG per style comparing real with synthetic samples
stay in the model folder under ``styles/``, so you can judge them.

What is written
^^^^^^^^^^^^^^^
The model folder (*output folder*/*model name*) holds the model in StarDist's layout
(``config.json``, ``weights_best.h5``, ``thresholds.json`` tuned on the validation images),
``nucleai.json``, ``MODEL.md`` (a model card: data, settings, validation scores), the loss curve,
``styles/``, and ``training_data/`` with the staged images (``images/`` and ``labels/`` for the
annotated image sets, ``unlabeled/`` for the others; file names are the image number plus the
image's file name). The staging folder is emptied at the start of each run.

Running the pipeline again with the same model folder *continues* the training where it stopped
(useful with a time budget); a finished training does nothing more. To train a new model, choose
a new model name. A folder holding a model that this module did not train is refused.

Run the whole image list in one run (not split into batches with **CreateBatchFiles**): the
training at the end sees only the image sets of its own run.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:**

-  *StyleAugmentTrain_Annotated:* 1 when the image set was staged as annotated (training or
   validation data), 0 when as unannotated style input.

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
import os
import re
import shutil
from pathlib import Path

import numpy
from cellprofiler_core.constants.measurement import COLTYPE_INTEGER, IMAGE
from cellprofiler_core.module import Module
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME, DEFAULT_OUTPUT_FOLDER_NAME
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.subscriber import ImageSubscriber, LabelSubscriber
from cellprofiler_core.setting.text import Directory, Float, Integer, Text

from nucleai import models
from nucleai.errors import InputError
from nucleai.train.detector import holds_foreign_model, input_channels

from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM

LOGGER = logging.getLogger(__name__)

CATEGORY = "StyleAugmentTrain"
FTR_ANNOTATED = "Annotated"
M_ANNOTATED = f"{CATEGORY}_{FTR_ANNOTATED}"

CHANNELS_AUTO = "Automatic"
CHANNELS_GREY = "1 (grey)"
CHANNELS_COLOUR = "3 (colour)"

BASE_NONE = "None"
FIRST_PASS_BASE = "Use the base model"

#: Staging folder inside the model folder and its sub-folders.
STAGING_DIR = "training_data"
IMAGES_DIR = "images"
LABELS_DIR = "labels"
UNLABELED_DIR = "unlabeled"
#: Marks a staging folder as this module's, so that only such a folder is ever emptied.
STAGING_MARKER = "STAGED_BY_StyleAugmentTrain.txt"
#: Digits of the image number that starts every staged file name.
NUMBER_DIGITS = 5


def _bundled_choices(pipeline=None):
    return models.bundled_models() or [models.DEFAULT_MODEL]


def _stem(text):
    """A file stem safe on every file system (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")


def staged_name(image_number, file_name=None):
    """The staged file stem of an image set: zero-padded image number, then the file's stem."""
    name = f"{int(image_number):0{NUMBER_DIGITS}d}"
    stem = _stem(Path(file_name).stem) if file_name else ""
    return f"{name}_{stem}" if stem else name


def faithful_pixels(image):
    """The pixels of a CellProfiler image as stored: integers when the image came from an 8- or
    16-bit file (CellProfiler divides by the file's range), else float32."""
    pixels = numpy.asarray(image.pixel_data)
    if pixels.dtype == bool:
        return pixels.astype(numpy.uint8)
    scale = getattr(image, "scale", None)
    for dtype in (numpy.uint8, numpy.uint16):
        if scale is not None and float(scale) == float(numpy.iinfo(dtype).max):
            values = numpy.round(pixels.astype(numpy.float64) * scale)
            if values.min() >= 0 and values.max() <= scale and numpy.allclose(
                values / scale, pixels, rtol=0, atol=0.25 / scale
            ):
                return values.astype(dtype)
    return pixels.astype(numpy.float32)


def _write_atomic(path, write):
    """``write(tmp_path)`` then rename to ``path``: an interrupted run leaves no half file (the
    temporary name starts with '.', so the readers skip it)."""
    tmp = path.with_name(f".{os.getpid()}-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def _number(text):
    """A setting's text as a number (NaN when it is none)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


class StyleAugmentTrain(Module):
    module_name = "StyleAugmentTrain"
    category = "Advanced"
    variable_revision_number = 1

    def create_settings(self):
        self.image_name = ImageSubscriber(
            "Select the input image",
            "None",
            doc="""\
Select the image to train on, typically a nuclear stain (DNA, DAPI, Hoechst) or any image whose
nuclei the model should find (brightfield, histology). Grey and colour images can be mixed; see
*Network input channels*.""",
        )
        self.truth_objects = LabelSubscriber(
            "Select the ground-truth objects",
            "None",
            doc="""\
The annotated nuclei of each image set, for example label images loaded as objects by
**NamesAndTypes**. They must have the image's size. An image set whose objects are empty
(0 objects) is *unannotated*: it is used as style input when style augmentation is on, and
ignored otherwise.""",
        )
        self.output_folder = Directory(
            "Output folder",
            value=Directory.static_join_string(DEFAULT_OUTPUT_FOLDER_NAME, ""),
            allow_metadata=False,
            doc="""\
The folder in which the model folder (named below) is created.""",
        )
        self.model_name = Text(
            "Model name",
            "my_nuclei",
            doc="""\
The name of the model folder written inside the output folder. Load it in **RunStarConvex** as a
*custom model folder*. Running again with the same name continues an unfinished training; a
folder holding a model this module did not train is refused.""",
        )
        self.channels = Choice(
            "Network input channels",
            [CHANNELS_AUTO, CHANNELS_GREY, CHANNELS_COLOUR],
            value=CHANNELS_AUTO,
            doc=f"""\
The number of channels the network takes. Images are converted: grey images are repeated to
three channels, colour images averaged to one.

-  *{CHANNELS_AUTO}:* a model whose training is continued keeps its channels; otherwise 3 when any
   image has colour (channels that differ), else the base model's, else 1.
-  *{CHANNELS_GREY}:* for fluorescence nuclei.
-  *{CHANNELS_COLOUR}:* for brightfield or histology, or a mix of kinds. A grey base model is
   widened to colour input.""",
        )
        self.base_source = Choice(
            "Base model to fine-tune",
            [BASE_NONE, MODEL_BUNDLED, MODEL_CUSTOM],
            value=BASE_NONE,
            doc=f"""\
Training usually goes faster and ends better when it starts from an existing model.

-  *{BASE_NONE}:* train a new network from random weights.
-  *{MODEL_BUNDLED}:* fine-tune a model that ships with the plugins.
-  *{MODEL_CUSTOM}:* fine-tune a model folder of your own (StarDist's layout).

A fine-tuned model keeps its base's architecture (rays, grid, channels).""",
        )
        self.base_bundled = Choice(
            "Bundled base model",
            _bundled_choices(),
            value=models.DEFAULT_MODEL,
            choices_fn=_bundled_choices,
            doc=f"""\
*(Used only when fine-tuning a bundled model)*

The bundled models are the folders in the plugins' ``models/`` folder (or in the folder named by
the environment variable ``{models.MODELS_DIR_ENV}``).""",
        )
        self.base_folder = Directory(
            "Base model folder",
            value=f"{ABSOLUTE_FOLDER_NAME}|",
            allow_metadata=False,
            doc="""\
*(Used only when fine-tuning a custom model folder)*

A StarDist-type model folder: ``config.json`` and ``weights_best.h5`` or ``weights_last.h5``.""",
        )
        self.steps_per_epoch = Integer(
            "Steps per epoch",
            100,
            minval=1,
            doc="""\
Minibatches per epoch. After every epoch the validation loss is computed, the best weights are
kept and training stops early when the validation loss no longer improves.""",
        )
        self.epochs = Integer(
            "Maximum epochs",
            100,
            minval=1,
            doc="The largest number of epochs trained (counted over continued runs).",
        )
        self.minutes = Float(
            "Time budget (minutes, 0 for none)",
            0.0,
            minval=0.0,
            doc="""\
The wall-clock budget of the detector's training in this run (the style generators have their
own budget). No epoch is started that would end after it. 0 means no budget. Run the pipeline
again to continue a training cut by its budget.""",
        )
        self.patch_size = Integer(
            "Patch size (pixels)",
            256,
            minval=16,
            doc="""\
The side of the square patches the network is trained on. It must be a multiple of 16 for the
default network (of the base model's ``div_by`` when fine-tuning). Smaller images are padded.""",
        )
        self.batch_size = Integer(
            "Batch size",
            4,
            minval=1,
            doc="Patches per minibatch (optimiser step).",
        )
        self.val_fraction = Float(
            "Validation fraction",
            0.15,
            minval=0.01,
            maxval=0.99,
            doc="""\
The share of the annotated image sets held out for validation (at random, seeded): at least one,
never all. They choose the best weights, tune the model's thresholds and give the validation
scores in ``MODEL.md``; they are never trained on.""",
        )
        self.seed = Integer(
            "Random seed",
            0,
            minval=0,
            doc="Seeds the validation split, the patches, the augmentation and the styles.",
        )
        self.invert_prob = Float(
            "Invert probability",
            0.0,
            minval=0.0,
            maxval=1.0,
            doc="""\
The probability of inverting a training patch's contrast. 0 when all your images share one
contrast; e.g. 0.3 for a model meant for dark nuclei on bright backgrounds too.""",
        )
        self.use_style = Binary(
            "Use style augmentation?",
            True,
            doc="""\
Select *Yes* to learn the styles of the unannotated image sets (those with 0 ground-truth
objects) and train on synthetic annotated images in those styles too (see the module help). It
needs unannotated image sets and a model for their first-pass segmentation. Select *No* to train
on the annotated image sets alone (unannotated ones are then ignored).""",
        )
        self.n_styles = Integer(
            "Number of styles (0 for automatic)",
            0,
            minval=0,
            doc="""\
*(Used only with style augmentation)*

The number of style clusters of the unannotated images. 0 chooses it from the images;
nucleAIzer makes more clusters than there are visible kinds and drops the small ones.""",
        )
        self.min_per_style = Integer(
            "Minimum images per style",
            3,
            minval=1,
            doc="""\
*(Used only with style augmentation)*

Style clusters with fewer unannotated images are dropped: too few to train a generator on.""",
        )
        self.pairs_per_style = Integer(
            "Synthetic pairs per style",
            20,
            minval=1,
            doc="""\
*(Used only with style augmentation)*

Synthetic annotated images rendered per style (nucleAIzer: 20).""",
        )
        self.share_percent = Integer(
            "Synthetic share of each minibatch (%)",
            30,
            minval=10,
            maxval=50,
            doc="""\
*(Used only with style augmentation)*

The mean share of synthetic images in every training minibatch, 10 to 50 percent (nucleAIzer's
range).""",
        )
        self.generator_minutes = Float(
            "Generator time budget per style (minutes)",
            10.0,
            minval=0.001,
            doc="""\
*(Used only with style augmentation)*

The wall-clock training time of each style's mask-to-image generator.""",
        )
        self.generator_size = Integer(
            "Generator crop size (pixels)",
            256,
            minval=16,
            doc="""\
*(Used only with style augmentation)*

The side of the square crops the generators are trained on (an even number; a power of two such as
64, 128 or 256 suits the generator's network best).""",
        )
        self.first_pass_source = Choice(
            "First-pass model for unannotated images",
            [FIRST_PASS_BASE, MODEL_BUNDLED, MODEL_CUSTOM],
            value=FIRST_PASS_BASE,
            doc=f"""\
*(Used only with style augmentation)*

The model that segments the unannotated images, so that each style's generator learns from
(mask, image) pairs of that style.

-  *{FIRST_PASS_BASE}:* the base model to fine-tune (so a base model must be chosen).
-  *{MODEL_BUNDLED}:* a model that ships with the plugins.
-  *{MODEL_CUSTOM}:* a model folder of your own.

A grey model gets images with dark nuclei on a bright background inverted.""",
        )
        self.first_pass_bundled = Choice(
            "Bundled first-pass model",
            _bundled_choices(),
            value=models.DEFAULT_MODEL,
            choices_fn=_bundled_choices,
            doc="*(Used only for a bundled first-pass model)* The bundled model segmenting the "
            "unannotated images.",
        )
        self.first_pass_folder = Directory(
            "First-pass model folder",
            value=f"{ABSOLUTE_FOLDER_NAME}|",
            allow_metadata=False,
            doc="*(Used only for a custom first-pass model)* A StarDist-type model folder "
            "segmenting the unannotated images.",
        )

    def settings(self):
        return [
            self.image_name,
            self.truth_objects,
            self.output_folder,
            self.model_name,
            self.channels,
            self.base_source,
            self.base_bundled,
            self.base_folder,
            self.steps_per_epoch,
            self.epochs,
            self.minutes,
            self.patch_size,
            self.batch_size,
            self.val_fraction,
            self.seed,
            self.invert_prob,
            self.use_style,
            self.n_styles,
            self.min_per_style,
            self.pairs_per_style,
            self.share_percent,
            self.generator_minutes,
            self.generator_size,
            self.first_pass_source,
            self.first_pass_bundled,
            self.first_pass_folder,
        ]

    def visible_settings(self):
        result = [self.image_name, self.truth_objects]
        result += [self.output_folder, self.model_name, self.channels, self.base_source]
        if self.base_source == MODEL_BUNDLED:
            result.append(self.base_bundled)
        elif self.base_source == MODEL_CUSTOM:
            result.append(self.base_folder)
        result += [
            self.steps_per_epoch, self.epochs, self.minutes, self.patch_size, self.batch_size,
            self.val_fraction, self.seed, self.invert_prob, self.use_style,
        ]
        if self.use_style:
            result += [
                self.n_styles, self.min_per_style, self.pairs_per_style, self.share_percent,
                self.generator_minutes, self.generator_size, self.first_pass_source,
            ]
            if self.first_pass_source == MODEL_BUNDLED:
                result.append(self.first_pass_bundled)
            elif self.first_pass_source == MODEL_CUSTOM:
                result.append(self.first_pass_folder)
        return result

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 1 is the first; later revisions add their conversions here, in order.
        return setting_values, variable_revision_number

    def volumetric(self):
        return False

    # ----------------------------------------------------------------------------------------
    # folders and models

    def model_dir(self):
        """The model folder: output folder / model name."""
        return Path(self.output_folder.get_absolute_path()) / self.model_name.value.strip()

    def staging_dir(self):
        return self.model_dir() / STAGING_DIR

    @staticmethod
    def _chosen_model(source, bundled, folder):
        """The model a (source, bundled name, folder) trio names: a folder path, or None."""
        if source == MODEL_BUNDLED:
            return models.bundled_model_dir(bundled.value)
        if source == MODEL_CUSTOM:
            if not folder.custom_path.strip():
                raise InputError("no model folder chosen")
            return Path(folder.get_absolute_path())
        return None

    def _base_setting(self):
        return self.base_bundled if self.base_source == MODEL_BUNDLED else self.base_folder

    def _first_pass_setting(self):
        if self.first_pass_source == MODEL_BUNDLED:
            return self.first_pass_bundled
        if self.first_pass_source == MODEL_CUSTOM:
            return self.first_pass_folder
        return self.first_pass_source

    def base_model(self):
        """The base model folder, or None to train a new network."""
        return self._chosen_model(self.base_source, self.base_bundled, self.base_folder)

    def first_pass_model(self):
        """The first-pass model folder, or None for the base model."""
        if self.first_pass_source == FIRST_PASS_BASE:
            return None
        return self._chosen_model(self.first_pass_source, self.first_pass_bundled, self.first_pass_folder)

    def _error(self, message, *settings):
        """An InputError naming this module and the settings involved."""
        names = " and ".join(f"'{setting.text}'" for setting in settings)
        return InputError(f"{self.module_name}: {message}" + (f" (setting {names})" if names else ""))

    # ----------------------------------------------------------------------------------------
    # validation

    def validate_module(self, pipeline):
        """Check the choices and the models (files only, no TensorFlow) before anything runs.

        Decisions: style augmentation needs a first-pass model for the unannotated
        images of every style (a style is a cluster of unannotated images, so every style has
        some): "use the base model" then needs a base model.
        """
        name = self.model_name.value.strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValidationError(
                "enter a folder name (without '/' or '\\') for the model", self.model_name
            )
        if self.output_folder.dir_choice == ABSOLUTE_FOLDER_NAME and not self.output_folder.custom_path.strip():
            raise ValidationError("choose the folder to write the model folder in", self.output_folder)
        checks = []
        if self.base_source != BASE_NONE:
            checks.append((self.base_model, self._base_setting()))
        if self.use_style and self.first_pass_source != FIRST_PASS_BASE:
            checks.append((self.first_pass_model, self._first_pass_setting()))
        for location, setting in checks:
            try:
                models.read_model_spec(location())
            except InputError as error:
                raise ValidationError(str(error), setting)
        if self.use_style:
            if self.first_pass_source == FIRST_PASS_BASE and self.base_source == BASE_NONE:
                raise ValidationError(
                    "style augmentation segments the unannotated images with a first-pass model: "
                    "choose a base model to fine-tune, or a first-pass model",
                    self.first_pass_source,
                )
            # the texts: a number setting's value stays at its last valid one when out of range
            if not 10 <= _number(self.share_percent.value_text) <= 50:
                raise ValidationError("the synthetic share must be 10 to 50 percent", self.share_percent)
            if not _number(self.generator_minutes.value_text) > 0:
                raise ValidationError("the generator needs a positive time budget", self.generator_minutes)
            try:
                self._generator_settings().check()
            except InputError as error:
                raise ValidationError(f"generator crop {error}", self.generator_size)
        if self.patch_size.value % 16:
            raise ValidationError(
                f"the patch size must be a multiple of 16, got {self.patch_size.value}", self.patch_size
            )
        if not 0 < self.val_fraction.value < 1:
            raise ValidationError("the validation fraction must be between 0 and 1", self.val_fraction)
        try:
            folder = self.model_dir()
        except Exception:  # an unresolvable folder is reported when the run starts
            return
        if holds_foreign_model(folder):
            raise ValidationError(
                f"{folder} already holds a model this module did not train; choose a new model name",
                self.model_name,
            )

    # ----------------------------------------------------------------------------------------
    # run: stage every image set

    def prepare_run(self, workspace):
        """Empty the staging folder of an earlier run (only a folder this module made)."""
        staging = self.staging_dir()
        if staging.exists():
            if not (staging / STAGING_MARKER).is_file():
                workspace.pipeline.report_prepare_run_error(
                    self,
                    f"{self.module_name}: {staging} exists but was not written by this module; "
                    f"choose a new model name (setting '{self.model_name.text}')",
                )
                return False
            shutil.rmtree(staging)
        return True

    def _make_staging(self):
        staging = self.staging_dir()
        for sub in (IMAGES_DIR, LABELS_DIR, UNLABELED_DIR):
            (staging / sub).mkdir(parents=True, exist_ok=True)
        marker = staging / STAGING_MARKER
        if not marker.is_file():
            marker.write_text(
                "Image sets staged by CellProfiler's StyleAugmentTrain for training; emptied at the "
                "start of each run.\n"
            )
        return staging

    def run(self, workspace):
        image = workspace.image_set.get_image(self.image_name.value)
        if image.volumetric:
            raise self._error(f"'{self.image_name.value}' is a 3-D image; 2-D images only", self.image_name)
        pixels = faithful_pixels(image)
        if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4))):
            raise self._error(
                f"image '{self.image_name.value}' has shape {pixels.shape}: grey or RGB(A) expected",
                self.image_name,
            )
        labels = None
        objects = workspace.object_set.get_objects(self.truth_objects.value)
        if objects.count > 0:
            labels = objects.segmented
            if labels.shape != pixels.shape[:2]:
                raise self._error(
                    f"objects '{self.truth_objects.value}' are {labels.shape[0]}x{labels.shape[1]} "
                    f"but image '{self.image_name.value}' is {pixels.shape[0]}x{pixels.shape[1]}",
                    self.truth_objects, self.image_name,
                )

        m = workspace.measurements
        feature = f"FileName_{self.image_name.value}"
        file_name = m.get_current_image_measurement(feature) if m.has_feature(IMAGE, feature) else None
        name = staged_name(m.image_set_number, file_name)
        try:
            staging = self._make_staging()
        except OSError as error:
            raise self._error(f"cannot write the staging folder: {error}", self.output_folder) from error
        import tifffile

        from nucleai.labelio import write_labels

        folder = staging / (IMAGES_DIR if labels is not None else UNLABELED_DIR)
        photometric = "rgb" if pixels.ndim == 3 and pixels.shape[2] in (3, 4) else "minisblack"
        _write_atomic(
            folder / f"{name}.tif",
            lambda path: tifffile.imwrite(path, pixels, photometric=photometric, compression="zlib"),
        )
        if labels is not None:
            _write_atomic(staging / LABELS_DIR / f"{name}.tif", lambda path: write_labels(path, labels))
        m.add_image_measurement(M_ANNOTATED, int(labels is not None))

        if self.show_window:
            workspace.display_data.image = image.pixel_data
            workspace.display_data.labels = labels
            workspace.display_data.statistics = [
                ("Staged as", "annotated" if labels is not None else "unannotated"),
                ("Objects", str(int(labels.max()) if labels is not None else 0)),
                ("File", str(folder / f"{name}.tif")),
            ]

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 1))
        title = f"{self.image_name.value}, cycle #{workspace.measurements.image_number}"
        colour = data.image.ndim == 3
        cplabels = [] if data.labels is None else [dict(name=self.truth_objects.value, labels=[data.labels])]
        if colour:
            figure.subplot_imshow_color(0, 0, data.image, title, normalize=True, cplabels=cplabels)
        else:
            figure.subplot_imshow_grayscale(0, 0, data.image, title, cplabels=cplabels)
        figure.subplot_table(
            1, 0, [[value] for _, value in data.statistics],
            row_labels=[name for name, _ in data.statistics],
        )

    # ----------------------------------------------------------------------------------------
    # post_run: train once

    def _channels(self, samples, base):
        """The network's input channels (see the setting's help)."""
        if self.channels == CHANNELS_GREY:
            return 1
        if self.channels == CHANNELS_COLOUR:
            return 3
        return input_channels(self.model_dir(), samples, base)

    def _train_settings(self):
        from nucleai.train.loop import TrainSettings

        p = self.patch_size.value
        settings = TrainSettings(
            patch_size=(p, p), batch_size=self.batch_size.value,
            steps_per_epoch=self.steps_per_epoch.value, epochs=self.epochs.value,
            minutes=self.minutes.value if self.minutes.value > 0 else None, seed=self.seed.value,
        )
        try:
            return settings.check()
        except InputError as error:
            raise self._error(str(error), self.patch_size, self.batch_size) from None

    def _generator_settings(self):
        from nucleai.train.pix2pix import GeneratorSettings, depth_for_size

        size = self.generator_size.value
        return GeneratorSettings(size=size, depth=depth_for_size(size), minutes=self.generator_minutes.value,
                                 seed=self.seed.value)

    def _style_settings(self):
        from nucleai.train.styletransfer import StyleSettings

        settings = StyleSettings(
            k=self.n_styles.value or None, min_cluster_size=self.min_per_style.value,
            pairs_per_style=self.pairs_per_style.value, share=self.share_percent.value / 100,
            generator=self._generator_settings(), seed=self.seed.value,
        )
        try:
            return settings.check()
        except InputError as error:
            raise self._error(str(error), self.generator_size, self.generator_minutes) from None

    def _read_staged(self):
        """(annotated, unannotated) samples read back from the staging folder."""
        import tifffile

        from nucleai.labelio import files_by_stem
        from nucleai.train.data import Sample, read_samples

        staging = self.staging_dir()
        images = staging / IMAGES_DIR
        if not images.is_dir() or not files_by_stem(images, suffixes=(".tif",)):
            raise self._error(
                "no image set had ground-truth objects; training needs annotated image sets "
                f"(nothing staged in {images})",
                self.truth_objects,
            )
        annotated = read_samples(images, staging / LABELS_DIR, (".tif",), tifffile.imread)
        unlabeled_dir = staging / UNLABELED_DIR
        unlabeled = []
        if unlabeled_dir.is_dir():
            unlabeled = [
                Sample(stem, tifffile.imread(path), None)
                for stem, path in files_by_stem(unlabeled_dir, suffixes=(".tif",)).items()
            ]
        return annotated, unlabeled

    def post_run(self, workspace):
        """Train once on the staged image sets, write the model folder, report."""
        from nucleai.train.augment import Augmenter
        from nucleai.train.data import split_validation

        folder = self.model_dir()
        if holds_foreign_model(folder):
            raise self._error(
                f"{folder} already holds a model this module did not train; choose a new model name",
                self.model_name,
            )
        annotated, unlabeled = self._read_staged()
        try:
            train, val = split_validation(annotated, self.val_fraction.value, self.seed.value)
        except InputError as error:
            raise self._error(str(error), self.truth_objects, self.val_fraction) from None
        try:
            base = self.base_model()
            if base is not None:
                models.read_model_spec(base)
        except InputError as error:
            raise self._error(str(error), self._base_setting()) from None
        try:
            first_pass = self.first_pass_model() if self.use_style else None
            if first_pass is not None:
                models.read_model_spec(first_pass)
        except InputError as error:
            raise self._error(str(error), self._first_pass_setting()) from None

        style = None
        if self.use_style:
            if not unlabeled:
                raise self._error(
                    "style augmentation needs unannotated image sets (ground-truth objects with 0 "
                    "objects); none were staged: add some, or select No",
                    self.use_style,
                )
            style = self._style_settings()
        elif unlabeled:
            LOGGER.info(
                f"{self.module_name}: {len(unlabeled)} unannotated image sets ignored "
                "(no style augmentation)"
            )
        settings = self._train_settings()
        n_channels = self._channels(annotated + (unlabeled if style else []), base)
        staging = self.staging_dir()
        description = [
            f"CellProfiler module {self.module_name}: image '{self.image_name.value}', ground-truth "
            f"objects '{self.truth_objects.value}'; image sets staged in {staging}",
            f"annotated image sets: {len(annotated)}; validation: {len(val)} held out at random "
            f"(fraction {self.val_fraction.value:g}, seed {self.seed.value}): "
            + ", ".join(s.name for s in val),
        ]
        if style is not None:
            description.append(f"unannotated image sets (style input): {len(unlabeled)}")
        LOGGER.info(
            f"{self.module_name}: training {folder} on {len(train)} training and {len(val)} validation "
            f"image sets, {n_channels} channel(s)"
            + (f", {len(unlabeled)} unannotated for style augmentation" if style else "")
        )
        from nucleai.train.styletransfer import train_with_styles

        try:
            result = train_with_styles(
                train, val, folder, n_channels=n_channels, settings=settings,
                unlabeled=unlabeled if style is not None else [], style=style,
                first_pass=None if first_pass is None else str(first_pass),
                base=None if base is None else str(base),
                augmenter=Augmenter(invert_prob=self.invert_prob.value), data_description=description,
                command=None, progress=False, log=lambda message: LOGGER.info(f"{self.module_name}: {message}"),
            )
        except InputError as error:
            raise self._error(str(error), *self._settings_for(str(error))) from None

        summary = self._summary(result, folder, len(train), len(val), len(unlabeled) if style else 0)
        for name, value in summary:
            LOGGER.info(f"{self.module_name}: {name}: {value}")
        workspace.display_data.summary = summary

    def _settings_for(self, message):
        """The settings a backend error message most likely concerns."""
        text = message.lower()
        if "first-pass" in text:
            return [self._first_pass_setting()]
        if "base model" in text:
            return [self._base_setting()]
        if "already holds a model" in text or "output" in text:
            return [self.model_name]
        if "patch size" in text:
            return [self.patch_size]
        if "generator" in text or "crop" in text:
            return [self.generator_size, self.generator_minutes]
        if "style" in text or "unannotated" in text:
            return [self.use_style, self.min_per_style]
        if "channel" in text:
            return [self.channels]
        return [self.image_name, self.truth_objects]

    @staticmethod
    def _summary(result, folder, n_train, n_val, n_unlabeled):
        detector = result.detector
        training = detector.training
        why = {"epochs": "all epochs done", "early_stopping": "stopped early",
               "time_budget": "time budget used up; run again to continue"}.get(training.stopped, training.stopped)
        summary = [
            ("Model folder", str(folder)),
            ("Image sets", f"{n_train} training, {n_val} validation, {n_unlabeled} unannotated"),
            ("Epochs", f"{training.epochs_done} ({why})"),
            ("Validation DSB score", f"{detector.validation.dsb_score:.4f}"),
            ("Validation score at IoU 0.5", f"{detector.validation.score[0]:.4f}"),
            ("Probability threshold", f"{detector.prob_thresh:g}"),
            ("Overlap threshold", f"{detector.nms_thresh:g}"),
        ]
        styles = result.styles
        if styles is None:
            summary.append(("Styles", "no style augmentation"))
        else:
            summary.append((
                "Styles",
                f"{len(styles.kept)} kept of {styles.k} clusters"
                + (f", {len(styles.dropped)} dropped (too small)" if styles.dropped else ""),
            ))
            summary.append(("Synthetic pairs", str(len(styles.synthetic))))
            if styles.grids:
                summary.append(("Style samples", ", ".join(str(Path(p).name) for p in styles.grids)))
        return summary

    def display_post_run(self, workspace, figure):
        summary = getattr(workspace.display_data, "summary", None)
        if not summary:
            return
        figure.set_subplots((1, 1))
        figure.subplot_table(
            0, 0, [[value] for _, value in summary], row_labels=[name for name, _ in summary],
        )

    # ----------------------------------------------------------------------------------------
    # measurement declarations

    def get_measurement_columns(self, pipeline):
        return [(IMAGE, M_ANNOTATED, COLTYPE_INTEGER)]

    def get_categories(self, pipeline, object_name):
        return [CATEGORY] if object_name == IMAGE else []

    def get_measurements(self, pipeline, object_name, category):
        if object_name == IMAGE and category == CATEGORY:
            return [FTR_ANNOTATED]
        return []
