"""
RefineContoursUNet
==================

**RefineContoursUNet** corrects the outlines of objects found by any upstream module
(**RunStarConvex**, **IdentifyPrimaryObjects**, ...) with a U-Net probability map and the
contour-refinement rules of nucleAIzer (Hollandi et al., Cell Systems 2020). Star-convex polygons
and intensity thresholds both miss true nucleus boundaries; a U-Net trained to classify every
pixel as background, nucleus or nucleus boundary knows them better, and a few rules move the
objects to it.

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
A refinement model is a folder: ``config.json`` (a U-Net, ``"kind": "unet"``),
``weights_best.h5``, and ``refine.json`` with p1 ... p6 tuned on the model's validation images
(``nucleai refine --tune``; without it the published values 0.17, 44, 0.9375, 1, 1, 0.8 apply).
The suite ships *fluo_refine* for fluorescence nuclei (``models/fluo_refine/MODEL.md``). Tune the
parameters on a few annotated images of your own with ``nucleai refine --tune`` for best results.

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
   objects removed by rule 1, merged into another object by rule 2, removed by rules 3, 4 (left
   without pixels) and 5.
-  *MeanBoundaryShift*: the mean over the output objects of their boundary shift (below).
-  *Count*: the number of output objects (as every object-creating module).

**Object measurements** of the output objects:

-  *Location_X, Location_Y*, *Number_Object_Number*, and *Parent_<input objects>*: the input
   object each output object is named after (for a merge, its largest member). The relationship
   table lists every input object of a merge as a parent; the input objects get
   *Children_<output objects>_Count* (1, or 0 when removed).
-  *RefineContoursUNet_InputCount*: input objects it was made of (more than 1: a merge).
-  *RefineContoursUNet_PixelsAdded*, *RefineContoursUNet_PixelsRemoved*: pixels the contour move
   added and removed.
-  *RefineContoursUNet_BoundaryShift*: mean contour displacement in pixels, (added + removed) /
   contour length.
-  *RefineContoursUNet_MeanProbability*: the mean U-Net nucleus probability over the object.

References
^^^^^^^^^^

-  Hollandi R, et al. (2020) "nucleAIzer: a parameter-free deep learning framework for nucleus
   segmentation using image style transfer." Cell Systems 10(5), 453-458.
-  Ronneberger O, Fischer P, Brox T (2015) "U-Net: convolutional networks for biomedical image
   segmentation." MICCAI 2015.
"""
import numpy
from cellprofiler_core.constants.measurement import (
    COLTYPE_FLOAT,
    COLTYPE_INTEGER,
    FF_CHILDREN_COUNT,
    FF_PARENT,
    IMAGE,
    MCA_AVAILABLE_EACH_CYCLE,
    R_PARENT,
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

from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM, ModelChoice
from nucleai.refine import PUBLISHED, apply, params, unet

CATEGORY = "RefineContoursUNet"
#: Image features: (feature, fate counted).
IMAGE_FATES = (
    ("RemovedInside", "inside"),
    ("Merged", "merged"),
    ("RemovedSmall", "small"),
    ("RemovedVanished", "vanished"),
    ("RemovedLowProbability", "low_probability"),
)
FTR_MEAN_SHIFT = "MeanBoundaryShift"
#: Object features: (feature, column type).
OBJECT_FEATURES = (
    ("InputCount", COLTYPE_INTEGER),
    ("PixelsAdded", COLTYPE_INTEGER),
    ("PixelsRemoved", COLTYPE_INTEGER),
    ("BoundaryShift", COLTYPE_FLOAT),
    ("MeanProbability", COLTYPE_FLOAT),
)

DEFAULT_MODEL = "fluo_refine"

TILES_AUTO = "Automatic"
TILES_FIXED = "Fixed number of tiles"


def _bundled_choices(pipeline=None):
    return models.bundled_models(kind="unet") or [DEFAULT_MODEL]


class RefineContoursUNet(ModelChoice, ObjectProcessing):
    module_name = "RefineContoursUNet"
    variable_revision_number = 1

    def create_settings(self):
        super().create_settings()
        self.x_name.text = "Select the input objects"
        self.x_name.doc = """\
Select the objects to refine, from any module that identifies nuclei (RunStarConvex,
IdentifyPrimaryObjects, ...)."""
        self.y_name.text = "Name the output objects"
        self.y_name.value = "RefinedNuclei"
        self.y_name.doc = """\
Enter the name for the refined objects. They are children of the input objects (each output
object records the input object it came from)."""
        self.image_name = ImageSubscriber(
            "Select the image the objects were found in",
            "None",
            doc="""\
Select the nuclear-stain image (DNA, DAPI, Hoechst) the input objects were identified in; the
U-Net predicts its nucleus probability map from it. It must have the objects' size.""",
        )
        self.model_source = Choice(
            "Refinement model",
            [MODEL_BUNDLED, MODEL_CUSTOM],
            value=MODEL_BUNDLED,
            doc=f"""\
Use a refinement model that ships with the plugins (*{MODEL_BUNDLED}*) or a folder of your own
(*{MODEL_CUSTOM}*, e.g. trained and tuned with the ``nucleai`` command line): ``config.json``
(a U-Net), ``weights_best.h5`` and optionally ``refine.json`` with the tuned parameters.""",
        )
        self.bundled_model = Choice(
            "Bundled refinement model",
            _bundled_choices(),
            value=DEFAULT_MODEL,
            choices_fn=_bundled_choices,
            doc=f"""\
*(Used only for a bundled model)*

The refinement models in the plugins' ``models/`` folder (or the folder named by the environment
variable ``{models.MODELS_DIR_ENV}``). *{DEFAULT_MODEL}* is trained on fluorescence nuclei.""",
        )
        self.model_folder = Directory(
            "Refinement model folder",
            value=f"{ABSOLUTE_FOLDER_NAME}|",
            allow_metadata=False,
            doc="""\
*(Used only for a custom model folder)*

A refinement model folder: ``config.json``, ``weights_best.h5`` (or ``weights_last.h5``) and
optionally ``refine.json``. It is checked when the pipeline is validated.""",
        )
        self.channel = Integer(
            "Channel to use for colour images",
            1,
            minval=1,
            doc="""\
*(Used only when the image has several channels and the model takes one)*

The channel the U-Net sees, counted from 1 (1 = red, 2 = green, 3 = blue).""",
        )
        self.use_model_parameters = Binary(
            "Use the model's tuned parameters?",
            True,
            doc="""\
Refinement models store the rule parameters p1 ... p6 tuned on their validation images
(``refine.json``; the published nucleAIzer values when it is missing). Select *No* to set them
yourself below.""",
        )
        self.p1 = Float(
            "Merge when a neighbour touches more than this share of the contour (p1)",
            PUBLISHED["p1"], minval=0.0, maxval=1.0,
            doc=f"""\
*(Used only when setting the parameters yourself)*

An object whose contour touches one neighbouring object along more than this fraction of its
length is merged with it (1 switches merging off). {params.DESCRIPTIONS['p1'].capitalize()};
published value {PUBLISHED['p1']}.""",
        )
        self.p2 = Integer(
            "Minimum object size, pixels (p2)", PUBLISHED["p2"], minval=0,
            doc=f"""\
*(Used only when setting the parameters yourself)*

Objects with fewer pixels are removed (after merging). Published value {PUBLISHED['p2']}.""",
        )
        self.p3 = Float(
            "Probability threshold of the contour move (p3)",
            PUBLISHED["p3"], minval=0.0, maxval=1.0,
            doc=f"""\
*(Used only when setting the parameters yourself)*

Pixels whose U-Net nucleus probability exceeds this count as nucleus when contours are moved.
Published value {PUBLISHED['p3']}.""",
        )
        self.p4 = Integer(
            "Largest inward contour move, pixels (p4)", PUBLISHED["p4"], minval=0, maxval=params.MAX_BAND,
            doc=f"""\
*(Used only when setting the parameters yourself)*

Object pixels at most this far from the contour are dropped when the U-Net says background.
0 never shrinks an object. Published value {PUBLISHED['p4']}.""",
        )
        self.p5 = Integer(
            "Largest outward contour move, pixels (p5)", PUBLISHED["p5"], minval=0, maxval=params.MAX_BAND,
            doc=f"""\
*(Used only when setting the parameters yourself)*

Background pixels at most this far from an object are added to the nearest object when the
U-Net says nucleus. 0 never grows an object. Published value {PUBLISHED['p5']}.""",
        )
        self.p6 = Float(
            "Minimum mean probability of an object (p6)",
            PUBLISHED["p6"], minval=0.0, maxval=1.0,
            doc=f"""\
*(Used only when setting the parameters yourself)*

Objects whose mean U-Net nucleus probability is below this are removed (false detections).
Published value {PUBLISHED['p6']}.""",
        )
        self.tiling = Choice(
            "Tiling",
            [TILES_AUTO, TILES_FIXED],
            value=TILES_AUTO,
            doc=f"""\
Large images are predicted in overlapping tiles to bound memory; the result is the same.

-  *{TILES_AUTO}:* tiles of at most {unet.TILE_SIDE} pixels per side.
-  *{TILES_FIXED}:* the number of tiles given below.""",
        )
        self.tiles_y = Integer(
            "Tiles along Y", 2, minval=1,
            doc="*(Used only with a fixed number of tiles)* Number of tiles from top to bottom.",
        )
        self.tiles_x = Integer(
            "Tiles along X", 2, minval=1,
            doc="*(Used only with a fixed number of tiles)* Number of tiles from left to right.",
        )
        self.save_probability = Binary(
            "Save the probability map as an image?",
            False,
            doc="""\
Select *Yes* to make the U-Net's nucleus probability map (0 to 1, the image's size) available to
later modules, e.g. to save it with **SaveImages**.""",
        )
        self.probability_name = ImageName(
            "Name the probability image",
            "NucleusProbability",
            doc="*(Used only when saving the probability map)* Name for the probability image.",
        )

    def settings(self):
        return [
            self.x_name,
            self.y_name,
            self.image_name,
            self.model_source,
            self.bundled_model,
            self.model_folder,
            self.channel,
            self.use_model_parameters,
            self.p1,
            self.p2,
            self.p3,
            self.p4,
            self.p5,
            self.p6,
            self.tiling,
            self.tiles_y,
            self.tiles_x,
            self.save_probability,
            self.probability_name,
        ]

    def visible_settings(self):
        result = [self.x_name, self.y_name, self.image_name, self.model_source]
        result.append(self.bundled_model if self.model_source == MODEL_BUNDLED else self.model_folder)
        result += [self.channel, self.use_model_parameters]
        if not self.use_model_parameters:
            result += [self.p1, self.p2, self.p3, self.p4, self.p5, self.p6]
        result.append(self.tiling)
        if self.tiling == TILES_FIXED:
            result += [self.tiles_y, self.tiles_x]
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
        """Check the model folder (files and refine.json, no TensorFlow) before anything runs."""
        try:
            unet.read_unet_spec(self._model_location())
        except InputError as error:
            raise ValidationError(str(error), self._model_setting())

    def _parameters(self):
        """The parameters the user set, or None to use the model's."""
        if self.use_model_parameters:
            return None
        return {name: getattr(self, name).value for name in params.NAMES}

    # ----------------------------------------------------------------------------------------
    # run

    def run(self, workspace):
        image = workspace.image_set.get_image(self.image_name.value)
        if image.volumetric:
            raise InputError(f"{self.module_name}: '{self.image_name.value}' is a 3-D image; 2-D images only")
        input_objects = workspace.object_set.get_objects(self.x_name.value)
        labels = input_objects.segmented
        pixels = image.pixel_data
        if labels.shape != pixels.shape[:2]:
            raise InputError(
                f"{self.module_name}: objects '{self.x_name.value}' are {labels.shape[0]}x{labels.shape[1]} "
                f"but image '{self.image_name.value}' is {pixels.shape[0]}x{pixels.shape[1]} "
                f"(settings '{self.x_name.text}' and '{self.image_name.text}')"
            )
        try:
            model = unet.load_unet(self._model_location())
        except InputError as error:
            raise self._model_error(error) from error
        n_in = int(model.spec.config["n_channel_in"])
        channel = self.channel.value - 1 if pixels.ndim == 3 and n_in == 1 else None
        tiles = "auto" if self.tiling == TILES_AUTO else (self.tiles_y.value, self.tiles_x.value)
        try:
            result = apply.refine_image(pixels, labels, model, params=self._parameters(), tiles=tiles,
                                        channel=channel)
        except InputError as error:
            raise InputError(
                f"{self.module_name}: image '{self.image_name.value}', objects '{self.x_name.value}': "
                f"{error}"
            ) from error
        refinement = result.refinement

        output_objects = Objects()
        output_objects.segmented = refinement.labels
        output_objects.parent_image = image
        workspace.object_set.add_objects(output_objects, self.y_name.value)
        self.add_measurements(workspace, input_objects=input_objects, refinement=refinement)
        if self.save_probability:
            workspace.image_set.add(self.probability_name.value, Image(result.prob, parent_image=image))

        if self.show_window:
            counts = refinement.counts()
            workspace.display_data.image = pixels
            workspace.display_data.prob = result.prob
            workspace.display_data.input_labels = labels
            workspace.display_data.output_labels = refinement.labels
            workspace.display_data.statistics = [
                ("Input objects", str(counts["input"])),
                ("Output objects", str(counts["output"])),
                ("Removed: inside another", str(counts["inside"])),
                ("Merged into another", str(counts["merged"])),
                ("Removed: small", str(counts["small"])),
                ("Removed: vanished", str(counts["vanished"])),
                ("Removed: low probability", str(counts["low_probability"])),
                ("Mean boundary shift (px)", f"{refinement.mean_boundary_shift:.2f}"),
                ("Parameters", ", ".join(f"{k} {v:g}" for k, v in refinement.params.items())),
                ("Model", model.name),
            ]

    def add_measurements(self, workspace, input_objects=None, refinement=None):
        """Standard object measurements plus parents, children and what the rules changed.

        Parents come from the refinement's provenance, not from pixel overlap: an output object
        grown over a removed neighbour's pixels is still the child of its own input object.
        """
        x_name, y_name = self.x_name.value, self.y_name.value
        super(ObjectProcessing, self).add_measurements(workspace, y_name)
        m = workspace.measurements
        input_ids = refinement.input_ids
        n_input = max(int(input_objects.count), int(input_ids.max()) if len(input_ids) else 0)
        children = numpy.zeros(n_input, int)
        children[input_ids[refinement.output_of > 0] - 1] = 1
        m.add_measurement(x_name, FF_CHILDREN_COUNT % y_name, children)
        m.add_measurement(y_name, FF_PARENT % x_name, refinement.parents.astype(int))
        related = refinement.output_of > 0
        if related.any():
            image_numbers = numpy.full(int(related.sum()), m.image_set_number, int)
            m.add_relate_measurement(
                self.module_num, R_PARENT, x_name, y_name,
                image_numbers, input_ids[related].astype(int),
                image_numbers, refinement.output_of[related].astype(int),
            )
        counts = refinement.counts()
        for feature, fate in IMAGE_FATES:
            m.add_measurement(IMAGE, f"{CATEGORY}_{feature}_{y_name}", counts[fate])
        m.add_measurement(IMAGE, f"{CATEGORY}_{FTR_MEAN_SHIFT}_{y_name}", refinement.mean_boundary_shift)
        input_count = numpy.bincount(refinement.output_of, minlength=refinement.count + 1)[1:]
        values = {
            "InputCount": input_count,
            "PixelsAdded": refinement.pixels_added,
            "PixelsRemoved": refinement.pixels_removed,
            "BoundaryShift": refinement.boundary_shift,
            "MeanProbability": refinement.mean_probability,
        }
        for feature, coltype in OBJECT_FEATURES:
            dtype = int if coltype == COLTYPE_INTEGER else float
            m.add_measurement(y_name, f"{CATEGORY}_{feature}", numpy.asarray(values[feature], dtype))

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 2))
        title = f"{self.x_name.value}, cycle #{workspace.measurements.image_number}"
        colour = data.image.ndim == 3
        show = figure.subplot_imshow_color if colour else figure.subplot_imshow_grayscale
        before = [dict(name=self.x_name.value, labels=[data.input_labels])]
        ax = show(0, 0, data.image, title, cplabels=before, **({"normalize": True} if colour else {}))
        figure.subplot_imshow_grayscale(
            1, 0, data.prob, "U-Net nucleus probability", normalize=False, vmin=0, vmax=1, sharexy=ax,
        )
        after = [dict(name=self.y_name.value, labels=[data.output_labels])]
        show(0, 1, data.image, f"{self.y_name.value} (refined)", cplabels=after, sharexy=ax,
             **({"normalize": True} if colour else {}))
        figure.subplot_table(
            1, 1, [[value] for _, value in data.statistics],
            row_labels=[name for name, _ in data.statistics],
        )

    # ----------------------------------------------------------------------------------------
    # measurement declarations

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        if object_name in (IMAGE, self.y_name.value):
            categories = categories + [CATEGORY]
        return categories

    def get_measurements(self, pipeline, object_name, category):
        if category == CATEGORY:
            if object_name == IMAGE:
                return [feature for feature, _ in IMAGE_FATES] + [FTR_MEAN_SHIFT]
            if object_name == self.y_name.value:
                return [feature for feature, _ in OBJECT_FEATURES]
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == CATEGORY:
            return [self.y_name.value]
        return []

    def get_measurement_columns(self, pipeline, additional_objects=None):
        y_name = self.y_name.value
        columns = super().get_measurement_columns(pipeline, additional_objects)
        columns += [(IMAGE, f"{CATEGORY}_{feature}_{y_name}", COLTYPE_INTEGER) for feature, _ in IMAGE_FATES]
        columns.append((IMAGE, f"{CATEGORY}_{FTR_MEAN_SHIFT}_{y_name}", COLTYPE_FLOAT))
        columns += [(y_name, f"{CATEGORY}_{feature}", coltype) for feature, coltype in OBJECT_FEATURES]
        return columns

    def get_object_relationships(self, pipeline):
        return [(R_PARENT, self.x_name.value, self.y_name.value, MCA_AVAILABLE_EACH_CYCLE)]
