"""The model choice shared by the nucleai modules that run a network.

RunStarConvex, TTAMerge and RefineContoursUNet each let the user pick a bundled model by name or
a model folder of their own, with three settings named ``model_source``, ``bundled_model`` and
``model_folder`` (texts and help differ per module, so each module creates them). This mixin
turns those settings into a model folder, its checked spec and the loaded model (all through
:mod:`nucleai.models`, which caches the network), and a setting-naming error, once for all three.
CellProfiler does not load files starting with ``_`` from the plugins folder as modules, but the
folder is on ``sys.path`` while the modules are imported, so they can import this one.
"""
from nucleai import models
from nucleai.errors import InputError

MODEL_BUNDLED = "Bundled model"
MODEL_CUSTOM = "Custom model folder"
#: The bundled-model choice of the detector modules that lets :mod:`nucleai.modality` choose per
#: image (offered by ``_detector_settings``; a refinement U-Net has no automatic choice).
MODEL_AUTOMATIC = "Automatic"


class ModelChoice:
    """Mixin for modules with ``model_source``, ``bundled_model`` and ``model_folder`` settings."""

    #: The kind of model the module runs (:data:`nucleai.models.KINDS`); a bundled choice that
    #: does not exist is reported with the bundled models of this kind.
    MODEL_KIND = "starconvex"

    def model_is_automatic(self):
        """Whether the model is chosen per image (:data:`MODEL_AUTOMATIC`), not by the user."""
        return self.model_source == MODEL_BUNDLED and self.bundled_model.value == MODEL_AUTOMATIC

    def _model_setting(self):
        """The setting that names the model: the bundled choice or the folder."""
        return self.bundled_model if self.model_source == MODEL_BUNDLED else self.model_folder

    def _model_location(self):
        """The chosen model folder (not yet checked)."""
        if self.model_source == MODEL_BUNDLED:
            return models.bundled_model_dir(self.bundled_model.value, self.MODEL_KIND)
        if not self.model_folder.custom_path.strip():
            raise InputError("no model folder chosen")
        return self.model_folder.get_absolute_path()

    def _model_spec(self):
        """The chosen model's checked spec (no TensorFlow), for validate_module."""
        return models.read_spec(self._model_location(), self.MODEL_KIND)

    def _load_model(self):
        """The chosen model, built once per process and precision (:func:`nucleai.models.load`),
        after the GPU memory cap is applied (the module's :class:`_network_settings.NetworkSettings`)."""
        self.prepare_network()
        return models.load(self._model_location(), self.MODEL_KIND, self.network_precision())

    def _model_error(self, error):
        """``error`` as an InputError naming this module and the model setting."""
        return InputError(f"{self.module_name}: setting '{self._model_setting().text}': {error}")
