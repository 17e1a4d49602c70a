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
Bowl images; see ``models/fluo_nuclei/MODEL.md``), a colour model for H&E-like histology
(*histo_nuclei*; see ``models/histo_nuclei/MODEL.md``) and one colour model for every kind of
image (*versatile_nuclei*, below the specialists' scores; see ``models/versatile_nuclei/MODEL.md``).
The model is loaded once per CellProfiler process, not for every image set.

*Automatic*, the default bundled choice, picks the model per image: it decides from the pixels
whether the image is fluorescence (bright nuclei on a dark background), brightfield (grey, dark
nuclei on a bright background) or colour histology, and runs the bundled model for that kind
(brightfield images: *histo_nuclei* on the haematoxylin density, which held-out images
preferred to *versatile_nuclei*; see ``models/versatile_nuclei/MODEL.md``). The decision is
recorded per image (see the measurements).

Whatever the model, an image in which it finds no nucleus although the image is not blank gets a
warning in the log saying what the image looks like and the likely cause (wrong polarity, wrong
model), and the status *warning: no objects found although the image is not blank*.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           YES
============ ============ ===============

Masks: an object must have its centre inside the input image's own mask (set by **MaskImage**
or **Crop**, as **IdentifyPrimaryObjects** respects it) and is cut at the mask's edge; the
normalization percentiles are computed inside it. A mask image chosen with *Restrict objects to
a mask?* is combined with the image's own mask (both must include a pixel).

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:**

-  *Count:* the number of objects identified.
-  *StarConvex\\_Status:* what happened to the image: *ok*, *blank*, *constant* or *all
   masked* (nothing to segment: no objects), *warning: no objects found although the image is
   not blank*, or *error: ...* (an image the module could not process, given no objects; see
   *When an image cannot be processed*).
-  *StarConvex\\_ImageKind, StarConvex\\_Model, StarConvex\\_Preparation* (with the
   *Automatic* model only): the kind the image was judged to be (*fluorescence*,
   *brightfield*, *histology*, or *no contrast*), the bundled model that segmented it, and
   what that model saw: *none* (the image as it is) or *haematoxylin* (its
   haematoxylin density); *none* in all three for an image flagged before a decision.

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
from types import SimpleNamespace

from cellprofiler_core.constants.measurement import COLTYPE_FLOAT, IMAGE
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ImageSegmentation
from cellprofiler_core.object import Objects
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.range import FloatRange
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Float, Integer

from nucleai import modality, models, predict
from nucleai.errors import InputError

from _batch_paths import BatchPathsMixin
from _detector_settings import DetectorSettings
from _failure_policy import upgrade_with_failure_setting
from _model_choice import MODEL_AUTOMATIC, MODEL_BUNDLED, MODEL_CUSTOM  # noqa: F401 (the module's setting values)
from _network_settings import upgrade_with_network_settings
from _options import typed_number

#: Category of this module's own measurements (``StarConvex_Probability``).
C_STARCONVEX = "StarConvex"
FTR_PROBABILITY = "Probability"
M_PROBABILITY = f"{C_STARCONVEX}_{FTR_PROBABILITY}"

RESCALE_NONE = "No"
RESCALE_GIVEN = "Yes, nucleus diameter given"
RESCALE_AUTO = "Yes, estimate the nucleus diameter"

TILES_AUTO = "Automatic"
TILES_FIXED = "Fixed number of tiles"

#: The thresholds of an image flagged before the automatic choice chose its model: unknown.
NO_MODEL = SimpleNamespace(prob_thresh=float("nan"), nms_thresh=float("nan"))


def _number_or_text(text):
    """One bound of a range setting as typed (the setting's ``min``/``max`` clip it to range)."""
    try:
        return float(text)
    except ValueError:
        return text


class RunStarConvex(BatchPathsMixin, DetectorSettings, ImageSegmentation):
    module_name = "RunStarConvex"
    variable_revision_number = 3
    STATUS_CATEGORY = C_STARCONVEX

    def create_settings(self):
        super().create_settings()
        self.x_name.doc = """\
Select the image to segment, typically a nuclear stain (DNA, DAPI, Hoechst). Grey images are
used as they are; for a colour or multi-channel image, set which channel to use below."""
        self.y_name.value = "Nuclei"
        self.y_name.doc = "Enter the name for the objects this module identifies."
        self.create_detector_settings("")
        self.percentiles = FloatRange(
            "Normalization percentiles", predict.PERCENTILES, minval=0.0, maxval=100.0,
            doc="""\
Before prediction the image intensities are rescaled so that the lower percentile maps to 0 and
the upper one to 1 (per image, per channel). The defaults (1, 99.8) are what the models were
trained with; change them only for images with very few or very many nuclei.""",
        )
        self.rescale = Choice(
            "Rescale images to the model's nucleus size?", [RESCALE_NONE, RESCALE_GIVEN, RESCALE_AUTO],
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
            "Typical nucleus diameter (pixels)", 20.0, minval=1.0,
            doc="*(Used only when the nucleus diameter is given)* The diameter, in pixels, of a "
            "typical nucleus in your images.",
        )
        self.use_model_diameter = Binary(
            "Use the nucleus diameter the model declares?", True,
            doc="""\
*(Used only when rescaling)*

Bundled models declare the median nucleus diameter of their training images (``nucleai.json``
in the model folder); images are resized so their nuclei match it. Select *No* to enter the
diameter the model expects yourself (necessary for models without that file).""",
        )
        self.model_diameter = Float(
            "Nucleus diameter the model expects (pixels)", 20.0, minval=1.0,
            doc="*(Used only when rescaling without the model's declared diameter)* The typical "
            "diameter, in pixels, of the nuclei the model was trained on.",
        )
        self.tiling = Choice(
            "Tiling", [TILES_AUTO, TILES_FIXED], value=TILES_AUTO,
            doc=f"""\
Large images are predicted in overlapping tiles to bound the memory the network needs; the
tiles are stitched seamlessly (each tile sees enough context around its core).

-  *{TILES_AUTO}:* an image of more than {predict.AUTO_TILE_PIXELS / 2**20:g} megapixels (after
   rescaling; the network needs ~300-400 bytes per pixel) is tiled, with the fewest tiles that
   each stay within that size; smaller images, every common camera field included, are
   predicted whole (fastest).
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
            "Restrict objects to a mask?", False,
            doc="""\
The input image's own mask (from **MaskImage** or **Crop**) is always respected. Select *Yes* to
restrict the objects to a binary mask image as well (for example a well or tissue region):
an object must have its centre inside both masks and is cut at their edge, and the
normalization percentiles are computed inside them.""",
        )
        self.mask_name = ImageSubscriber(
            "Select the mask image", "None",
            doc="*(Used only when restricting objects to a mask)* A binary image, same size as "
            "the input image: non-zero pixels are inside.",
        )
        self.create_probability_settings("", "NucleiProbability")
        self.create_network_settings()
        self.create_failure_setting()

    def settings(self):
        return [
            self.x_name, self.y_name, self.model_source, self.bundled_model, self.model_folder,
            self.channel, self.use_model_thresholds, self.prob_thresh, self.nms_thresh,
            self.percentiles, self.rescale, self.object_diameter, self.use_model_diameter,
            self.model_diameter, self.tiling, self.tiles_y, self.tiles_x, self.use_mask,
            self.mask_name, self.save_probability, self.probability_name, self.on_failure,
            *self.network_settings(),
        ]

    def visible_settings(self):
        result = [self.x_name, self.y_name] + self.detector_visible_settings()
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
        return result + self.probability_visible_settings() + self.network_settings() + [self.on_failure]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 2 added "When an image cannot be processed", 3 the precision and GPU memory.
        setting_values, variable_revision_number = upgrade_with_failure_setting(
            setting_values, variable_revision_number, 1)
        return upgrade_with_network_settings(setting_values, variable_revision_number, 2)

    def volumetric(self):
        return False

    # ----------------------------------------------------------------------------------------
    # settings -> options

    def _size_and_tiles(self):
        """This module's own option fields, numbers as typed."""
        values = {"percentiles": tuple(_number_or_text(text)
                                       for text in (self.percentiles.min_text, self.percentiles.max_text))}
        if self.rescale != RESCALE_NONE:
            values["object_diameter"] = "auto" if self.rescale == RESCALE_AUTO else typed_number(self.object_diameter)
            if not self.use_model_diameter:
                values["model_diameter"] = typed_number(self.model_diameter)
        if self.tiling == TILES_FIXED:
            values["tiles"] = (typed_number(self.tiles_y), typed_number(self.tiles_x))
        return values

    def _options(self):
        bad_tiles_y = not (isinstance(typed_number(self.tiles_y), int) and typed_number(self.tiles_y) >= 1)
        return self.segment_options(self._size_and_tiles, {
            "percentiles": self.percentiles, "object_diameter": self.object_diameter,
            "model_diameter": self.model_diameter, "tiles": self.tiles_y if bad_tiles_y else self.tiles_x,
        })

    def validate_module(self, pipeline):
        """Check the settings and the model folders (files only, no TensorFlow) before anything runs."""
        options = self._options()
        for spec in self.read_detector_specs():
            if options.object_diameter is not None and options.model_diameter is None and spec.object_diameter is None:
                raise ValidationError(
                    f"model {spec.name} does not declare the nucleus diameter it was trained on "
                    f"(no {models.METADATA_FILE}); enter it yourself",
                    self.use_model_diameter,
                )

    # ----------------------------------------------------------------------------------------
    # run

    def _mask(self, workspace, x, shape):
        """The image's own mask, combined with the mask image when one is chosen; None for none."""
        mask = x.mask if x.has_mask else None
        if not self.use_mask:
            return mask
        extra = workspace.image_set.get_image(self.mask_name.value).pixel_data
        extra = (extra.any(axis=2) if extra.ndim == 3 else extra) > 0
        if extra.shape != shape:
            raise InputError(
                f"mask '{self.mask_name.value}' is {extra.shape[0]}x{extra.shape[1]} but "
                f"image '{self.x_name.value}' is {shape[0]}x{shape[1]} (setting '{self.mask_name.text}')"
            )
        return extra if mask is None else mask & extra

    def _segment(self, workspace, x, model, options):
        """The image's masks, then the segmentation (InputError: this image's fault)."""
        mask = self._mask(workspace, x, x.pixel_data.shape[:2])
        return self.detector_segment(x, model, options, mask=mask,
                                     return_prob_map=self.save_probability.value or self.show_window)

    def run(self, workspace):
        options = self._options()
        x, model = self.detector_input(workspace)
        outcome = self.process_or_flag(workspace, self.x_name.value,
                                       lambda: self._segment(workspace, x, model, options))
        self.record_model_choice(workspace, outcome)
        self.add_precision(workspace)
        decision = None if outcome is None else outcome.decision
        if outcome is None:  # flagged: no objects
            shape = x.pixel_data.shape[:2]
            spec = NO_MODEL if model is None else model.spec
            image, result = x.pixel_data, predict.no_objects(shape, spec, options, return_prob_map=True)
        else:
            image, result = outcome.image, outcome.result

        objects = Objects()
        objects.segmented = result.labels
        objects.parent_image = x
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        workspace.measurements.add_measurement(self.y_name.value, M_PROBABILITY, result.probabilities.astype(float))
        if self.save_probability:
            workspace.image_set.add(self.probability_name.value, Image(result.prob_map, parent_image=x))

        if self.show_window:
            workspace.display_data.image = image
            workspace.display_data.prob_map = result.prob_map
            workspace.display_data.labels = result.labels
            if decision is not None:
                used = [("Image kind", f"{decision.kind} ({decision.evidence})"),
                        ("Model", decision.model + modality.seen_as(decision.preparation))]
            else:
                used = [("Model", MODEL_AUTOMATIC + " (no decision)" if model is None else model.name)]
            workspace.display_data.statistics = [
                ("Objects", str(result.count)),
                *used,
                ("Probability threshold", f"{result.prob_thresh:g}"),
                ("Overlap threshold", f"{result.nms_thresh:g}"),
                ("Scale", f"{result.scale:.3g}"),
                ("Tiles", f"{result.n_tiles[0]} x {result.n_tiles[1]}"),
            ]

    def display(self, workspace, figure):
        self.show_result(workspace, figure, workspace.display_data.prob_map, "Object probability", 1)

    # ----------------------------------------------------------------------------------------
    # measurements

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        if object_name in (self.y_name.value, IMAGE):
            categories = categories + [C_STARCONVEX]
        return categories

    def get_measurements(self, pipeline, object_name, category):
        if object_name == self.y_name.value and category == C_STARCONVEX:
            return [FTR_PROBABILITY]
        if object_name == IMAGE and category == C_STARCONVEX:
            return self.detector_image_features()
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == C_STARCONVEX and measurement in self.detector_image_features():
            return [self.y_name.value]
        return super().get_measurement_objects(pipeline, object_name, category, measurement)

    def get_measurement_columns(self, pipeline, object_name=None):
        columns = super().get_measurement_columns(pipeline, object_name)
        return columns + [(self.y_name.value, M_PROBABILITY, COLTYPE_FLOAT), *self.detector_image_columns()]
