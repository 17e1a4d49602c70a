"""How a module's network runs in this worker: its precision and the GPU memory it may take.

RunStarConvex, TTAMerge and RefineContoursUNet run a network; each has the two settings
*Network precision* and *GPU memory per worker (MB)*, created, applied and recorded here once.
The precision is part of the loaded model (:func:`nucleai.models.load` builds one network per
folder and precision); the GPU memory cap is process-wide (:func:`nucleai.runtime.limit_gpu_memory`)
and must be set before TensorFlow first touches the GPU, so it is applied before the model loads.
The precision a module's network ran in is recorded per image set as the image measurement
``<Category>_Precision_<objects>``. CellProfiler does not load files starting with ``_`` from the
plugins folder as modules, but the folder is on ``sys.path`` while the modules are imported, so
they can import this one.
"""
from cellprofiler_core.constants.measurement import COLTYPE_VARCHAR_FORMAT, IMAGE
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.text import Integer

from nucleai import runtime
from nucleai.errors import InputError

from _options import typed_number

PRECISION_AUTO = "Automatic"
#: Setting value -> :data:`nucleai.runtime.PRECISIONS`.
PRECISION_CHOICES = {PRECISION_AUTO: runtime.AUTO, runtime.FLOAT32: runtime.FLOAT32,
                     runtime.BFLOAT16: runtime.BFLOAT16}
FTR_PRECISION = "Precision"
#: Longest precision name stored.
PRECISION_WIDTH = 16
#: Saved pipelines of the revision before these settings load with these values.
DEFAULT_VALUES = [PRECISION_AUTO, "0"]


def upgrade_with_network_settings(setting_values, variable_revision_number, revision_without):
    """``upgrade_settings`` of a module whose revision ``revision_without`` lacked the two
    settings: such a saved pipeline loads with the defaults appended."""
    if variable_revision_number == revision_without:
        return setting_values + DEFAULT_VALUES, variable_revision_number + 1
    return setting_values, variable_revision_number


class NetworkSettings:
    """Mixin: the precision and GPU memory settings, applied before the model loads.

    A module also has :class:`_failure_policy.FailurePolicy`'s ``STATUS_CATEGORY`` and
    ``status_subject`` (the precision measurement is named like the status).
    """

    def create_network_settings(self):
        self.precision = Choice(
            "Network precision", list(PRECISION_CHOICES), value=PRECISION_AUTO,
            doc=f"""\
The arithmetic the network computes in.

-  *{PRECISION_AUTO}* (default): *{runtime.BFLOAT16}* where the processor computes it natively
   (CPUs with AMX or AVX512-BF16 flags, NVIDIA GPUs from Ampere on), *{runtime.FLOAT32}*
   elsewhere. The log says which was chosen and why.
-  *{runtime.FLOAT32}:* full precision, the same labels on every machine.
-  *{runtime.BFLOAT16}:* half-width arithmetic with float32 weights: about twice as fast where
   native, with probabilities within about 0.02 of float32 and nearly the same objects; slower
   than float32 where the processor lacks it.

The image measurement *<category>_{FTR_PRECISION}* records the precision each image set ran in.""",
        )
        self.gpu_memory = Integer(
            "GPU memory per worker (MB)", 0, minval=0,
            doc=f"""\
*(Ignored without a GPU)* The most GPU memory this CellProfiler worker's TensorFlow may take,
in megabytes, so that several workers can share one GPU. *0*: no cap from this setting (the
environment variable ``{runtime.GPU_MEMORY_VARIABLE}`` sets one for every module; without it
memory is taken as needed). The cap holds for the whole process, so every module of a pipeline
must ask for the same value; it is set before the first model loads.""",
        )

    def network_settings(self):
        return [self.precision, self.gpu_memory]

    def network_precision(self):
        """The precision asked for, in :data:`nucleai.runtime.PRECISIONS` terms."""
        return PRECISION_CHOICES[self.precision.value]

    def prepare_network(self):
        """Apply the GPU memory cap (before the model loads); an InputError names the setting."""
        megabytes = typed_number(self.gpu_memory)
        if megabytes == 0:
            return
        try:
            runtime.limit_gpu_memory(megabytes, self.gpu_memory.text)
        except InputError as error:
            raise InputError(f"{self.module_name}: setting '{self.gpu_memory.text}': {error}") from error

    def precision_feature(self):
        """The precision measurement's name, ``<Category>_Precision_<objects>``."""
        return f"{self.STATUS_CATEGORY}_{FTR_PRECISION}_{self.status_subject()}"

    def precision_column(self):
        return IMAGE, self.precision_feature(), COLTYPE_VARCHAR_FORMAT % PRECISION_WIDTH

    def add_precision(self, workspace):
        """Record the precision the network runs in: what :func:`nucleai.models.load` resolves
        the setting to (the same for every model the automatic model choice may use)."""
        name = runtime.resolve_precision(self.network_precision(), self.precision.text).name
        workspace.measurements.add_image_measurement(self.precision_feature(), name)
