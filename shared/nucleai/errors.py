"""Errors that carry a message meant for the user, not a traceback.

Backend functions raise ``InputError`` when the input is wrong in a way the user can fix (a missing
model folder, a wrong channel count, an empty image). The CLI prints the message and exits 2; the
CellProfiler modules re-raise it against the setting involved.

An error about one option of an operation (a field of an options object such as
:class:`nucleai.predict.SegmentOptions`) carries that field's name in ``field``, so the CLI can
name its flag and a module its setting without reading the message text.
"""


class InputError(ValueError):
    """Bad input the user can fix; the message names the file, folder or parameter involved.

    Parameters
    ----------
    message : str
    field : str, optional
        The options field at fault (``"prob_thresh"``, ``"min_votes"``, ...), when there is one.
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def about_file(path, error):
    """The message of ``error`` prefixed with ``path``, unless it already names that file first.

    Reading functions name the file themselves; a loop over files that reports any per-file
    error with its path would otherwise print the path twice.
    """
    message, prefix = str(error), f"{path}: "
    return message if message.startswith(prefix) else prefix + message
