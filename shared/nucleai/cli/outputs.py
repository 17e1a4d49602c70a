"""Where the subcommands write: output folders and report files, checked in one place.

Every subcommand checks its outputs (``--output``, ``--out``, ``--timings``, ``--csv``,
``--json``, ``--table``, ``--report``, the model folder of ``--write``) before it reads any image,
so a long run is not lost at its end to a typo, and turns the operating system's refusal of a
write (no such folder, a file where a folder should be, a read-only folder, a full disk) into an
:class:`~nucleai.errors.InputError` naming the flag and the path, never a traceback.

The checks leave nothing behind (a folder's writability is probed with an unnamed temporary
file); :func:`make_folder`, :func:`writing` and :func:`write_text` do the writing, and
:func:`remove_stale` removes what an earlier run wrote for an image that failed this time.
"""
import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import InputError


def _refusal(error):
    """The operating system's reason in words (``Permission denied``, ``Read-only file system``)."""
    return error.strerror or type(error).__name__


def _exists(path, flag, given):
    """Whether ``path`` exists; InputError naming ``flag`` for a path the system cannot even look
    up (a name too long, a null byte)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as error:
        reason = _refusal(error) if isinstance(error, OSError) else str(error)
        raise InputError(f"{flag} {given}: not a usable path ({reason})") from None
    return True


def _nearest_existing(path, flag):
    """``path`` or its nearest ancestor that exists."""
    given, path = path, Path(os.path.abspath(path))
    while not _exists(path, flag, given) and path != path.parent:
        path = path.parent
    return path


def _check_writable_folder(folder, flag, path):
    """InputError unless a file can be created in the existing folder ``folder``.

    A probe file is created and removed: permission bits alone say nothing for root, and
    immutable folders or read-only file systems refuse root too.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InputError(f"{flag} {path}: cannot write into {folder} ({_refusal(error)})") from None


def check_folder(path, flag):
    """Check that ``path`` is, or can be created as, a folder this process can write into.

    Parameters
    ----------
    path : Path
    flag : str
        The option that names it (``--output``), for the message.

    Raises
    ------
    InputError
        If ``path`` is not a usable path (too long), ``path`` or one of its ancestors is a file,
        or the folder (or its nearest existing ancestor, where it will be created) refuses new
        files.
    """
    existing = _nearest_existing(path, flag)
    if not existing.is_dir():
        what = "is a file" if existing == Path(os.path.abspath(path)) else f"is inside the file {existing}"
        raise InputError(f"{flag} {path}: {what}; a folder is needed")
    _check_writable_folder(existing, flag, path)


def check_file(path, flag):
    """Check that ``path`` can be written as a file: its folder exists and takes new files.

    Raises
    ------
    InputError
        If ``path`` is a folder, its folder does not exist or is a file, or (for a new file) the
        folder refuses new files, or (for an existing file) the file refuses writing.
    """
    path = Path(path)
    exists = _exists(path, flag, path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    parent = _nearest_existing(path.parent, flag)
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
    if parent != Path(os.path.abspath(path.parent)):
        raise InputError(f"{flag} {path}: folder {path.parent} does not exist")
    if not exists:
        _check_writable_folder(parent, flag, path)
    elif not os.access(path, os.W_OK):  # replaced in place: its folder need not take new files
        raise InputError(f"{flag} {path}: the file is not writable")


def make_folder(path, flag):
    """Create the folder ``path`` (parents included) if missing; InputError naming ``flag``."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{flag} {path}: cannot create the folder ({_refusal(error)})") from None


@contextlib.contextmanager
def writing(path, flag, newline=None):
    """``open(path, "w")`` whose refusal (at opening or while writing) is an InputError naming
    ``flag`` and ``path``."""
    try:
        with open(path, "w", newline=newline) as handle:
            yield handle
    except OSError as error:
        raise InputError(f"{flag} {path}: cannot be written ({_refusal(error)})") from None


def write_text(path, text, flag):
    """Write ``text`` to ``path``; an operating-system refusal is an InputError naming ``flag``."""
    with writing(path, flag) as handle:
        handle.write(text)


def remove_stale(path):
    """Remove the output an earlier run wrote for an image that failed in this run.

    Left in place, it would pass for this run's result. Returns what was done, in words for the
    error line (``None`` when there was no such file).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        path.unlink()
    except OSError as error:
        return f"{path} is from an earlier run and could not be removed ({_refusal(error)})"
    return f"removed {path} from an earlier run"
