"""Options objects from module settings, with errors pinned to the setting at fault.

Every nucleai module builds its backend options object (``nucleai.predict.SegmentOptions`` and
the like) from its settings in one method, and calls it from ``validate_module`` and ``run``.
The GUI calls ``validate_module``; a headless ``cellprofiler -c -r`` run never does, so every
module also calls :func:`validate_before_run` from ``prepare_run``: a pipeline with a bad value
then stops before the first image set, naming the setting, with a non-zero exit.
The options object raises :class:`nucleai.errors.InputError` with the field at fault; this maps
the field back to the setting, so no module re-checks a range or parses a message.
CellProfiler does not load files starting with ``_`` from the plugins folder as modules, but the
folder is on ``sys.path`` while the modules are imported, so they can import this one.
"""
import logging

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


def typed_number(setting):
    """The number a number setting holds as typed, or the text when it is no number.

    CellProfiler's ``Float`` and ``Integer`` settings keep their last valid value in ``value``
    when a pipeline file holds one outside ``minval`` / ``maxval``; the text is what the pipeline
    says. Passing this into an options object lets the out-of-range value reach its check.
    """
    try:
        return setting.str_to_value(setting.value_text)
    except ValueError:
        return setting.value_text


def validate_before_run(module, pipeline):
    """Validate ``module`` as the GUI does (each visible setting's own check, then
    ``validate_module``); on failure report it, naming the module and setting, and return False.

    CellProfiler's headless run (``cellprofiler -c -r``) validates no module, so a module returns
    this from ``prepare_run``: a pipeline with a bad value stops before the first image set, with
    exit status 1 and one line in the log (the GUI shows the same words in a message box), not a
    traceback.
    """
    try:
        for setting in module.visible_settings():
            try:
                setting.test_valid(pipeline)
            except ValidationError as error:
                raise ValidationError(f"setting '{setting.text}': {error.message}", setting) from error
        module.validate_module(pipeline)
    except ValidationError as error:
        message = error.message if error.message.startswith(module.module_name) else (
            f"{module.module_name}: {error.message}"
        )
        logging.getLogger(__name__).error(message)
        pipeline.report_prepare_run_error(module, message)
        return False
    return True


def channel_error(setting, channel, n_image):
    """The error for a channel the image does not have, in the setting's terms: the modules count
    channels from 1, the backend (and its message) from 0."""
    return InputError(
        f"setting '{setting.text}' is {channel + 1} but the image has {n_image} channels, 1 to {n_image}",
        "channel",
    )
