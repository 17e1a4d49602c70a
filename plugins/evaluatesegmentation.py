"""
EvaluateSegmentation
====================

**EvaluateSegmentation** scores a segmentation against ground-truth objects with the metric
family of the 2018 Data Science Bowl (DSB), so the numbers compare with published ones.

Predicted and ground-truth objects are matched one to one by intersection over union (IoU). At
each IoU threshold *t* = 0.50, 0.55, ..., 0.95 a prediction and a ground-truth object match when
IoU > *t*; TP are the matched pairs, FP the unmatched predictions, FN the unmatched ground-truth
objects. The DSB score at *t* is TP / (TP + FP + FN); the DSB score of an image is its mean over
the ten thresholds. Load ground truth as objects from label images with **NamesAndTypes**
("Objects" type).

An image with no objects on either side scores 1 (nothing to find, nothing found falsely); any
other empty side scores 0 where the ratio is undefined, so predicting nothing is never rewarded.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          YES          NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

Image measurements, named ``Evaluation_<feature>_<ground truth>_<prediction>``:

-  *ScoreIoU050 ... ScoreIoU095*: DSB score at each threshold.
-  *DSBScore*: mean of those ten scores, the image's DSB score.
-  *MeanPrecision*, *MeanRecall*, *MeanF1*: means over the ten thresholds.
-  *PrecisionIoUxxx*, *RecallIoUxxx*, *F1IoUxxx*, *TruePositivesIoUxxx*,
   *FalsePositivesIoUxxx*, *FalseNegativesIoUxxx*: at the thresholds you choose.
-  *MeanMatchedIoU*: mean IoU of the pairs matched at the per-object matching threshold (NaN when
   nothing matched).
-  *Splits*, *Merges*: nucleAIzer's count of ground-truth objects split into several predictions
   and of predictions that merge several ground-truth objects.
-  *GroundTruthCount*, *PredictedCount*.
-  *Status*: *ok*, or *error: ...* for object sets the module could not compare (different
   sizes); their measurements are then NaN (see *When an image cannot be processed*).

Object measurements, on both object sets, named ``Evaluation_<feature>_<other object set>``:

-  *BestIoU*: the highest IoU with any object of the other set.
-  *Matched*: 1 when the object is matched at the per-object matching threshold, else 0.
-  *Split* (ground truth) / *Merge* (prediction): 1 when nucleAIzer's rule flags the object.

At the end of the run the module writes the means over images to
``EvaluateSegmentation_<ground truth>_<prediction>.csv`` in the chosen folder and to the log.

References
^^^^^^^^^^

-  Caicedo et al. (2019) "Nucleus segmentation across imaging experiments: the 2018 Data Science
   Bowl", *Nature Methods* 16, 1247-1253.
-  Hollandi et al. (2020) "nucleAIzer: a parameter-free deep learning framework for nucleus
   segmentation using image style transfer", *Cell Systems* 10, 453-458.
"""

import csv
import logging
import os

import numpy
from cellprofiler_core.constants.measurement import COLTYPE_FLOAT, COLTYPE_INTEGER, IMAGE
from cellprofiler_core.module import Module
from cellprofiler_core.preferences import (
    ABSOLUTE_FOLDER_NAME,
    DEFAULT_INPUT_FOLDER_NAME,
    DEFAULT_INPUT_SUBFOLDER_NAME,
    DEFAULT_OUTPUT_FOLDER_NAME,
    DEFAULT_OUTPUT_SUBFOLDER_NAME,
)
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.subscriber import LabelSubscriber
from cellprofiler_core.setting.text import Directory, Float, Text

from nucleai.errors import InputError
from nucleai.metrics import EvaluateOptions, evaluate_image

from _batch_paths import BatchPathsMixin
from _failure_policy import FTR_STATUS, FailurePolicy, upgrade_with_failure_setting
from _options import options_from_settings, typed_number, validate_before_run

LOGGER = logging.getLogger(__name__)
CATEGORY = "Evaluation"
PER_THRESHOLD_RESULTS = (
    ("Precision", "precision"),
    ("Recall", "recall"),
    ("F1", "f1"),
    ("TruePositives", "tp"),
    ("FalsePositives", "fp"),
    ("FalseNegatives", "fn"),
)
COUNT_FEATURES = ("Splits", "Merges", "GroundTruthCount", "PredictedCount")
THRESHOLD_COUNT_RESULTS = ("TruePositives", "FalsePositives", "FalseNegatives")


def is_count(feature):
    """Counts are summed as well as averaged in the summary, and stored as integers."""
    return feature in COUNT_FEATURES or feature.startswith(THRESHOLD_COUNT_RESULTS)


def threshold_tag(threshold):
    """``0.5 -> 'IoU050'``: a threshold as it appears in a measurement name (no dots)."""
    return f"IoU{round(threshold * 100):03d}"


def typed_numbers(text):
    """Comma-separated numbers as typed; a piece that is no number stays text, so the options
    check reports it."""
    values = []
    for piece in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            values.append(float(piece))
        except ValueError:
            values.append(piece)
    return values


class EvaluateSegmentation(BatchPathsMixin, FailurePolicy, Module):
    module_name = "EvaluateSegmentation"
    category = "Measurement"
    variable_revision_number = 2
    STATUS_CATEGORY = CATEGORY

    def create_settings(self):
        self.truth_objects = LabelSubscriber("Select the ground-truth objects", "None", doc="""\
The reference segmentation, usually loaded from annotated label images with **NamesAndTypes**
(image type "Objects").""")
        self.predicted_objects = LabelSubscriber("Select the objects to evaluate", "None", doc="""\
The segmentation to score, for example the output of **RunStarConvex** or
**IdentifyPrimaryObjects**. It must come from an image of the same size as the ground truth.""")
        self.report_thresholds = Text("IoU thresholds for precision, recall and F1", "0.5, 0.75", doc="""\
Comma-separated IoU thresholds, each one of 0.50, 0.55, ..., 0.95, at which precision, recall,
F1 and the TP/FP/FN counts are measured. The DSB score at all ten thresholds is always measured.""")
        self.match_threshold = Float("IoU threshold for per-object matching", 0.5, doc="""\
An object counts as *Matched* when its partner's IoU exceeds this value (from 0 up to, not
including, 1). The mean matched IoU is taken over these pairs. At 0.5 or above, each object has
at most one partner.""")
        self.wants_summary = Binary("Write a summary at the end of the run?", True, doc="""\
Select "Yes" to write the means over all images of every image measurement to a CSV file, and
to the log, once the run is complete.""")
        self.summary_directory = Directory(
            "Summary file location",
            dir_choices=[DEFAULT_OUTPUT_FOLDER_NAME, DEFAULT_OUTPUT_SUBFOLDER_NAME, ABSOLUTE_FOLDER_NAME,
                         DEFAULT_INPUT_FOLDER_NAME, DEFAULT_INPUT_SUBFOLDER_NAME],
            doc="""Where to write ``EvaluateSegmentation_<ground truth>_<prediction>.csv``.""",
        )
        self.create_failure_setting()

    def settings(self):
        return [self.truth_objects, self.predicted_objects, self.report_thresholds, self.match_threshold,
                self.wants_summary, self.summary_directory, self.on_failure]

    def visible_settings(self):
        visible = [self.truth_objects, self.predicted_objects, self.report_thresholds, self.match_threshold,
                   self.wants_summary]
        if self.wants_summary:
            visible.append(self.summary_directory)
        return visible + [self.on_failure]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        # Revision 2 added "When an image cannot be processed".
        return upgrade_with_failure_setting(setting_values, variable_revision_number, 1)

    def status_subject(self):
        return f"{self.truth_objects.value}_{self.predicted_objects.value}"

    def evaluate_options(self):
        """The backend's EvaluateOptions of the settings (the DSB thresholds scored, the reported
        ones and the matching threshold as typed); ValidationError names the setting at fault."""
        def build():
            return EvaluateOptions(report_thresholds=typed_numbers(self.report_thresholds.value),
                                   match_threshold=typed_number(self.match_threshold))

        setting_for_field = {"report_thresholds": self.report_thresholds, "match_threshold": self.match_threshold}
        return options_from_settings(build, setting_for_field, self.report_thresholds)

    def validate_module(self, pipeline):
        self.evaluate_options()
        if self.truth_objects.value == self.predicted_objects.value:
            raise ValidationError(
                "The ground truth and the objects to evaluate are the same object set",
                self.predicted_objects,
            )

    def prepare_run(self, workspace):
        """Validate here too: a headless run calls no validate_module, and must not start."""
        return validate_before_run(self, workspace.pipeline)

    def measurement_name(self, feature):
        return "_".join((CATEGORY, feature, self.truth_objects.value, self.predicted_objects.value))

    def image_features(self):
        options = self.evaluate_options()
        features = [f"Score{threshold_tag(t)}" for t in options.thresholds]
        features += ["DSBScore", "MeanPrecision", "MeanRecall", "MeanF1", "MeanMatchedIoU"]
        for threshold in options.report_thresholds:
            features += [name + threshold_tag(threshold) for name, _ in PER_THRESHOLD_RESULTS]
        return features + list(COUNT_FEATURES)

    def object_features(self, object_name):
        if object_name == self.truth_objects.value:
            return ["BestIoU", "Matched", "Split"]
        if object_name == self.predicted_objects.value:
            return ["BestIoU", "Matched", "Merge"]
        return []

    def other_object_set(self, object_name):
        if object_name == self.truth_objects.value:
            return self.predicted_objects.value
        return self.truth_objects.value

    def run(self, workspace):
        options = self.evaluate_options()
        truth = workspace.object_set.get_objects(self.truth_objects.value)
        predicted = workspace.object_set.get_objects(self.predicted_objects.value)

        def evaluate():
            if truth.shape != predicted.shape:
                raise InputError(
                    f"'{self.truth_objects.value}' ({truth.shape}) and '{self.predicted_objects.value}' "
                    f"({predicted.shape}) come from images of different sizes; choose objects segmented on "
                    "the same image"
                )
            return evaluate_image(truth.segmented, predicted.segmented, options)

        evaluation = self.process_or_flag(workspace, self.predicted_objects.value, evaluate)
        if evaluation is None:  # flagged: no scores
            self.add_unscored_measurements(workspace.measurements, truth.count, predicted.count)
            if self.show_window:
                data = workspace.display_data
                data.truth, data.predicted = truth.segmented, predicted.segmented
                data.missed_ids = data.false_positive_ids = numpy.zeros(0, int)
                data.statistics = [("Status", workspace.measurements[IMAGE, self.status_feature()])]
            return

        self.add_image_measurements(workspace.measurements, evaluation, options)
        self.add_object_measurements(
            workspace.measurements, self.truth_objects.value, truth.count,
            evaluation.truth_ids, evaluation.truth_best_iou, evaluation.truth_matched, "Split", evaluation.truth_split,
        )
        self.add_object_measurements(
            workspace.measurements, self.predicted_objects.value, predicted.count,
            evaluation.pred_ids, evaluation.pred_best_iou, evaluation.pred_matched, "Merge", evaluation.pred_merge,
        )

        if self.show_window:
            match = f"at IoU {evaluation.match_threshold:.2f}"
            workspace.display_data.truth = truth.segmented
            workspace.display_data.predicted = predicted.segmented
            workspace.display_data.missed_ids = evaluation.truth_ids[~evaluation.truth_matched]
            workspace.display_data.false_positive_ids = evaluation.pred_ids[~evaluation.pred_matched]
            workspace.display_data.statistics = [
                ("DSB score", f"{evaluation.dsb_score:.3f}"),
                ("Ground-truth objects", str(evaluation.n_truth)),
                ("Predicted objects", str(evaluation.n_pred)),
                (f"Misses {match}", str(int((~evaluation.truth_matched).sum()))),
                (f"False positives {match}", str(int((~evaluation.pred_matched).sum()))),
                ("Mean matched IoU", f"{evaluation.mean_matched_iou:.3f}"),
                ("Splits / merges", f"{evaluation.n_splits} / {evaluation.n_merges}"),
            ]

    def add_image_measurements(self, measurements, evaluation, options):
        values = {f"Score{threshold_tag(t)}": s for t, s in zip(evaluation.thresholds, evaluation.score)}
        values.update(
            DSBScore=evaluation.dsb_score,
            MeanPrecision=evaluation.mean_precision,
            MeanRecall=evaluation.mean_recall,
            MeanF1=evaluation.mean_f1,
            MeanMatchedIoU=evaluation.mean_matched_iou,
            Splits=evaluation.n_splits,
            Merges=evaluation.n_merges,
            GroundTruthCount=evaluation.n_truth,
            PredictedCount=evaluation.n_pred,
        )
        for threshold in options.report_thresholds:
            index = options.thresholds.index(threshold)
            for name, field in PER_THRESHOLD_RESULTS:
                values[name + threshold_tag(threshold)] = getattr(evaluation, field)[index]
        for feature, value in values.items():
            measurements.add_image_measurement(self.measurement_name(feature), value)

    def add_unscored_measurements(self, measurements, truth_count, predicted_count):
        """NaN for every measurement of an image set that could not be scored, so the columns
        exist and the summary's means skip it."""
        for feature in self.image_features():
            measurements.add_image_measurement(self.measurement_name(feature), numpy.nan)
        counts = ((self.truth_objects.value, truth_count), (self.predicted_objects.value, predicted_count))
        for object_name, count in counts:
            other = self.other_object_set(object_name)
            for feature in self.object_features(object_name):
                measurements.add_measurement(object_name, f"{CATEGORY}_{feature}_{other}", numpy.full(count, numpy.nan))

    def add_object_measurements(self, measurements, object_name, count, ids, best_iou, matched, flag_name, flag):
        """Per-object results in CellProfiler's object order (object number = label id)."""
        other = self.other_object_set(object_name)
        columns = {"BestIoU": best_iou, "Matched": matched, flag_name: flag}
        for feature, values in columns.items():
            per_object = numpy.zeros(count, dtype=float)
            per_object[ids - 1] = values
            measurements.add_measurement(object_name, f"{CATEGORY}_{feature}_{other}", per_object)

    def post_run(self, workspace):
        if not self.wants_summary:
            return
        measurements = workspace.measurements
        rows = []
        for feature in self.image_features():
            values = numpy.asarray(
                measurements.get_all_measurements(IMAGE, self.measurement_name(feature)), dtype=float
            )
            total = int(numpy.nansum(values)) if is_count(feature) else ""
            mean = numpy.nanmean(values) if numpy.isfinite(values).any() else numpy.nan
            rows.append((feature, mean, total))
        directory = self.summary_directory.get_absolute_path(measurements)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(
            directory, f"{self.module_name}_{self.truth_objects.value}_{self.predicted_objects.value}.csv"
        )
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["feature", "mean_over_images", "total"])
            writer.writerows(rows)
        summary = dict((feature, mean) for feature, mean, _ in rows)
        LOGGER.info(
            "%s: %s vs %s over %d images: DSB score %.4f, mean F1 %.4f, mean matched IoU %.4f; summary in %s",
            self.module_name, self.predicted_objects.value, self.truth_objects.value,
            measurements.image_set_count, summary["DSBScore"], summary["MeanF1"], summary["MeanMatchedIoU"], path,
        )

    def display(self, workspace, figure):
        """Prediction and ground truth outlines; misses and false positives filled in red."""
        data = workspace.display_data
        figure.set_subplots((3, 1))
        figure.subplot_imshow_color(
            0, 0, flagged_outlines(data.truth, data.missed_ids), title=f"{self.truth_objects.value}: misses in red"
        )
        figure.subplot_imshow_color(
            1, 0, flagged_outlines(data.predicted, data.false_positive_ids),
            title=f"{self.predicted_objects.value}: false positives in red", sharexy=figure.subplot(0, 0),
        )
        figure.subplot_table(2, 0, data.statistics, col_labels=("Measurement", "Value"))

    def get_measurement_columns(self, pipeline):
        columns = [
            (IMAGE, self.measurement_name(feature), COLTYPE_INTEGER if is_count(feature) else COLTYPE_FLOAT)
            for feature in self.image_features()
        ]
        for object_name in (self.truth_objects.value, self.predicted_objects.value):
            other = self.other_object_set(object_name)
            columns += [
                (object_name, f"{CATEGORY}_{feature}_{other}", COLTYPE_FLOAT)
                for feature in self.object_features(object_name)
            ]
        return columns + [self.status_column()]

    def get_categories(self, pipeline, object_name):
        if object_name == IMAGE or self.object_features(object_name):
            return [CATEGORY]
        return []

    def get_measurements(self, pipeline, object_name, category):
        if category != CATEGORY:
            return []
        if object_name == IMAGE:
            return self.image_features() + [FTR_STATUS]
        return self.object_features(object_name)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name != IMAGE and measurement in self.get_measurements(pipeline, object_name, category):
            return [self.other_object_set(object_name)]
        return []

    def get_measurement_scales(self, pipeline, object_name, category, measurement, image_name):
        if object_name == IMAGE and measurement in self.get_measurements(pipeline, object_name, category):
            return ["_".join((self.truth_objects.value, self.predicted_objects.value))]
        return []

    def volumetric(self):
        return True


def flagged_outlines(labels, flagged_ids):
    """RGB view of a label image: flagged objects filled in red, every object outlined in white
    by skimage's ``mark_boundaries``, as CellProfiler's OverlayOutlines draws outlines (a 3-D
    stack is shown as its maximum projection)."""
    from skimage.segmentation import mark_boundaries

    labels = labels if labels.ndim == 2 else labels.max(axis=0)
    rgb = numpy.zeros(labels.shape + (3,), dtype=float)
    rgb[numpy.isin(labels, flagged_ids) & (labels > 0)] = (0.8, 0.1, 0.1)
    return mark_boundaries(rgb, labels, color=(1, 1, 1), mode="inner")
