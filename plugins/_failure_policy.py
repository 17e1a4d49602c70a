"""What a nucleai module does with an image it cannot process, written once for all four.

A 10,000-image headless run must not lose 9,999 images' results to one bad file. Every module
that processes images (RunStarConvex, TTAMerge, RefineContoursUNet, EvaluateSegmentation) has the
setting *When an image cannot be processed*: give no objects and flag the image (the default), or
stop the analysis as CellProfiler does when a module raises. Either way the module records, per
image set, the image measurement ``<Category>_Status_<objects>`` saying what happened:

- ``ok``: processed;
- ``blank``, ``constant``, ``all masked``: nothing to segment (the backend decides this,
  :data:`nucleai.predict.BLANK` and the like): no objects and a warning in the log, never an
  error, whatever the setting;
- ``error: <message>``: the backend refused the image (:class:`nucleai.errors.InputError`: NaN
  pixels, a wrong channel count, objects and image of different sizes); with *flag* the module
  gives no objects (so ``Count_<objects>`` is 0 and every later module and ExportToSpreadsheet
  still work) and logs a warning naming the image file.

Errors that are no image's fault (the model, the settings) always stop the run; the modules raise
them outside :meth:`FailurePolicy.process_or_flag`. CellProfiler does not load files starting
with ``_`` from the plugins folder as modules, but the folder is on ``sys.path`` while the modules
are imported, so they can import this one.
"""
import logging

from cellprofiler_core.constants.measurement import COLTYPE_VARCHAR_FORMAT, IMAGE
from cellprofiler_core.setting.choice import Choice

from nucleai.errors import InputError

LOGGER = logging.getLogger(__name__)

ON_FAILURE_FLAG = "Give no objects and flag the image"
ON_FAILURE_STOP = "Stop the analysis"
FTR_STATUS = "Status"
STATUS_OK = "ok"
#: Longest status text stored (CellProfiler's string columns have a width).
STATUS_WIDTH = 255


def upgrade_with_failure_setting(setting_values, variable_revision_number, revision_without):
    """``upgrade_settings`` of a module whose revision ``revision_without`` lacked the setting:
    such a saved pipeline loads with the default (flag) appended."""
    if variable_revision_number == revision_without:
        return setting_values + [ON_FAILURE_FLAG], variable_revision_number + 1
    return setting_values, variable_revision_number


class FailurePolicy:
    """Mixin: the setting, the status measurement and the guarded backend call.

    A module sets ``STATUS_CATEGORY`` (its measurement category) and defines
    :meth:`status_subject` (the objects, or object pair, the status is about).
    """

    STATUS_CATEGORY = None

    def create_failure_setting(self):
        self.on_failure = Choice(
            "When an image cannot be processed", [ON_FAILURE_FLAG, ON_FAILURE_STOP], value=ON_FAILURE_FLAG,
            doc=f"""\
What to do with an image the module cannot process (NaN or infinite pixels, a channel count the
model cannot take, objects and image of different sizes):

-  *{ON_FAILURE_FLAG}* (default): the image set gets no objects (count 0) and the rest of the
   pipeline and the export still run; the log names the file and the image measurement
   *{self.STATUS_CATEGORY}_{FTR_STATUS}* says why. A long run is not lost to one bad image.
-  *{ON_FAILURE_STOP}:* the analysis stops with the error, naming the file.

A blank (all 0), constant or entirely masked image is not a failure: it has no objects, a warning
in the log and the status *blank*, *constant* or *all masked*, with either choice.""",
        )

    def status_subject(self):
        raise NotImplementedError

    def status_feature(self):
        """The status measurement's name, ``<Category>_Status_<objects>``."""
        return f"{self.STATUS_CATEGORY}_{FTR_STATUS}_{self.status_subject()}"

    def status_column(self):
        return IMAGE, self.status_feature(), COLTYPE_VARCHAR_FORMAT % STATUS_WIDTH

    def process_or_flag(self, workspace, image_name, process):
        """``process()``, its outcome recorded as the status measurement.

        Parameters
        ----------
        workspace : cellprofiler_core.workspace.Workspace
        image_name : str
            The image processed (its file is named in the log and in a stopping error).
        process : callable
            The backend call; its result's ``empty_reason`` (for a tuple, its last item's; when
            there is one) is the status of an image with nothing to segment.

        Returns
        -------
        result or None
            None when the image failed and the setting is to flag it: the module then gives no
            objects.

        Raises
        ------
        InputError
            When the image failed and the setting is to stop, naming the module and the file.
        """
        try:
            result = process()
        except InputError as error:
            where = f"{self.module_name}: image '{image_name}' ({image_file(workspace, image_name)})"
            if self.on_failure == ON_FAILURE_STOP:
                raise InputError(f"{where}: {error}") from error
            LOGGER.warning("%s: %s; no objects, image flagged (%s)", where, error, self.status_feature())
            self.add_status(workspace, f"error: {error}")
            return None
        reason = getattr(result[-1] if isinstance(result, tuple) else result, "empty_reason", None)
        if reason is not None:
            LOGGER.warning("%s: image '%s' (%s) is %s: nothing to segment, no objects (%s)", self.module_name,
                           image_name, image_file(workspace, image_name), reason, self.status_feature())
        self.add_status(workspace, reason or STATUS_OK)
        return result

    def add_status(self, workspace, status):
        workspace.measurements.add_image_measurement(self.status_feature(), status[:STATUS_WIDTH])


def image_file(workspace, image_name):
    """The file an image was loaded from (``FileName_<image>``), else the image set's first
    file (objects, images made by modules), else the image set's number."""
    measurements = workspace.measurements
    try:
        recorded = measurements.get_feature_names(IMAGE)
    except KeyError:  # no image measurement yet (a module run on its own)
        recorded = []
    for feature in [f"FileName_{image_name}"] + sorted(name for name in recorded if name.startswith("FileName_")):
        if feature in recorded and measurements.has_current_measurements(IMAGE, feature):
            return measurements.get_current_image_measurement(feature)
    return f"image set {measurements.image_set_number}"
