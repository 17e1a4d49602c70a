"""
TTAMerge
========

**TTAMerge** merges several segmentations of the same image into one by matching the objects
and voting, the test-time augmentation (TTA) method of Moshkov et al. (Scientific Reports
2020). It works in one of two modes:

-  *Segment with test-time augmentation:* a star-convex model (as in **RunStarConvex**) segments
   the image several times, flipped and rotated; each result is turned back and the versions
   are merged. This takes one prediction per transform and usually gives more accurate
   objects than one prediction (on the DSB validation images the bundled model's DSB score
   rises from 0.619 to 0.635 with the default six transforms).
-  *Merge object sets:* two or more object sets made by earlier modules (for example
   **RunStarConvex** and **IdentifyPrimaryObjects**, or two models) are merged into one.

How versions are merged: objects of two versions are the same object when their masks overlap
with an intersection over union (IoU) of at least 0.5 (each the other's best match). An
object is kept when enough versions found it (by default at least half of them: 3 of 6
transforms; 1 of 2 object sets, i.e. every object either set found, with the matched ones
combined; choose *More than half* or *Every version* for a consensus). Its outline is a
per-pixel vote: a pixel belongs to the object when at least half of the versions that found
the object cover it. Merged objects never overlap.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:**

-  *Count:* the number of merged objects.

**Object measurements:**

-  *Location\\_X, Location\\_Y:* the centre of mass of each object.
-  *Number\\_Object\\_Number:* the object's label number.
-  *TTAMerge\\_Votes:* how many versions (transforms or object sets) found the object.
-  *TTAMerge\\_MeanIoU:* the mean IoU of those versions' masks with the merged mask, between 0
   and 1 (1: every version drew the same outline). Low votes or a low mean IoU mark objects
   the versions disagree on.
-  *Parent\\_<input objects>* (merging object sets only): the object of each input set that
   overlaps the merged object most (0 if none); the input objects get
   *Children\\_<merged objects>\\_Count*.

References
^^^^^^^^^^

-  Moshkov N, Mathe B, Kertesz-Farkas A, Hollandi R, Horvath P (2020) "Test-time augmentation
   for deep learning-based cell segmentation on microscopy images." Scientific Reports 10, 5068.
-  Schmidt U, Weigert M, Broaddus C, Myers G (2018) "Cell Detection with Star-Convex Polygons."
   MICCAI 2018.
"""
import numpy
from cellprofiler_core.constants.measurement import (
    C_CHILDREN,
    C_PARENT,
    COLTYPE_FLOAT,
    COLTYPE_INTEGER,
    FF_CHILDREN_COUNT,
    FF_PARENT,
    MCA_AVAILABLE_EACH_CYCLE,
    R_PARENT,
)
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ImageSegmentation
from cellprofiler_core.object import Objects
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.multichoice import MultiChoice
from cellprofiler_core.setting.subscriber import LabelListSubscriber
from cellprofiler_core.setting.text import Directory, Float, ImageName, Integer

from nucleai import models, predict, tta
from nucleai.errors import InputError

from _model_choice import MODEL_BUNDLED, MODEL_CUSTOM, ModelChoice

#: Category of this module's own measurements.
CATEGORY = "TTAMerge"
FTR_VOTES = "Votes"
FTR_MEAN_IOU = "MeanIoU"
M_VOTES = f"{CATEGORY}_{FTR_VOTES}"
M_MEAN_IOU = f"{CATEGORY}_{FTR_MEAN_IOU}"

MODE_TTA = "Segment with test-time augmentation"
MODE_MERGE = "Merge object sets"


VOTES_HALF = "At least half of the versions"
VOTES_MORE = "More than half of the versions"
VOTES_ALL = "Every version"
VOTES_NUMBER = "A given number of versions"


def _bundled_choices(pipeline=None):
    return models.bundled_models() or [models.DEFAULT_MODEL]


class TTAMerge(ModelChoice, ImageSegmentation):
    module_name = "TTAMerge"
    variable_revision_number = 1

    def create_settings(self):
        super().create_settings()
        self.mode = Choice(
            "Mode",
            [MODE_TTA, MODE_MERGE],
            value=MODE_TTA,
            doc=f"""\
-  *{MODE_TTA}:* segment an image with a star-convex model under flips and rotations and merge
   the versions (one prediction per transform).
-  *{MODE_MERGE}:* merge two or more object sets identified by earlier modules.""",
        )
        self.x_name.doc = f"""\
*(Used only for {MODE_TTA.lower()})*

Select the image to segment, typically a nuclear stain. For a colour or multi-channel image,
set the channel below."""
        self.object_names = LabelListSubscriber(
            "Select the objects to merge",
            [],
            doc=f"""\
*(Used only when merging object sets)*

Two or more object sets of the same image, for example from **RunStarConvex** and
**IdentifyPrimaryObjects**. Each set is one vote.""",
        )
        self.y_name.value = "Nuclei"
        self.y_name.doc = "Enter the name for the merged objects."

        self.model_source = Choice(
            "Model",
            [MODEL_BUNDLED, MODEL_CUSTOM],
            value=MODEL_BUNDLED,
            doc=f"""\
*(Used only for {MODE_TTA.lower()})*

Use a model that ships with the plugins (*{MODEL_BUNDLED}*) or a model folder of your own
(*{MODEL_CUSTOM}*): any 2-D model trained with the ``stardist`` Python package (``config.json``,
``thresholds.json``, ``weights_best.h5``), as in **RunStarConvex**.""",
        )
        self.bundled_model = Choice(
            "Bundled model",
            _bundled_choices(),
            value=models.DEFAULT_MODEL,
            choices_fn=_bundled_choices,
            doc=f"""\
*(Used only for a bundled model)*

The folders in the plugins' ``models/`` folder (or in ``{models.MODELS_DIR_ENV}``).
*{models.DEFAULT_MODEL}* segments nuclei in fluorescence images.""",
        )
        self.model_folder = Directory(
            "Model folder",
            value=f"{ABSOLUTE_FOLDER_NAME}|",
            allow_metadata=False,
            doc="*(Used only for a custom model folder)* The folder of a StarDist-type model.",
        )
        self.channel = Integer(
            "Channel to use for colour images",
            1,
            minval=1,
            doc="""\
*(Used only when the input image has several channels and the model takes one)*

The channel to segment, counted from 1 (1 = red, 2 = green, 3 = blue).""",
        )
        self.use_model_thresholds = Binary(
            "Use the model's tuned thresholds?",
            True,
            doc="""\
*(Used only for test-time augmentation)*

Use the probability and overlap thresholds stored with the model (``thresholds.json``), or set
them yourself (see **RunStarConvex**).""",
        )
        self.prob_thresh = Float(
            "Probability threshold",
            models.DEFAULT_PROB_THRESH,
            minval=0.001,
            maxval=0.999,
            doc="*(Used only when not using the model's thresholds)* Pixels with an object "
            "probability above this propose an object.",
        )
        self.nms_thresh = Float(
            "Overlap threshold",
            models.DEFAULT_NMS_THRESH,
            minval=0.001,
            maxval=0.999,
            doc="*(Used only when not using the model's thresholds)* Of two proposed objects "
            "overlapping by more than this, only the more probable is kept.",
        )
        self.transforms = MultiChoice(
            "Transforms",
            list(tta.TRANSFORMS),
            value=list(tta.PAPER_TRANSFORMS),
            doc=f"""\
*(Used only for test-time augmentation)*

The versions of the image to segment; each costs one prediction. *identity* is the image as it
is, *flip_y* upside down, *flip_x* mirrored left-right, *rot90*/*rot180*/*rot270* rotated
counter-clockwise, *transpose*/*transverse* mirrored along a diagonal. The default is the
paper's set: {', '.join(tta.PAPER_TRANSFORMS)}.""",
        )
        self.vote_rule = Choice(
            "Keep objects found by",
            [VOTES_HALF, VOTES_MORE, VOTES_ALL, VOTES_NUMBER],
            value=VOTES_HALF,
            doc=f"""\
How many versions (transforms, or input object sets) must find an object for it to be kept.

-  *{VOTES_HALF}* (default): 3 of 6 transforms, 2 of 3 sets; with two object sets, every
   object either set found, matched objects combined. With six transforms this scored best
   on the DSB images (ties kept: the versions come from one network and more often miss a
   nucleus than invent one).
-  *{VOTES_MORE}:* a strict majority, 4 of 6; with two object sets, only objects both found.
-  *{VOTES_ALL}:* only objects every version found (the most conservative).
-  *{VOTES_NUMBER}:* the number given below.""",
        )
        self.min_votes = Integer(
            "Number of versions",
            2,
            minval=1,
            doc="*(Used only for a given number of versions)* Versions that must find an object.",
        )
        self.save_probability = Binary(
            "Save the averaged probability map as an image?",
            False,
            doc="""\
*(Used only for test-time augmentation)*

Select *Yes* to make the network's object probability map, averaged over the transforms (each
turned back first), available to later modules.""",
        )
        self.probability_name = ImageName(
            "Name the probability image",
            "NucleiProbability",
            doc="*(Used only when saving the probability map)* Name for the probability image.",
        )

    def settings(self):
        return [
            self.mode,
            self.x_name,
            self.object_names,
            self.y_name,
            self.model_source,
            self.bundled_model,
            self.model_folder,
            self.channel,
            self.use_model_thresholds,
            self.prob_thresh,
            self.nms_thresh,
            self.transforms,
            self.vote_rule,
            self.min_votes,
            self.save_probability,
            self.probability_name,
        ]

    def visible_settings(self):
        result = [self.mode]
        if self.mode == MODE_MERGE:
            result += [self.object_names, self.y_name]
        else:
            result += [self.x_name, self.y_name, self.model_source]
            result.append(
                self.bundled_model if self.model_source == MODEL_BUNDLED else self.model_folder
            )
            result += [self.channel, self.use_model_thresholds]
            if not self.use_model_thresholds:
                result += [self.prob_thresh, self.nms_thresh]
            result.append(self.transforms)
        result.append(self.vote_rule)
        if self.vote_rule == VOTES_NUMBER:
            result.append(self.min_votes)
        if self.mode == MODE_TTA:
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
    # settings -> backend parameters

    def _inputs(self):
        return list(self.object_names.value) if self.mode == MODE_MERGE else []

    def _versions_setting(self):
        return self.object_names if self.mode == MODE_MERGE else self.transforms

    def _n_versions(self):
        if self.mode == MODE_MERGE:
            return len(self.object_names.value)
        return len(self.transforms.selections)

    def _min_votes(self, n_versions):
        """Votes an object needs among ``n_versions``, from the vote rule."""
        if self.vote_rule == VOTES_HALF:
            return tta.default_min_votes(n_versions)
        if self.vote_rule == VOTES_MORE:
            return n_versions // 2 + 1
        if self.vote_rule == VOTES_ALL:
            return n_versions
        if self.min_votes.value > n_versions:
            raise InputError(
                f"{self.module_name}: setting '{self.min_votes.text}' is {self.min_votes.value} "
                f"but there are only {n_versions} versions (setting "
                f"'{self._versions_setting().text}')"
            )
        return self.min_votes.value

    def validate_module(self, pipeline):
        """Check the versions, the vote and (for TTA) the model folder before anything runs."""
        n_versions = self._n_versions()
        if self.mode == MODE_MERGE:
            if n_versions < 2:
                raise ValidationError("choose at least two object sets to merge", self.object_names)
            if self.y_name.value in self._inputs():
                raise ValidationError(
                    f"the merged objects need a new name; '{self.y_name.value}' is an input",
                    self.y_name,
                )
        else:
            if n_versions == 0:
                raise ValidationError("choose at least one transform", self.transforms)
            try:
                models.read_model_spec(self._model_location())
            except InputError as error:
                raise ValidationError(str(error), self._model_setting())
        try:
            self._min_votes(n_versions)
        except InputError as error:
            raise ValidationError(str(error), self.min_votes)

    # ----------------------------------------------------------------------------------------
    # run

    def run(self, workspace):
        if self.mode == MODE_MERGE:
            merged, parent_image, image = self._merge_objects(workspace)
            model_name, probability = None, None
        else:
            result, parent_image, image, model_name = self._segment_tta(workspace)
            merged, probability = result, result.prob_map

        objects = Objects()
        objects.segmented = merged.labels
        if parent_image is not None:
            objects.parent_image = parent_image
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        m = workspace.measurements
        m.add_measurement(self.y_name.value, M_VOTES, merged.votes.astype(int))
        m.add_measurement(self.y_name.value, M_MEAN_IOU, merged.mean_iou.astype(float))
        for name in self._inputs():
            self._relate(workspace, name, objects)
        if self.mode == MODE_TTA and self.save_probability:
            workspace.image_set.add(
                self.probability_name.value, Image(probability, parent_image=parent_image)
            )

        if self.show_window:
            n_versions = self._n_versions()
            votes_image = numpy.zeros(merged.labels.shape, float)
            votes_image[merged.labels > 0] = merged.votes[merged.labels[merged.labels > 0] - 1]
            versions = ", ".join(self._inputs() or self.transforms.selections)
            statistics = [
                ("Objects", str(merged.count)),
                ("Versions", f"{n_versions}: {versions}"),
                ("Kept when found by", f"{self._min_votes(n_versions)} of {n_versions}"),
                ("Mean votes", f"{merged.votes.mean():.2f}" if merged.count else "-"),
                ("Mean IoU", f"{merged.mean_iou.mean():.3f}" if merged.count else "-"),
            ]
            if model_name is not None:
                statistics.append(("Model", model_name))
            workspace.display_data.image = image
            workspace.display_data.labels = merged.labels
            workspace.display_data.votes = votes_image
            workspace.display_data.n_versions = n_versions
            workspace.display_data.statistics = statistics

    def _segment_tta(self, workspace):
        x = workspace.image_set.get_image(self.x_name.value)
        if x.volumetric:
            raise InputError(
                f"{self.module_name}: '{self.x_name.value}' is a 3-D image; TTAMerge segments "
                "2-D images"
            )
        try:
            model = models.load_model(self._model_location())
        except InputError as error:
            raise self._model_error(error) from error
        pixels = x.pixel_data
        try:
            one_of_several = pixels.ndim == 3 and model.spec.n_channel_in == 1
            channel = self.channel.value - 1 if one_of_several else None
            image = predict.select_channels(pixels, model.spec.n_channel_in, channel)
        except InputError as error:
            raise InputError(
                f"{self.module_name}: image '{self.x_name.value}' and model {model.name}: "
                f"{error} (setting '{self.channel.text}')"
            ) from error
        transforms = self.transforms.selections
        if not transforms:
            raise InputError(
                f"{self.module_name}: setting '{self.transforms.text}': no transform chosen"
            )
        options = {}
        if not self.use_model_thresholds:
            options.update(prob_thresh=self.prob_thresh.value, nms_thresh=self.nms_thresh.value)
        min_votes = self._min_votes(len(transforms))
        try:
            result = tta.segment_tta(
                image, model, transforms, min_votes=min_votes,
                return_prob_map=bool(self.save_probability.value), **options,
            )
        except InputError as error:
            raise InputError(f"{self.module_name}: image '{self.x_name.value}': {error}") from error
        shown = image[..., 0] if image.shape[2] == 1 else image
        return result, x, shown, model.name

    def _merge_objects(self, workspace):
        names = self._inputs()
        if len(names) < 2:
            raise InputError(
                f"{self.module_name}: setting '{self.object_names.text}': choose at least two "
                "object sets to merge"
            )
        inputs = [workspace.object_set.get_objects(name) for name in names]
        shapes = [objects.segmented.shape for objects in inputs]
        if len(set(shapes)) > 1:
            described = ", ".join(f"'{n}' {s[0]}x{s[1]}" for n, s in zip(names, shapes))
            raise InputError(
                f"{self.module_name}: the object sets to merge differ in size ({described}); "
                f"they must come from the same image (setting '{self.object_names.text}')"
            )
        merged = tta.merge_instances(
            [objects.segmented for objects in inputs], min_votes=self._min_votes(len(names))
        )
        parent_image = next(
            (objects.parent_image for objects in inputs if objects.parent_image is not None), None
        )
        image = None if parent_image is None else parent_image.pixel_data
        return merged, parent_image, image

    def _relate(self, workspace, input_name, merged_objects):
        """Parent_<input> (the input object overlapping each merged object most), children counts
        and the relationship table, as CellProfiler's object-processing modules record them."""
        m = workspace.measurements
        y_name = self.y_name.value
        children, parents = workspace.object_set.get_objects(input_name).relate_children(
            merged_objects
        )
        m.add_measurement(input_name, FF_CHILDREN_COUNT % y_name, children)
        m.add_measurement(y_name, FF_PARENT % input_name, parents)
        related = parents > 0
        if related.any():
            image_numbers = numpy.full(int(related.sum()), m.image_set_number, int)
            m.add_relate_measurement(
                self.module_num, R_PARENT, input_name, y_name,
                image_numbers, parents[related].astype(int),
                image_numbers, numpy.flatnonzero(related) + 1,
            )

    def display(self, workspace, figure):
        data = workspace.display_data
        figure.set_subplots((2, 2))
        cycle = f"cycle #{workspace.measurements.image_number}"
        if data.image is None:  # merged object sets without an image
            ax = figure.subplot_imshow_labels(0, 0, data.labels, f"{self.y_name.value}, {cycle}")
        elif data.image.ndim == 3:
            ax = figure.subplot_imshow_color(
                0, 0, data.image, f"Input image, {cycle}", normalize=True
            )
        else:
            ax = figure.subplot_imshow_grayscale(0, 0, data.image, f"Input image, {cycle}")
        figure.subplot_imshow_grayscale(
            1, 0, data.votes, "Votes per object", normalize=False, vmin=0,
            vmax=data.n_versions, sharexy=ax,
        )
        outlines = [dict(name=self.y_name.value, labels=[data.labels])]
        title = f"{self.y_name.value} outlines"
        if data.image is None:
            figure.subplot_imshow_grayscale(
                0, 1, data.votes > 0, title, cplabels=outlines, sharexy=ax
            )
        elif data.image.ndim == 3:
            figure.subplot_imshow_color(
                0, 1, data.image, title, normalize=True, cplabels=outlines, sharexy=ax
            )
        else:
            figure.subplot_imshow_grayscale(0, 1, data.image, title, cplabels=outlines, sharexy=ax)
        figure.subplot_table(
            1, 1, [[value] for _, value in data.statistics],
            row_labels=[name for name, _ in data.statistics],
        )

    # ----------------------------------------------------------------------------------------
    # measurement declarations

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        if object_name == self.y_name.value:
            categories = categories + [CATEGORY] + ([C_PARENT] if self._inputs() else [])
        elif object_name in self._inputs():
            categories = categories + [C_CHILDREN]
        return categories

    def get_measurements(self, pipeline, object_name, category):
        if object_name == self.y_name.value:
            if category == CATEGORY:
                return [FTR_VOTES, FTR_MEAN_IOU]
            if category == C_PARENT:
                return self._inputs()
        if object_name in self._inputs() and category == C_CHILDREN:
            return [f"{self.y_name.value}_Count"]
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_columns(self, pipeline, object_name=None):
        y_name = self.y_name.value
        columns = super().get_measurement_columns(pipeline, object_name)
        columns += [(y_name, M_VOTES, COLTYPE_INTEGER), (y_name, M_MEAN_IOU, COLTYPE_FLOAT)]
        for name in self._inputs():
            columns += [
                (y_name, FF_PARENT % name, COLTYPE_INTEGER),
                (name, FF_CHILDREN_COUNT % y_name, COLTYPE_INTEGER),
            ]
        return columns

    def get_object_relationships(self, pipeline):
        return [
            (R_PARENT, name, self.y_name.value, MCA_AVAILABLE_EACH_CYCLE) for name in self._inputs()
        ]
