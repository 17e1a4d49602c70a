"""Errors that carry a message meant for the user, not a traceback.

Backend functions raise ``InputError`` when the input is wrong in a way the user can fix (a missing
model folder, a wrong channel count, an empty image). The CLI prints the message and exits 2; the
CellProfiler modules re-raise it with the name of the setting involved.
"""


class InputError(ValueError):
    """Bad input the user can fix; the message names the file, folder or parameter involved."""
