"""
RunStarConvex
=============

**RunStarConvex** identifies nuclei (or other roundish objects) with a deep-learning
star-convex polygon detector, the StarDist method (Schmidt et al., MICCAI 2018). It takes the
place of **IdentifyPrimaryObjects**: the objects it creates get the same standard measurements,
so every downstream module (IdentifySecondaryObjects, MeasureObjectIntensity, ...) works as
before.

A neural network predicts, for every pixel, the probability that it lies near the centre of a
nucleus and the distance from it to the nucleus boundary along 32 rays. Every pixel above the
*probability threshold* proposes a polygon; of polygons overlapping by more than the *overlap
threshold*, only the most probable is kept (non-maximum suppression).

Models
^^^^^^
A model is a folder in StarDist's own layout (``config.json``, ``thresholds.json``,
``weights_best.h5``), so any 2-D model trained with the ``stardist`` Python package works as is.
The suite ships a model for fluorescence nuclei (*fluo_nuclei*, trained on the 2018 Data Science
Bowl images; see ``models/fluo_nuclei/MODEL.md``) and a colour model for H&E-like histology
(*histo_nuclei*; see ``models/histo_nuclei/MODEL.md``). The model is loaded once per CellProfiler
process, not for every image set.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           YES (mask image setting)
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:**

-  *Count:* the number of objects identified.

**Object measurements:**

-  *Location\\_X, Location\\_Y:* the centre of mass of each object.
-  *Number\\_Object\\_Number:* the object's label number.
-  *StarConvex\\_Probability:* the network's object probability at the object's centre
   (the score the object won the non-maximum suppression with), between 0 and 1.

References
^^^^^^^^^^

-  Schmidt U, Weigert M, Broaddus C, Myers G (2018) "Cell Detection with Star-Convex Polygons."
   MICCAI 2018.
-  Hollandi R, et al. (2020) "nucleAIzer: a parameter-free deep learning framework for nucleus
   segmentation using image style transfer." Cell Systems 10(5).
"""
from cellprofiler_core.constants.measurement import COLTYPE_FLOAT
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ImageSegmentation
from cellprofiler_core.object import Objects
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.range import FloatRange
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Directory, Float, ImageName, Integer

from nucleai import models, predict
from nucleai.errors import InputError

from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM, ModelChoice

#: Category of this module's own measurements (``StarConvex_Probability``).
C_STARCONVEX = "StarConvex"
FTR_PROBABILITY = "Probability"
M_PROBABILITY = f"{C_STARCONVEX}_{FTR_PROBABILITY}"


RESCALE_NONE = "No"
RESCALE_GIVEN = "Yes, nucleus diameter given"
RESCALE_AUTO = "Yes, estimate the nucleus diameter"

TILES_AUTO = "Automatic"
TILES_FIXED = "Fixed number of tiles"


def _bundled_choices(pipeline=None):
    return models.bundled_models() or [models.DEFAULT_MODEL]


class RunStarConvex(ModelChoice, ImageSegmentation):
    module_name = "RunStarConvex"
    variable_revision_number = 1

    def create_settings(self):
        super().create_settings()
        self.x_name.doc = """\
Select the image to segment, typically a nuclear stain (DNA, DAPI, Hoechst). Grey images are
used as they are; for a colour or multi-channel image, set which channel to use below."""
        self.y_name.value = "Nuclei"
        self.y_name.doc = "Enter the name for the objects this module identifies."

        self.model_source = Choice(
            "Model",
            [MODEL_BUNDLED, MODEL_CUSTOM],
            value=MODEL_BUNDLED,
            doc=f"""\
Use a model that ships with the plugins (*{MODEL_BUNDLED}*) or a model folder of your own
(*{MODEL_CUSTOM}*): any 2-D model trained with the ``stardist`` Python package, i.e. a folder
holding ``config.json``, ``thresholds.json`` and ``weights_best.h5`` (or ``weights_last.h5``).""",
        )
        self.bundled_model = Choice(
            "Bundled model",
            _bundled_choices(),
            value=models.DEFAULT_MODEL,
            choices_fn=_bundled_choices,
            doc=f"""\
*(Used only for a bundled model)*

The bundled models are the folders in the plugins' ``models/`` folder (or in the folder named by
the environment variable ``{models.MODELS_DIR_ENV}``). *{models.DEFAULT_MODEL}* segments nuclei in
fluorescence images.""",
        )
        self.model_folder = Directory(
            "Model folder",
            value=f"{ABSOLUTE_FOLDER_NAME}|",
            allow_metadata=False,
            doc="""\
*(Used only for a custom model folder)*

The folder of a StarDist-type model: ``config.json``, ``thresholds.json`` and
``weights_best.h5`` or ``weights_last.h5``. The folder is checked when the pipeline is
validated; a missing or broken one is reported before any image is processed.""",
        )
        self.channel = Integer(
            "Channel to use for colour images",
            1,
            minval=1,
            doc="""\
*(Used only when the input image has several channels and the model takes one)*

The channel to segment, counted from 1 (1 = red, 2 = green, 3 = blue for RGB images). Grey
images ignore this setting. A model trained on several channels gets all channels of an image
with that many.""",
        )
        self.use_model_thresholds = Binary(
            "Use the model's tuned thresholds?",
            True,
            doc="""\
Models store thresholds tuned on their validation data (``thresholds.json``); they are usually
the best choice. Select *No* to set them yourself (a model without ``thresholds.json`` uses
StarDist's defaults, 0.5 and 0.4).""",
        )
        self.prob_thresh = Float(
            "Probability threshold",
            models.DEFAULT_PROB_THRESH,
            minval=0.001,
            maxval=0.999,
            doc="""\
*(Used only when not using the model's thresholds)*

Pixels with an object probability above this propose an object. Lower it to find fainter or
more uncertain nuclei (more false detections), raise it to keep only confident ones.""",
        )
        self.nms_thresh = Float(
            "Overlap threshold",
            models.DEFAULT_NMS_THRESH,
            minval=0.001,
            maxval=0.999,
            doc="""\
*(Used only when not using the model's thresholds)*

Two proposed objects overlapping by more than this fraction (intersection area over the area
of the smaller one) are taken to be the same nucleus and only the more probable is kept. Raise
it to keep more touching or overlapping nuclei apart.""",
        )
        self.percentiles = FloatRange(
            "Normalization percentiles",
            predict.PERCENTILES,
            minval=0.0,
            maxval=100.0,
            doc="""\
Before prediction the image intensities are rescaled so that the lower percentile maps to 0 and
the upper one to 1 (per image, per channel). The defaults (1, 99.8) are what the models were
trained with; change them only for images with very few or very many nuclei.""",
        )
        self.rescale = Choice(
            "Rescale images to the model's nucleus size?",
            [RESCALE_NONE, RESCALE_GIVEN, RESCALE_AUTO],
            value=RESCALE_NONE,
            doc=f"""\
The network finds nuclei best at about the size it was trained on. If your nuclei are much
larger or smaller (another magnification or camera), the image can be resized for prediction;
the objects are drawn at the original size.

-  *{RESCALE_NONE}:* predict on the image as it is.
-  *{RESCALE_GIVEN}:* you give the typical nucleus diameter in your images.
-  *{RESCALE_AUTO}:* a first pass at the original size measures the median nucleus diameter,
   then the image is resized and predicted again (about twice the time; kept at the original
   size when fewer than {predict.MIN_OBJECTS_FOR_DIAMETER} nuclei are found).""",
        )
        self.object_diameter = Float(
            "Typical nucleus diameter (pixels)",
            20.0,
            minval=1.0,
            doc="""\
*(Used only when the nucleus diameter is given)*

The diameter, in pixels, of a typical nucleus in your images.""",
        )
        self.use_model_diameter = Binary(
            "Use the nucleus diameter the model declares?",
            True,
            doc="""\
*(Used only when rescaling)*

Bundled models declare the median nucleus diameter of their training images (``nucleai.json``
in the model folder); images are resized so their nuclei match it. Select *No* to enter the
diameter the model expects yourself (necessary for models without that file).""",
        )
        self.model_diameter = Float(
            "Nucleus diameter the model expects (pixels)",
            20.0,
            minval=1.0,
            doc="""\
*(Used only when rescaling without the model's declared diameter)*

The typical diameter, in pixels, of the nuclei the model was trained on.""",
        )
        self.tiling = Choice(
            "Tiling",
            [TILES_AUTO, TILES_FIXED],
            value=TILES_AUTO,
            doc=f"""\
Large images are predicted in overlapping tiles to bound the memory the network needs; the
tiles are stitched seamlessly (each tile sees enough context around its core).

-  *{TILES_AUTO}:* images with a side above {predict.AUTO_TILE_SIDE} pixels (after rescaling)
   are tiled, with tiles of at most that size.
-  *{TILES_FIXED}:* always use the number of tiles given below (more tiles, less memory,
   somewhat more time).""",
        )
        self.tiles_y = Integer(
            "Tiles along Y", 2, minval=1,
            doc="*(Used only with a fixed number of tiles)* Number of tiles from top to bottom.",
        )
        self.tiles_x = Integer(
            "Tiles along X", 2, minval=1,
            doc="*(Used only with a fixed number of tiles)* Number of tiles from left to right.",
        )
        self.use_mask = Binary(
            "Restrict objects to a mask?",
            False,
            doc="""\
Select *Yes* to find objects only inside a binary mask image (for example a well or tissue
region): an object must have its centre inside the mask and is cut at the mask's edge, and the
normalization percentiles are computed inside the mask.""",
        )
        self.mask_name = ImageSubscriber(
            "Select the mask image",
            "None",
            doc="*(Used only when restricting objects to a mask)* A binary image, same size as "
            "the input image: non-zero pixels are inside.",
        )
        self.save_probability = Binary(
            "Save the probability map as an image?",
            False,
            doc="""\
Select *Yes* to make the network's object probability map (0 to 1, at the input image's size)
available to later modules, for example to save it with **SaveImages** or measure it.""",
        )
        self.probability_name = ImageName(
            "Name the probability image",
            "NucleiProbability",
            doc="*(Used only when saving the probability map)* Name for the probability image.",
        )

    def settings(self):
        return [
            self.x_name,
            self.y_name,
            self.model_source,
            self.bundled_model,
            self.model_folder,
            self.channel,
            self.use_model_thresholds,
            self.prob_thresh,
            self.nms_thresh,
            self.percentiles,
            self.rescale,
            self.object_diameter,
            self.use_model_diameter,
            self.model_diameter,
            self.tiling,
            self.tiles_y,
            self.tiles_x,
            self.use_mask,
            self.mask_name,
            self.save_probability,
            self.probability_name,
        ]

    def visible_settings(self):
        result = [self.x_name, self.y_name, self.model_source]
        result.append(
            self.bundled_model if self.model_source == MODEL_BUNDLED else self.model_folder
        )
        result += [self.channel, self.use_model_thresholds]
        if not self.use_model_thresholds:
            result += [self.prob_thresh, self.nms_thresh]
        result += [self.percentiles, self.rescale]
        if self.rescale == RESCALE_GIVEN:
            result.append(self.object_diameter)
        if self.rescale != RESCALE_NONE:
            result.append(self.use_model_diameter)
            if not self.use_model_diameter:
                result.append(self.model_diameter)
        result.append(self.tiling)
        if self.tiling == TILES_FIXED:
            result += [self.tiles_y, self.tiles_x]
        result.append(self.use_mask)
        if self.use_mask:
            result.append(self.mask_name)
        result.append(self.save_probability)
        if self.save_probability:
            result.append(self.probability_name)
        return result

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 1 is the first; later revisions add their conversions here, in order.
        return setting_values, variable_revision_number

    def volumetric(self):
        return False

    # ----------------------------------------------------------------------------------------
    # model

    def validate_module(self, pipeline):
        """Check the model folder (files only, no TensorFlow) before anything runs."""
        try:
            spec = models.read_model_spec(self._model_location())
        except InputError as error:
            raise ValidationError(str(error), self._model_setting())
        if (
            self.rescale != RESCALE_NONE
            and self.use_model_diameter
            and spec.object_diameter is None
        ):
            raise ValidationError(
                f"model {spec.name} does not declare the nucleus diameter it was trained on "
                f"(no {models.METADATA_FILE}); enter it yourself",
                self.use_model_diameter,
            )

    # ----------------------------------------------------------------------------------------
    # run

    def run(self, workspace):
        x = workspace.image_set.get_image(self.x_name.value)
        if x.volumetric:
            raise InputError(
                f"{self.module_name}: '{self.x_name.value}' is a 3-D image; "
                "RunStarConvex segments 2-D images"
            )
        try:
            model = models.load_model(self._model_location())
        except InputError as error:
            raise self._model_error(error) from error

        pixels = x.pixel_data
        try:
            channel = self.channel.value - 1 if pixels.ndim == 3 and model.spec.n_channel_in == 1 else None
            image = predict.select_channels(pixels, model.spec.n_channel_in, channel)
        except InputError as error:
            raise InputError(
                f"{self.module_name}: image '{self.x_name.value}' and model {model.name}: "
                f"{error} (setting '{self.channel.text}')"
            ) from error

        mask = None
        if self.use_mask:
            mask_image = workspace.image_set.get_image(self.mask_name.value)
            mask = mask_image.pixel_data
            if mask.ndim == 3:
                mask = mask.any(axis=2)
            mask = mask > 0
            if mask.shape != image.shape[:2]:
                raise InputError(
                    f"{self.module_name}: mask '{self.mask_name.value}' is {mask.shape[0]}x"
                    f"{mask.shape[1]} but image '{self.x_name.value}' is "
                    f"{image.shape[0]}x{image.shape[1]} (setting '{self.mask_name.text}')"
                )

        kwargs = {}
        if not self.use_model_thresholds:
            kwargs.update(prob_thresh=self.prob_thresh.value, nms_thresh=self.nms_thresh.value)
        if self.rescale != RESCALE_NONE:
            kwargs["object_diameter"] = (
                "auto" if self.rescale == RESCALE_AUTO else self.object_diameter.value
            )
            if not self.use_model_diameter:
                kwargs["model_diameter"] = self.model_diameter.value
        tiles = "auto" if self.tiling == TILES_AUTO else (self.tiles_y.value, self.tiles_x.value)
        try:
            result = predict.segment(
                image,
                model,
                percentiles=(self.percentiles.min, self.percentiles.max),
                tiles=tiles,
                mask=mask,
                return_prob_map=self.save_probability.value or self.show_window,
                **kwargs,
            )
        except InputError as error:
            raise InputError(
                f"{self.module_name}: image '{self.x_name.value}': {error}"
            ) from error

        objects = Objects()
        objects.segmented = result.labels
        objects.parent_image = x
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        workspace.measurements.add_measurement(
            self.y_name.value, M_PROBABILITY, result.probabilities.astype(float)
        )
        if self.save_probability:
            workspace.image_set.add(
                self.probability_name.value, Image(result.prob_map, parent_image=x)
            )

        if self.show_window:
            workspace.display_data.image = image[..., 0] if image.shape[2] == 1 else image
            workspace.display_data.prob_map = result.prob_map
            workspace.display_data.labels = result.labels
            workspace.display_data.statistics = [
                ("Objects", str(result.count)),
                ("Model", model.name),
                ("Probability threshold", f"{result.prob_thresh:g}"),
                ("Overlap threshold", f"{result.nms_thresh:g}"),
                ("Scale", f"{result.scale:.3g}"),
                ("Tiles", f"{result.n_tiles[0]} x {result.n_tiles[1]}"),
            ]

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 2))
        title = f"Input image, cycle #{workspace.measurements.image_number}"
        if data.image.ndim == 3:
            ax = figure.subplot_imshow_color(0, 0, data.image, title, normalize=True)
        else:
            ax = figure.subplot_imshow_grayscale(0, 0, data.image, title)
        figure.subplot_imshow_grayscale(
            1, 0, data.prob_map, "Object probability", normalize=False, vmin=0, vmax=1,
            sharexy=ax,
        )
        cplabels = [dict(name=self.y_name.value, labels=[data.labels])]
        outline_title = f"{self.y_name.value} outlines"
        if data.image.ndim == 3:
            figure.subplot_imshow_color(
                0, 1, data.image, outline_title, normalize=True, cplabels=cplabels, sharexy=ax
            )
        else:
            figure.subplot_imshow_grayscale(
                0, 1, data.image, outline_title, cplabels=cplabels, sharexy=ax
            )
        figure.subplot_table(
            1, 1, [[value] for _, value in data.statistics],
            row_labels=[name for name, _ in data.statistics],
        )

    # ----------------------------------------------------------------------------------------
    # measurements

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        if object_name == self.y_name.value:
            categories = categories + [C_STARCONVEX]
        return categories

    def get_measurements(self, pipeline, object_name, category):
        if object_name == self.y_name.value and category == C_STARCONVEX:
            return [FTR_PROBABILITY]
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_columns(self, pipeline, object_name=None):
        columns = super().get_measurement_columns(pipeline, object_name)
        return columns + [(self.y_name.value, M_PROBABILITY, COLTYPE_FLOAT)]
