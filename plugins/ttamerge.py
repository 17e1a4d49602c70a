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
YES          NO           YES
============ ============ ===============

With test-time augmentation the input image's own mask (from **MaskImage** or **Crop**) is
respected as in **RunStarConvex**: objects have their centre inside it and are cut at its edge.

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Image measurements:**

-  *Count:* the number of merged objects.
-  *TTAMerge\\_Status:* what happened to the image set: *ok*, *blank*, *constant* or *all
   masked* (nothing to segment: no objects), or *error: ...* (an image or object sets the module
   could not process, given no objects; see *When an image cannot be processed*), or *warning:
   no objects found although the image is not blank* (the log says the likely cause).
-  *TTAMerge\\_ImageKind, TTAMerge\\_Model, TTAMerge\\_Preparation* (test-time augmentation
   with the *Automatic* model only): the decision, as **RunStarConvex** records it.

**Object measurements:**

-  *Location\\_X, Location\\_Y:* the centre of mass of each object.
-  *Number\\_Object\\_Number:* the object's label number.
-  *TTAMerge\\_Votes:* how many versions (transforms or object sets) found the object.
-  *TTAMerge\\_MeanIoU:* the mean IoU of those versions' masks with the merged mask, between 0
   and 1 (1: every version drew the same outline). Low votes or a low mean IoU mark objects
   the versions disagree on.
-  *Parent\\_<input objects>* (merging object sets only): the object of each input set that
   overlaps the merged object most (0 if none); the input objects get
   *Children\\_<merged objects>\\_Count*, and the parent-child relationship is recorded (as
   **IdentifySecondaryObjects** records it).

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
    IMAGE,
    MCA_AVAILABLE_EACH_CYCLE,
    R_PARENT,
)
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ImageSegmentation, ObjectProcessing
from cellprofiler_core.object import Objects
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.multichoice import MultiChoice
from cellprofiler_core.setting.subscriber import ImageSubscriber, LabelListSubscriber
from cellprofiler_core.setting.text import Integer

from nucleai import tta
from nucleai.errors import InputError

from _batch_paths import BatchPathsMixin
from _detector_settings import DetectorSettings
from _failure_policy import upgrade_with_failure_setting
from _network_settings import upgrade_with_network_settings
from _model_choice import MODEL_AUTOMATIC, MODEL_BUNDLED, MODEL_CUSTOM  # noqa: F401 (the module's setting values)
from _options import options_from_settings, typed_number

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

USED_FOR_TTA = f"*(Used only for {MODE_TTA.lower()})*\n"


class TTAMerge(BatchPathsMixin, DetectorSettings, ObjectProcessing):
    """An object-processing module when merging object sets (parents and children as
    ObjectProcessing records them), a segmentation module under test-time augmentation."""

    module_name = "TTAMerge"
    category = ImageSegmentation.category
    variable_revision_number = 3
    STATUS_CATEGORY = CATEGORY

    def create_settings(self):
        super().create_settings()
        self.mode = Choice(
            "Mode", [MODE_TTA, MODE_MERGE], value=MODE_TTA,
            doc=f"""\
-  *{MODE_TTA}:* segment an image with a star-convex model under flips and rotations and merge
   the versions (one prediction per transform).
-  *{MODE_MERGE}:* merge two or more object sets identified by earlier modules.""",
        )
        self.x_name = ImageSubscriber(
            "Select the input image",
            doc=f"""{USED_FOR_TTA}
Select the image to segment, typically a nuclear stain. For a colour or multi-channel image,
set the channel below.""",
        )
        self.object_names = LabelListSubscriber(
            "Select the objects to merge", [],
            doc="""*(Used only when merging object sets)*

Two or more object sets of the same image, for example from **RunStarConvex** and
**IdentifyPrimaryObjects**. Each set is one vote.""",
        )
        self.y_name.value = "Nuclei"
        self.y_name.doc = "Enter the name for the merged objects."
        self.create_detector_settings(USED_FOR_TTA)
        self.transforms = MultiChoice(
            "Transforms", list(tta.TRANSFORMS), value=list(tta.PAPER_TRANSFORMS),
            doc=f"""{USED_FOR_TTA}
The versions of the image to segment; each costs one prediction. *identity* is the image as it
is, *flip_y* upside down, *flip_x* mirrored left-right, *rot90*/*rot180*/*rot270* rotated
counter-clockwise, *transpose*/*transverse* mirrored along a diagonal. The default is the
paper's set: {', '.join(tta.PAPER_TRANSFORMS)}.""",
        )
        self.vote_rule = Choice(
            "Keep objects found by", [VOTES_HALF, VOTES_MORE, VOTES_ALL, VOTES_NUMBER], value=VOTES_HALF,
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
            "Number of versions", 2, minval=1,
            doc="*(Used only for a given number of versions)* Versions that must find an object.",
        )
        self.create_probability_settings("averaged ", "NucleiTTAProbability")
        self.create_network_settings()
        self.create_failure_setting()

    def settings(self):
        return [
            self.mode, self.x_name, self.object_names, self.y_name, self.model_source,
            self.bundled_model, self.model_folder, self.channel, self.use_model_thresholds,
            self.prob_thresh, self.nms_thresh, self.transforms, self.vote_rule, self.min_votes,
            self.save_probability, self.probability_name, self.on_failure, *self.network_settings(),
        ]

    def visible_settings(self):
        if self.mode == MODE_MERGE:
            result = [self.mode, self.object_names, self.y_name]
        else:
            result = [self.mode, self.x_name, self.y_name] + self.detector_visible_settings() + [self.transforms]
        result.append(self.vote_rule)
        if self.vote_rule == VOTES_NUMBER:
            result.append(self.min_votes)
        if self.mode == MODE_TTA:
            result += self.probability_visible_settings() + self.network_settings()
        return result + [self.on_failure]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 2 added "When an image cannot be processed", 3 the precision and GPU memory.
        setting_values, variable_revision_number = upgrade_with_failure_setting(
            setting_values, variable_revision_number, 1)
        return upgrade_with_network_settings(setting_values, variable_revision_number, 2)

    def volumetric(self):
        return False

    def records_model_choice(self):
        return self.mode == MODE_TTA and self.model_is_automatic()

    def records_precision(self):
        return self.mode == MODE_TTA

    # ----------------------------------------------------------------------------------------
    # settings -> options

    def _inputs(self):
        return list(self.object_names.value) if self.mode == MODE_MERGE else []

    def _n_versions(self):
        return len(self._inputs()) if self.mode == MODE_MERGE else len(self.transforms.selections)

    def _min_votes(self):
        """The vote rule as ``min_votes`` (None: the default, at least half), as typed."""
        n_versions = self._n_versions()
        return {VOTES_HALF: None, VOTES_MORE: n_versions // 2 + 1, VOTES_ALL: n_versions}.get(
            self.vote_rule.value, typed_number(self.min_votes))

    def _options(self):
        """TTAOptions (test-time augmentation) or MergeOptions (object sets), checked."""

        def build():
            if self.mode == MODE_TTA:
                return tta.TTAOptions(self.transforms.selections, min_votes=self._min_votes())
            options = tta.MergeOptions(min_votes=self._min_votes())
            options.votes_needed(self._n_versions())
            return options

        versions = self.object_names if self.mode == MODE_MERGE else self.transforms
        return options_from_settings(build, {"transforms": versions, "min_votes": self.min_votes}, versions)

    def validate_module(self, pipeline):
        """Check the versions, the vote and (for TTA) the model and its settings before anything runs."""
        if self.mode == MODE_MERGE:
            if self._n_versions() < 2:
                raise ValidationError("choose at least two object sets to merge", self.object_names)
            if self.y_name.value in self._inputs():
                raise ValidationError(
                    f"the merged objects need a new name; '{self.y_name.value}' is an input", self.y_name)
        else:
            self.segment_options()
            self.read_detector_specs()
        self._options()

    # ----------------------------------------------------------------------------------------
    # run

    def run(self, workspace):
        options = self._options()
        if self.mode == MODE_MERGE:
            merged, parent_image, image = self._merge_objects(workspace, options)
            model_name, probability = None, None
        else:
            merged, parent_image, image, model_name = self._segment_tta(workspace, options)
            probability = merged.prob_map

        objects = Objects()
        objects.segmented = merged.labels
        if parent_image is not None:
            objects.parent_image = parent_image
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        m = workspace.measurements
        m.add_measurement(self.y_name.value, M_VOTES, merged.votes.astype(int))
        m.add_measurement(self.y_name.value, M_MEAN_IOU, merged.mean_iou.astype(float))
        if self.mode == MODE_TTA and self.save_probability:
            workspace.image_set.add(self.probability_name.value, Image(probability, parent_image=parent_image))

        if self.show_window:
            n_versions = self._n_versions()
            votes_image = numpy.zeros(merged.labels.shape, float)
            votes_image[merged.labels > 0] = merged.votes[merged.labels[merged.labels > 0] - 1]
            versions = ", ".join(self._inputs() or self.transforms.selections)
            statistics = [
                ("Objects", str(merged.count)),
                ("Versions", f"{n_versions}: {versions}"),
                ("Kept when found by", f"{merged.min_votes} of {n_versions}"),
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

    def _segment_tta(self, workspace, options):
        x, model = self.detector_input(workspace)

        def segment():
            return self.detector_segment(x, model, self.segment_options(), mask=x.mask if x.has_mask else None,
                                         tta_options=options, return_prob_map=bool(self.save_probability.value))

        outcome = self.process_or_flag(workspace, self.x_name.value, segment)
        self.record_model_choice(workspace, outcome)
        self.add_precision(workspace)
        model_name = MODEL_AUTOMATIC if model is None else model.name
        if outcome is None:  # flagged: no objects
            return self._no_objects(x.pixel_data.shape[:2], options), x, x.pixel_data, model_name
        if outcome.decision is not None:
            model_name = str(outcome.decision)
        return outcome.result, x, outcome.image, model_name

    def _no_objects(self, shape, options):
        """The result of a flagged image set: the merge of empty versions, no objects (under
        test-time augmentation with a probability map of 0)."""
        merge = options.merge if self.mode == MODE_TTA else options
        n_versions = max(self._n_versions(), 1)
        merged = tta.merge_instances([numpy.zeros(shape, numpy.uint16)] * n_versions, merge)
        if self.mode == MODE_MERGE:
            return merged
        return tta.TTASegmentation(
            labels=merged.labels, votes=merged.votes, mean_iou=merged.mean_iou, transforms=options.transforms,
            counts=(0,) * n_versions, min_votes=merged.min_votes, prob_map=numpy.zeros(shape, numpy.float32),
            prob_thresh=numpy.nan, nms_thresh=numpy.nan, scale=1.0, n_tiles=(0, 0),
        )

    def _merge_objects(self, workspace, options):
        names = self._inputs()
        if len(names) < 2:
            raise InputError(f"{self.module_name}: setting '{self.object_names.text}': choose at least two "
                             "object sets to merge")
        inputs = [workspace.object_set.get_objects(name) for name in names]
        shapes = [objects.segmented.shape for objects in inputs]

        def merge():
            if len(set(shapes)) > 1:
                described = ", ".join(f"'{n}' {s[0]}x{s[1]}" for n, s in zip(names, shapes))
                raise InputError(f"the object sets to merge differ in size ({described}); they must come "
                                 f"from the same image (setting '{self.object_names.text}')")
            return tta.merge_instances([objects.segmented for objects in inputs], options)

        merged = self.process_or_flag(workspace, names[0], merge) or self._no_objects(shapes[0], options)
        parent_image = next((objects.parent_image for objects in inputs if objects.parent_image is not None), None)
        return merged, parent_image, None if parent_image is None else parent_image.pixel_data

    def add_measurements(self, workspace, input_object_name=None, output_object_name=None):
        """Location, count and number of the merged objects; when merging object sets, per input
        set ObjectProcessing's parent and children measurements and the parent relationship."""
        inputs = self._inputs() if input_object_name is None else [input_object_name]
        y_name = self.y_name.value if output_object_name is None else output_object_name
        if not inputs:
            ImageSegmentation.add_measurements(self, workspace, y_name)
        m = workspace.measurements
        for name in inputs:
            super().add_measurements(workspace, name, y_name)
            parents = m.get_current_measurement(y_name, FF_PARENT % name)
            related = parents > 0
            if related.any():
                image_numbers = numpy.full(int(related.sum()), m.image_set_number, int)
                m.add_relate_measurement(self.module_num, R_PARENT, name, y_name, image_numbers,
                                         parents[related].astype(int), image_numbers, numpy.flatnonzero(related) + 1)

    def display(self, workspace, figure):
        data = workspace.display_data
        self.show_result(workspace, figure, data.votes, "Votes per object", data.n_versions)

    # ----------------------------------------------------------------------------------------
    # measurement declarations (ImageSegmentation's for the merged objects, plus the inputs')

    def get_categories(self, pipeline, object_name):
        categories = ImageSegmentation.get_categories(self, pipeline, object_name)
        if object_name == IMAGE:
            categories = categories + [CATEGORY]
        elif object_name == self.y_name.value:
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
        if object_name == IMAGE and category == CATEGORY:
            return self.detector_image_features()
        return ImageSegmentation.get_measurements(self, pipeline, object_name, category)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == CATEGORY and measurement in self.detector_image_features():
            return [self.y_name.value]
        return ImageSegmentation.get_measurement_objects(self, pipeline, object_name, category, measurement)

    def get_measurement_columns(self, pipeline, object_name=None):
        y_name = self.y_name.value
        columns = ImageSegmentation.get_measurement_columns(self, pipeline, object_name)
        columns += [(y_name, M_VOTES, COLTYPE_INTEGER), (y_name, M_MEAN_IOU, COLTYPE_FLOAT),
                    *self.detector_image_columns()]
        for name in self._inputs():
            columns += [(y_name, FF_PARENT % name, COLTYPE_INTEGER), (name, FF_CHILDREN_COUNT % y_name, COLTYPE_INTEGER)]
        return columns

    def get_object_relationships(self, pipeline):
        return [(R_PARENT, name, self.y_name.value, MCA_AVAILABLE_EACH_CYCLE) for name in self._inputs()]
