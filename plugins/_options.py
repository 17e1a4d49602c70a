"""Options objects from module settings, with errors pinned to the setting at fault.

Every nucleai module builds its backend options object (``nucleai.predict.SegmentOptions`` and
the like) from its settings in one method, and calls it from ``validate_module`` (so a pipeline
with a bad value fails validation in the GUI and headless, naming the setting) and from ``run``.
The options object raises :class:`nucleai.errors.InputError` with the field at fault; this maps
the field back to the setting, so no module re-checks a range or parses a message.
CellProfiler does not load files starting with ``_`` from the plugins folder as modules, but the
folder is on ``sys.path`` while the modules are imported, so they can import this one.
"""
from cellprofiler_core.setting import ValidationError

from nucleai.errors import InputError


def options_from_settings(build, setting_for_field, fallback):
    """``build()``, with an :class:`InputError` turned into a ``ValidationError``.

    Parameters
    ----------
    build : callable
        Makes the options object from the module's settings.
    setting_for_field : dict
        Options field name -> the setting that sets it.
    fallback : Setting
        The setting blamed for an error without a known field.

    Raises
    ------
    ValidationError
        Naming (and attached to) the setting of the field at fault.
    """
    try:
        return build()
    except InputError as error:
        setting = setting_for_field.get(error.field, fallback)
        raise ValidationError(f"setting '{setting.text}': {error}", setting) from error
