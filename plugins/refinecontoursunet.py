"""
RefineContoursUNet
==================

**RefineContoursUNet** corrects the outlines of objects found by any upstream module
(**RunStarConvex**, **IdentifyPrimaryObjects**, ...) with a U-Net probability map and the
contour-refinement rules of nucleAIzer (Hollandi et al., Cell Systems 2020): a U-Net trained to
classify pixels as background, nucleus or nucleus boundary knows the boundaries better.

The rules run in this order (p1 ... p6 are the six parameters below):

#. remove objects lying entirely inside another (their pixels go to the enclosing object);
#. merge an object into the neighbour touching more than *p1* of its contour;
#. remove objects smaller than *p2* pixels;
#. move every contour at most *p4* pixels inwards and *p5* pixels outwards to where the U-Net's
   nucleus probability exceeds *p3* (pixels between touching objects go to the nearest one;
   objects never take each other's pixels);
#. remove objects whose mean nucleus probability is below *p6*.

Models
^^^^^^
A refinement model is a folder: ``config.json`` (a U-Net), ``weights_best.h5``, and
``refine.json`` with p1 ... p6 tuned on the model's validation images (without it the published
values 0.17, 44, 0.9375, 1, 1, 0.8 apply). The suite ships *fluo_refine* for fluorescence nuclei;
tune the parameters on a few annotated images of your own with ``nucleai refine --tune``.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements** (``RefineContoursUNet_<feature>_<output objects>``):

-  *RemovedInside*, *Merged*, *RemovedSmall*, *RemovedVanished*, *RemovedLowProbability*: input
   objects removed by rule 1, merged by rule 2, removed by rules 3, 4 (no pixels left) and 5.
-  *MeanBoundaryShift*: the mean boundary shift of the output objects; and *Count*.
-  *Status*: *ok*, *blank* or *constant* (an image without contrast: no objects), or *error:
   ...* (an image the module could not process, given no objects; see *When an image cannot be
   processed*).

**Object measurements** of the output objects:

-  *Location*, *Number_Object_Number*, *Parent_<input objects>* (and *Children_<output
   objects>_Count* of the input objects) as for every object-processing module: the parent is
   the input object it overlaps most, the one it is named after (for a merge, its largest
   member). The relationship table lists every input object an output object was made of.
-  *RefineContoursUNet_InputCount*: input objects it was made of (more than 1: a merge);
   *PixelsAdded*, *PixelsRemoved*: by the contour move; *BoundaryShift*: mean contour
   displacement in pixels, (added + removed) / contour length; *MeanProbability*: the mean
   U-Net nucleus probability over the object.

References
^^^^^^^^^^

-  Hollandi R, et al. (2020) "nucleAIzer: a parameter-free deep learning framework for nucleus
   segmentation using image style transfer." Cell Systems 10(5), 453-458.
-  Ronneberger O, Fischer P, Brox T (2015) "U-Net: convolutional networks for biomedical image
   segmentation." MICCAI 2015.
"""
import dataclasses

import numpy
from cellprofiler_core.constants.measurement import (
    COLTYPE_FLOAT, COLTYPE_INTEGER, IMAGE, MCA_AVAILABLE_EACH_CYCLE, R_PARENT,
)
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ObjectProcessing
from cellprofiler_core.object import Objects
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Directory, Float, ImageName, Integer

from nucleai import models
from nucleai.errors import InputError
from nucleai.refine import PUBLISHED, apply, params, rules, unet

from _batch_paths import BatchPathsMixin
from _failure_policy import FTR_STATUS, FailurePolicy, upgrade_with_failure_setting
from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM, ModelChoice
from _network_settings import FTR_PRECISION, NetworkSettings, upgrade_with_network_settings
from _options import channel_error, options_from_settings, typed_number, validate_before_run

CATEGORY = "RefineContoursUNet"
#: Image features: (feature, fate counted).
IMAGE_FATES = (("RemovedInside", "inside"), ("Merged", "merged"), ("RemovedSmall", "small"),
               ("RemovedVanished", "vanished"), ("RemovedLowProbability", "low_probability"))
FTR_MEAN_SHIFT = "MeanBoundaryShift"
#: Object features: (feature, column type, Refinement attribute; None: computed here).
OBJECT_FEATURES = (
    ("InputCount", COLTYPE_INTEGER, None),
    ("PixelsAdded", COLTYPE_INTEGER, "pixels_added"),
    ("PixelsRemoved", COLTYPE_INTEGER, "pixels_removed"),
    ("BoundaryShift", COLTYPE_FLOAT, "boundary_shift"),
    ("MeanProbability", COLTYPE_FLOAT, "mean_probability"),
)
#: The display's table rows per fate.
FATE_ROWS = (("Removed: inside another", "inside"), ("Merged into another", "merged"),
             ("Removed: small", "small"), ("Removed: vanished", "vanished"),
             ("Removed: low probability", "low_probability"))

DEFAULT_MODEL = "fluo_refine"

TILES_AUTO = "Automatic"
TILES_FIXED = "Fixed number of tiles"

#: Setting text and what the help adds to :data:`nucleai.refine.params.DESCRIPTIONS`, per parameter.
PARAMETER_SETTINGS = {
    "p1": ("Merge when a neighbour touches more than this share of the contour (p1)",
           "; 1 switches merging off"),
    "p2": ("Minimum object size, pixels (p2)", " (after merging)"),
    "p3": ("Probability threshold of the contour move (p3)", ": pixels above it count as nucleus"),
    "p4": ("Largest inward contour move, pixels (p4)", ", where the U-Net says background; 0 never shrinks"),
    "p5": ("Largest outward contour move, pixels (p5)", ", where the U-Net says nucleus; 0 never grows"),
    "p6": ("Minimum mean probability of an object (p6)", " (false detections)"),
}


def _bundled_choices(pipeline=None):
    return models.bundled_models(kind="unet") or [DEFAULT_MODEL]


def _parameter_setting(name):
    """The setting of one rule parameter; its limits are the backend's (:data:`params.LIMITS`)."""
    text, more = PARAMETER_SETTINGS[name]
    low, high = params.LIMITS[name]
    valid = f"at least {low}" if high is None else f"from {low} to {high}"
    setting_class = Integer if name in params.INTEGERS else Float
    return setting_class(text, PUBLISHED[name], minval=low, maxval=high, doc=f"""\
*(Used only when setting the parameters yourself)*

{params.DESCRIPTIONS[name].capitalize()}{more}. Valid values: {valid}; published value
{PUBLISHED[name]}.""")


class RefineContoursUNet(BatchPathsMixin, FailurePolicy, ModelChoice, NetworkSettings, ObjectProcessing):
    module_name = "RefineContoursUNet"
    MODEL_KIND = "unet"
    variable_revision_number = 3
    STATUS_CATEGORY = CATEGORY

    def create_settings(self):
        super().create_settings()
        self.x_name.text = "Select the input objects"
        self.x_name.doc = "Select the objects to refine, from any module that identifies nuclei."
        self.y_name.text = "Name the output objects"
        self.y_name.value = "RefinedNuclei"
        self.y_name.doc = "Enter the name for the refined objects (children of the input objects)."
        self.image_name = ImageSubscriber("Select the image the objects were found in", "None", doc="""\
Select the nuclear-stain image (DNA, DAPI, Hoechst) the input objects were identified in; the
U-Net predicts its nucleus probability map from it. It must have the objects' size.""")
        self.model_source = Choice("Refinement model", [MODEL_BUNDLED, MODEL_CUSTOM], value=MODEL_BUNDLED, doc=f"""\
Use a refinement model that ships with the plugins (*{MODEL_BUNDLED}*) or a folder of your own
(*{MODEL_CUSTOM}*, e.g. trained and tuned with the ``nucleai`` command line).""")
        self.bundled_model = Choice(
            "Bundled refinement model", _bundled_choices(), value=DEFAULT_MODEL, choices_fn=_bundled_choices,
            doc=f"""\
*(Used only for a bundled model)*

The refinement models in the plugins' ``models/`` folder (or the folder named by the environment
variable ``{models.MODELS_DIR_ENV}``). *{DEFAULT_MODEL}* is trained on fluorescence nuclei.""")
        self.model_folder = Directory("Refinement model folder", value=f"{ABSOLUTE_FOLDER_NAME}|",
                                      allow_metadata=False, doc="""\
*(Used only for a custom model folder)*

A refinement model folder: ``config.json``, ``weights_best.h5`` (or ``weights_last.h5``) and
optionally ``refine.json``. It is checked when the pipeline is validated.""")
        self.channel = Integer("Channel to use for colour images", 1, minval=1, doc="""\
*(Used only when the image has several channels and the model takes one)*

The channel the U-Net sees, counted from 1 (1 = red, 2 = green, 3 = blue).""")
        self.use_model_parameters = Binary("Use the model's tuned parameters?", True, doc="""\
Refinement models store the rule parameters p1 ... p6 tuned on their validation images
(``refine.json``; the published nucleAIzer values when it is missing). Select *No* to set them
yourself below: the six fields then start from the model's values (as they are when you switch),
so you adjust the tuned parameters rather than start over from the published ones.""")
        for name in params.NAMES:
            setattr(self, name, _parameter_setting(name))
        self.tiling = Choice("Tiling", [TILES_AUTO, TILES_FIXED], value=TILES_AUTO, doc=f"""\
Large images are predicted in overlapping tiles to bound memory; the result is the same.

-  *{TILES_AUTO}:* tiles of at most {unet.TILE_SIDE} pixels per side.
-  *{TILES_FIXED}:* the number of tiles given below.""")
        self.tiles_y = Integer("Tiles along Y", 2, minval=1, doc="""\
*(Used only with a fixed number of tiles)* Number of tiles from top to bottom.""")
        self.tiles_x = Integer("Tiles along X", 2, minval=1, doc="""\
*(Used only with a fixed number of tiles)* Number of tiles from left to right.""")
        self.save_probability = Binary("Save the probability map as an image?", False, doc="""\
Select *Yes* to make the U-Net's nucleus probability map (0 to 1, the image's size) available to
later modules, e.g. to save it with **SaveImages**.""")
        self.probability_name = ImageName("Name the probability image", "NucleusProbability", doc="""\
*(Used only when saving the probability map)* Name for the probability image.""")
        self.create_network_settings()
        self.create_failure_setting()

    def parameter_settings(self):
        """p1 ... p6, in order."""
        return [getattr(self, name) for name in params.NAMES]

    def settings(self):
        return [self.x_name, self.y_name, self.image_name, self.model_source, self.bundled_model,
                self.model_folder, self.channel, self.use_model_parameters, *self.parameter_settings(),
                self.tiling, self.tiles_y, self.tiles_x, self.save_probability, self.probability_name,
                self.on_failure, *self.network_settings()]

    def visible_settings(self):
        result = [self.x_name, self.y_name, self.image_name, self.model_source]
        result.append(self.bundled_model if self.model_source == MODEL_BUNDLED else self.model_folder)
        result += [self.channel, self.use_model_parameters]
        if not self.use_model_parameters:
            result += self.parameter_settings()
        result.append(self.tiling)
        if self.tiling == TILES_FIXED:
            result += [self.tiles_y, self.tiles_x]
        result.append(self.save_probability)
        if self.save_probability:
            result.append(self.probability_name)
        return result + self.network_settings() + [self.on_failure]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 2 added "When an image cannot be processed", 3 the precision and GPU memory.
        setting_values, variable_revision_number = upgrade_with_failure_setting(
            setting_values, variable_revision_number, 1)
        return upgrade_with_network_settings(setting_values, variable_revision_number, 2)

    def status_subject(self):
        return self.y_name.value

    def volumetric(self):
        return False

    def on_setting_changed(self, setting, pipeline):
        """Switching to one's own parameters starts them from the model's tuned values."""
        if setting is self.use_model_parameters and not self.use_model_parameters.value:
            try:
                tuned = self._model_spec().params
            except InputError:
                return  # no usable model chosen yet: the fields keep their values
            for name in params.NAMES:
                getattr(self, name).value = tuned[name]

    def refine_options(self):
        """The backend's RefineOptions of the settings, as typed; ValidationError names the
        setting at fault (the ranges are checked there, once)."""
        def build():
            given = {} if self.use_model_parameters else {
                name: typed_number(setting) for name, setting in zip(params.NAMES, self.parameter_settings())}
            tiles = "auto" if self.tiling == TILES_AUTO else (typed_number(self.tiles_y), typed_number(self.tiles_x))
            channel = typed_number(self.channel)
            channel = channel - 1 if isinstance(channel, int) else channel  # counted from 1 here
            return apply.RefineOptions(**given, tiles=tiles, channel=channel)

        setting_for_field = dict(zip(params.NAMES, self.parameter_settings()), channel=self.channel,
                                 tiles=self.tiles_y)
        return options_from_settings(build, setting_for_field, self.x_name)

    def validate_module(self, pipeline):
        """Check the options and the model folder (files and refine.json, no TensorFlow)."""
        self.refine_options()
        try:
            self._model_spec()
        except InputError as error:
            setting = self._model_setting()
            raise ValidationError(f"setting '{setting.text}': {error}", setting) from error

    def prepare_run(self, workspace):
        """Validate here too: a headless run calls no validate_module, and must not start."""
        return validate_before_run(self, workspace.pipeline)

    def run(self, workspace):
        options = self.refine_options()
        image = workspace.image_set.get_image(self.image_name.value)
        if image.volumetric:
            raise InputError(f"{self.module_name}: '{self.image_name.value}' is a 3-D image; 2-D only")
        input_objects = workspace.object_set.get_objects(self.x_name.value)
        labels, pixels = input_objects.segmented, image.pixel_data
        try:
            model = self._load_model()
        except InputError as error:
            raise self._model_error(error) from error
        if not (pixels.ndim == 3 and model.spec.n_channel_in == 1):
            options = dataclasses.replace(options, channel=None)  # the channel setting does not apply

        def refine():
            if labels.shape != pixels.shape[:2]:
                raise InputError(
                    f"objects '{self.x_name.value}' are {labels.shape[0]}x{labels.shape[1]} but image "
                    f"'{self.image_name.value}' is {pixels.shape[0]}x{pixels.shape[1]} (settings "
                    f"'{self.x_name.text}' and '{self.image_name.text}')"
                )
            try:
                return apply.refine_image(pixels, labels, model, options)
            except InputError as error:
                if error.field != "channel":
                    raise
                raise channel_error(self.channel, options.channel, pixels.shape[2]) from error

        result = self.process_or_flag(workspace, self.image_name.value, refine)
        self.add_precision(workspace)
        if result is None:  # flagged: no objects
            no_nuclei = numpy.zeros(labels.shape, numpy.float32)
            refinement = rules.refine(numpy.zeros(labels.shape, numpy.uint16), no_nuclei,
                                      options.parameters(model.spec.params))
            result = apply.RefinedImage(refinement=refinement, prob=no_nuclei)
        refinement = result.refinement

        output_objects = Objects()
        output_objects.segmented = refinement.labels
        output_objects.parent_image = image
        workspace.object_set.add_objects(output_objects, self.y_name.value)
        self.add_measurements(workspace)
        self.add_refinement_measurements(workspace.measurements, refinement)
        if self.save_probability:
            workspace.image_set.add(self.probability_name.value, Image(result.prob, parent_image=image))

        if self.show_window:
            counts = refinement.counts()
            workspace.display_data.image = pixels
            workspace.display_data.prob = result.prob
            workspace.display_data.input_labels = labels
            workspace.display_data.output_labels = refinement.labels
            workspace.display_data.statistics = [
                ("Input objects", str(counts["input"])), ("Output objects", str(counts["output"])),
                *[(label, str(counts[fate])) for label, fate in FATE_ROWS],
                ("Mean boundary shift (px)", f"{refinement.mean_boundary_shift:.2f}"),
                ("Parameters", ", ".join(f"{k} {v:g}" for k, v in refinement.params.items())),
                ("Model", model.name),
            ]

    def add_refinement_measurements(self, m, refinement):
        """What the rules did, beside ObjectProcessing's measurements (count, location, parents):
        per image the fates, per output object its sources and changes, and the relationship of
        every input object to the output object holding it (all members of a merge)."""
        x_name, y_name = self.x_name.value, self.y_name.value
        related = refinement.output_of > 0
        if related.any():
            image_numbers = numpy.full(int(related.sum()), m.image_set_number, int)
            m.add_relate_measurement(
                self.module_num, R_PARENT, x_name, y_name,
                image_numbers, refinement.input_ids[related].astype(int),
                image_numbers, refinement.output_of[related].astype(int),
            )
        counts = refinement.counts()
        for feature, fate in IMAGE_FATES:
            m.add_measurement(IMAGE, f"{CATEGORY}_{feature}_{y_name}", counts[fate])
        m.add_measurement(IMAGE, f"{CATEGORY}_{FTR_MEAN_SHIFT}_{y_name}", refinement.mean_boundary_shift)
        input_count = numpy.bincount(refinement.output_of, minlength=refinement.count + 1)[1:]
        for feature, coltype, attribute in OBJECT_FEATURES:
            values = input_count if attribute is None else getattr(refinement, attribute)
            dtype = int if coltype == COLTYPE_INTEGER else float
            m.add_measurement(y_name, f"{CATEGORY}_{feature}", numpy.asarray(values, dtype))

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 2))
        title = f"{self.x_name.value}, cycle #{workspace.measurements.image_number}"
        colour = data.image.ndim == 3
        show = figure.subplot_imshow_color if colour else figure.subplot_imshow_grayscale
        extra = {"normalize": True} if colour else {}
        before = [dict(name=self.x_name.value, labels=[data.input_labels])]
        ax = show(0, 0, data.image, title, cplabels=before, **extra)
        figure.subplot_imshow_grayscale(
            1, 0, data.prob, "U-Net nucleus probability", normalize=False, vmin=0, vmax=1, sharexy=ax,
        )
        after = [dict(name=self.y_name.value, labels=[data.output_labels])]
        show(0, 1, data.image, f"{self.y_name.value} (refined)", cplabels=after, sharexy=ax, **extra)
        figure.subplot_table(
            1, 1, [[value] for _, value in data.statistics], row_labels=[name for name, _ in data.statistics],
        )

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        if object_name in (IMAGE, self.y_name.value):
            categories = categories + [CATEGORY]
        return categories

    def get_measurements(self, pipeline, object_name, category):
        if category == CATEGORY:
            if object_name == IMAGE:
                return [feature for feature, _ in IMAGE_FATES] + [FTR_MEAN_SHIFT, FTR_STATUS, FTR_PRECISION]
            if object_name == self.y_name.value:
                return [feature for feature, _, _ in OBJECT_FEATURES]
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == CATEGORY:
            return [self.y_name.value]
        return []

    def get_measurement_columns(self, pipeline, additional_objects=None):
        y_name = self.y_name.value
        columns = super().get_measurement_columns(pipeline, additional_objects)
        columns += [(IMAGE, f"{CATEGORY}_{feature}_{y_name}", COLTYPE_INTEGER) for feature, _ in IMAGE_FATES]
        columns += [(IMAGE, f"{CATEGORY}_{FTR_MEAN_SHIFT}_{y_name}", COLTYPE_FLOAT), self.status_column(),
                    self.precision_column()]
        columns += [(y_name, f"{CATEGORY}_{feature}", coltype) for feature, coltype, _ in OBJECT_FEATURES]
        return columns

    def get_object_relationships(self, pipeline):
        return [(R_PARENT, self.x_name.value, self.y_name.value, MCA_AVAILABLE_EACH_CYCLE)]
