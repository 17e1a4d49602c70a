"""The settings RunStarConvex and TTAMerge share, and what they do with them, written once.

Both modules run a star-convex detector: they pick the model (:mod:`_model_choice`; or
*Automatic*, :mod:`nucleai.modality`'s choice per image, recorded as image measurements), the
channel of a colour image, the probability and overlap thresholds, and may save a probability map.
Both warn about an image without objects that is not blank. This
mixin creates those settings, turns them (with a module's own extra fields) into a
:class:`nucleai.predict.SegmentOptions`, checks them before a run and shows the result the same
way. CellProfiler does not load files starting with ``_`` from the plugins folder as modules, but
the folder is on ``sys.path`` while the modules are imported, so they can import this one.

Numbers are read as typed (``_options.typed_number``), so an out-of-range value in a pipeline
file fails validation naming its setting instead of running with the setting's fallback value,
and :meth:`prepare_run` validates as the GUI does, since a headless run validates nothing
(``_options.validate_before_run``).
"""
from dataclasses import replace
from typing import NamedTuple

from cellprofiler_core.constants.measurement import COLTYPE_VARCHAR_FORMAT, IMAGE
from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.text import Directory, Float, ImageName, Integer

from nucleai import modality, models, predict, tta
from nucleai.errors import InputError

from _failure_policy import FTR_STATUS, LOGGER, FailurePolicy, image_file
from _model_choice import MODEL_AUTOMATIC, MODEL_BUNDLED, MODEL_CUSTOM, ModelChoice
from _network_settings import FTR_PRECISION, NetworkSettings
from _options import channel_error, options_from_settings, typed_number, validate_before_run

def _bundled_choices(pipeline=None):
    return [MODEL_AUTOMATIC] + (models.bundled_models() or [models.DEFAULT_MODEL])


#: The automatic choice's image measurements, ``<Category>_<Feature>_<objects>``: the image's kind,
#: the model that ran, and what it saw of the image (``modality.AS_IS`` or ``HAEMATOXYLIN``).
FTR_IMAGE_KIND, FTR_MODEL, FTR_PREPARATION = "ImageKind", "Model", "Preparation"
#: What the automatic choice's measurements say of an image it could not decide (flagged).
NOT_DECIDED = "none"
#: Longest model name or kind stored.
CHOICE_WIDTH = 64
#: The status of an image in which the model found nothing although it is not blank (the log
#: says what the image looks like and the likely cause).
STATUS_NO_OBJECTS = "warning: no objects found although the image is not blank"


class Detected(NamedTuple):
    """What :meth:`DetectorSettings.detector_segment` gives: the result last."""

    image: object
    decision: object
    warning: object
    result: object


class DetectorSettings(FailurePolicy, ModelChoice, NetworkSettings):
    """Mixin for a module that segments ``x_name`` with a star-convex model."""

    def create_detector_settings(self, used_for):
        """The model, channel and threshold settings; ``used_for`` prefixes their help."""
        self.model_source = Choice(
            "Model", [MODEL_BUNDLED, MODEL_CUSTOM], value=MODEL_BUNDLED,
            doc=f"""{used_for}
Use a model that ships with the plugins (*{MODEL_BUNDLED}*) or a model folder of your own
(*{MODEL_CUSTOM}*): any 2-D model trained with the ``stardist`` Python package, i.e. a folder
holding ``config.json``, ``thresholds.json`` and ``weights_best.h5`` (or ``weights_last.h5``).""",
        )
        self.bundled_model = Choice(
            "Bundled model", _bundled_choices(), value=MODEL_AUTOMATIC, choices_fn=_bundled_choices,
            doc=f"""*(Used only for a bundled model)*

*{MODEL_AUTOMATIC}* (the default) decides per image, from its pixels, whether it is
*{modality.FLUORESCENCE}* (bright nuclei on a dark background), *{modality.HISTOLOGY}* (colour,
bright background) or *{modality.BRIGHTFIELD}* (grey, dark nuclei on a bright background), and
uses the bundled model for that kind; with the models bundled now: {modality.describe_choices()}.
The haematoxylin density (colour deconvolution; for a grey image its optical density) turns dark
nuclei bright; on held-out brightfield images it raised every model's score. A colour image is
segmented in colour by a colour model and as the mean of its channels by a grey one. The image
measurements *<category>_{FTR_IMAGE_KIND}*, *_{FTR_MODEL}* and *_{FTR_PREPARATION}* (what the
model saw: *{modality.AS_IS}* or *{modality.HAEMATOXYLIN}*) record the
decision.

The other choices are the bundled models themselves: the folders in the plugins' ``models/``
folder (or in the folder named by the environment variable ``{models.MODELS_DIR_ENV}``).
*{models.DEFAULT_MODEL}* segments nuclei in fluorescence images, *histo_nuclei* in H&E-like colour
images, *{modality.VERSATILE_MODEL}* in every kind (one model, below the specialists' scores; see
its ``MODEL.md``).""",
        )
        self.model_folder = Directory(
            "Model folder", value=f"{ABSOLUTE_FOLDER_NAME}|", allow_metadata=False,
            doc="""*(Used only for a custom model folder)*

The folder of a StarDist-type model. It is checked when the pipeline is validated; a missing or
broken one is reported before any image is processed.""",
        )
        self.channel = Integer(
            "Channel to use for colour images", 1, minval=1,
            doc="""*(Used only when the input image has several channels and the model takes one)*

The channel to segment, counted from 1 (1 = red, 2 = green, 3 = blue for RGB images). Grey
images ignore this setting. A model trained on several channels gets all channels of an image
with that many.""",
        )
        self.use_model_thresholds = Binary(
            "Use the model's tuned thresholds?", True,
            doc=f"""{used_for}
Models store thresholds tuned on their validation data (``thresholds.json``); they are usually
the best choice. Select *No* to set them yourself (a model without ``thresholds.json`` uses
StarDist's defaults, 0.5 and 0.4).""",
        )
        self.prob_thresh = Float(
            "Probability threshold", models.DEFAULT_PROB_THRESH, minval=0.001, maxval=0.999,
            doc="""*(Used only when not using the model's thresholds)*

Pixels with an object probability above this propose an object. Lower it to find fainter or
more uncertain nuclei (more false detections), raise it to keep only confident ones.""",
        )
        self.nms_thresh = Float(
            "Overlap threshold", models.DEFAULT_NMS_THRESH, minval=0.001, maxval=0.999,
            doc="""*(Used only when not using the model's thresholds)*

Two proposed objects overlapping by more than this fraction (intersection area over the area
of the smaller one) are taken to be the same nucleus and only the more probable is kept. Raise
it to keep more touching or overlapping nuclei apart.""",
        )

    def create_probability_settings(self, what, default_name):
        """Whether to save the probability map (``what`` describes it) and its name."""
        self.save_probability = Binary(
            f"Save the {what}probability map as an image?", False,
            doc=f"""Select *Yes* to make the network's {what}object probability map (0 to 1, at
the input image's size) available to later modules, for example to save it with **SaveImages**
or measure it.""",
        )
        self.probability_name = ImageName(
            "Name the probability image", default_name,
            doc="*(Used only when saving the probability map)* Name for the probability image.",
        )

    def detector_visible_settings(self):
        channel = [] if self.model_is_automatic() else [self.channel]
        shown = [self.model_source, self._model_setting(), *channel, self.use_model_thresholds]
        return shown + ([] if self.use_model_thresholds else [self.prob_thresh, self.nms_thresh])

    def probability_visible_settings(self):
        return [self.save_probability] + ([self.probability_name] if self.save_probability else [])

    # ----------------------------------------------------------------------------------------
    # settings -> options

    def segment_options(self, extra=None, extra_settings=None):
        """The :class:`~nucleai.predict.SegmentOptions` of the settings, numbers as typed.

        ``extra`` is a function returning more option fields (a module's own settings),
        ``extra_settings`` maps those fields to their settings.
        """

        def build():
            channel = typed_number(self.channel)  # counted from 1 here, from 0 in the options
            values = {"channel": channel - 1 if isinstance(channel, int) else channel}
            if self.model_is_automatic():  # the channels are the automatic choice's to use
                values["channel"] = None
            if not self.use_model_thresholds:
                values.update(prob_thresh=typed_number(self.prob_thresh), nms_thresh=typed_number(self.nms_thresh))
            return predict.SegmentOptions(**values, **(extra() if extra else {}))

        settings = {"channel": self.channel, "prob_thresh": self.prob_thresh, "nms_thresh": self.nms_thresh,
                    **(extra_settings or {})}
        return options_from_settings(build, settings, self.x_name)

    def read_detector_specs(self):
        """The specs (files only, no TensorFlow) of the chosen model, or of every model the automatic
        choice may use; ValidationError on the model setting."""
        try:
            if self.model_is_automatic():
                return [models.read_spec(name) for name in modality.models_in_use()]
            return [self._model_spec()]
        except InputError as error:
            raise ValidationError(str(error), self._model_setting())

    # ----------------------------------------------------------------------------------------
    # run

    def prepare_run(self, workspace):
        """Validate here too: a headless run calls no validate_module, and must not start."""
        return validate_before_run(self, workspace.pipeline)

    def detector_input(self, workspace):
        """The input image and the loaded model; errors here stop the run (they are no single
        image's fault: the model, or 3-D images where the module segments 2-D ones).

        Returns
        -------
        image : cellprofiler_core.image.Image
        model : nucleai.models.StarConvexModel or None
            None under the automatic choice (:meth:`detector_segment` chooses per image).
        """
        x = workspace.image_set.get_image(self.x_name.value)
        if x.volumetric:
            raise InputError(f"{self.module_name}: '{self.x_name.value}' is a 3-D image; {self.module_name} "
                             "segments 2-D images")
        if self.model_is_automatic():
            self.prepare_network()  # segment_auto loads the models
            return x, None
        try:
            model = self._load_model()
        except InputError as error:
            raise self._model_error(error) from error
        return x, model

    def detector_segment(self, x, model, options, mask=None, tta_options=None, return_prob_map=False):
        """Segment image ``x`` (the backend call; an InputError is this image's fault).

        With ``model`` (from :meth:`detector_input`) the image gets the model's channels and
        :func:`nucleai.predict.segment` (:func:`nucleai.tta.segment_tta` with ``tta_options``);
        under the automatic choice (``model`` None) :func:`nucleai.modality.segment_auto` decides,
        on all the image's channels, and segments.

        Returns
        -------
        Detected
            The image to show, the decision (None for a chosen model), the warning for no objects
            in an image that is not blank (:func:`nucleai.modality.no_objects_warning`, else None)
            and the result, last (as :meth:`process_or_flag` reads it).
        """
        if model is None:
            result, decision = modality.segment_auto(x.pixel_data, options, tta=tta_options, mask=mask,
                                                     return_prob_map=return_prob_map,
                                                     precision=self.network_precision())
            image, name = x.pixel_data, decision.model
        else:
            pixels, options = self.detector_pixels(x, model, options)
            if tta_options is None:
                result = predict.segment(pixels, model, options, mask=mask, return_prob_map=return_prob_map)
            else:
                result = tta.segment_tta(pixels, model, tta_options, options, mask=mask,
                                         return_prob_map=return_prob_map)
            image, name, decision = pixels[..., 0] if pixels.shape[2] == 1 else pixels, model.name, None
        warning = modality.no_objects_warning(x.pixel_data, result, name, decision, mask)
        return Detected(image, decision, warning, result)

    def record_model_choice(self, workspace, detected):
        """After :meth:`process_or_flag`: the automatic choice's measurements (an image flagged
        before it was decided gets :data:`NOT_DECIDED`), and the warning for an image without
        objects that is not blank, logged and as the status."""
        decision = None if detected is None else detected.decision
        if self.records_model_choice():
            m = workspace.measurements
            m.add_image_measurement(self.choice_feature(FTR_IMAGE_KIND), decision.kind if decision else NOT_DECIDED)
            m.add_image_measurement(self.choice_feature(FTR_MODEL), decision.model if decision else NOT_DECIDED)
            m.add_image_measurement(self.choice_feature(FTR_PREPARATION),
                                    decision.preparation if decision else NOT_DECIDED)
        if detected is not None and detected.warning is not None:
            LOGGER.warning("%s: image '%s' (%s): %s (%s)", self.module_name, self.x_name.value,
                           image_file(workspace, self.x_name.value), detected.warning, self.status_feature())
            self.add_status(workspace, STATUS_NO_OBJECTS)

    def choice_feature(self, feature):
        """An automatic-choice measurement's name, ``<Category>_<Feature>_<objects>``."""
        return f"{self.STATUS_CATEGORY}_{feature}_{self.status_subject()}"

    def records_model_choice(self):
        """Whether the module records the automatic choice's measurements."""
        return self.model_is_automatic()

    def detector_image_features(self):
        """The module's image features in its category: status, precision and the automatic
        choice's."""
        precision = [FTR_PRECISION] if self.records_precision() else []
        return [FTR_STATUS, *precision] + self.choice_features()

    def detector_image_columns(self):
        """The columns of :meth:`detector_image_features`."""
        precision = [self.precision_column()] if self.records_precision() else []
        return [self.status_column(), *precision, *self.choice_columns()]

    def records_precision(self):
        """Whether the module runs a network (and records its precision)."""
        return True

    def choice_features(self):
        """The automatic choice's image features, when it records them."""
        return [FTR_IMAGE_KIND, FTR_MODEL, FTR_PREPARATION] if self.records_model_choice() else []

    def choice_columns(self):
        """The automatic choice's measurement columns, when it records them."""
        if not self.records_model_choice():
            return []
        text = COLTYPE_VARCHAR_FORMAT % CHOICE_WIDTH
        return [(IMAGE, self.choice_feature(feature), text) for feature in (FTR_IMAGE_KIND, FTR_MODEL, FTR_PREPARATION)]

    def detector_pixels(self, x, model, options):
        """The pixels of image ``x`` with the model's channels, and ``options`` with the channel
        dropped (it is used here); an InputError names the channel setting."""
        channel = options.channel if x.pixel_data.ndim == 3 and model.spec.n_channel_in == 1 else None
        try:
            pixels = predict.select_channels(x.pixel_data, model.spec.n_channel_in, channel)
        except InputError as error:
            if error.field == "channel":
                raise channel_error(self.channel, channel, x.pixel_data.shape[2]) from error
            raise InputError(f"model {model.name}: {error} (setting '{self.channel.text}')") from error
        return pixels, replace(options, channel=None)

    def status_subject(self):
        return self.y_name.value

    def show_result(self, workspace, figure, middle, middle_title, vmax):
        """Input image, ``middle`` (a map from 0 to ``vmax``), the outlines and the statistics."""
        data = workspace.display_data
        figure.set_subplots((2, 2))
        cycle = f"cycle #{workspace.measurements.image_number}"
        outlines = [dict(name=self.y_name.value, labels=[data.labels])]
        title = f"{self.y_name.value} outlines"
        if data.image is None:  # merged object sets without an image
            ax = figure.subplot_imshow_labels(0, 0, data.labels, f"{self.y_name.value}, {cycle}")
            figure.subplot_imshow_grayscale(0, 1, data.labels > 0, title, cplabels=outlines, sharexy=ax)
        elif data.image.ndim == 3:
            ax = figure.subplot_imshow_color(0, 0, data.image, f"Input image, {cycle}", normalize=True)
            figure.subplot_imshow_color(0, 1, data.image, title, normalize=True, cplabels=outlines, sharexy=ax)
        else:
            ax = figure.subplot_imshow_grayscale(0, 0, data.image, f"Input image, {cycle}")
            figure.subplot_imshow_grayscale(0, 1, data.image, title, cplabels=outlines, sharexy=ax)
        figure.subplot_imshow_grayscale(1, 0, middle, middle_title, normalize=False, vmin=0, vmax=vmax, sharexy=ax)
        figure.subplot_table(1, 1, [[value] for _, value in data.statistics],
                             row_labels=[name for name, _ in data.statistics])
