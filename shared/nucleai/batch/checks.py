"""Whether a slice really ran: its exit status, CellProfiler's done file and its log.

Headless CellProfiler exits 0 and writes "Complete" even when the pipeline did not load (a
worker without ``--plugins-directory``: "Could not find the RunStarConvex module", only the input
modules run), so a scheduler's success means nothing on its own. At ``--log-level INFO``
CellProfiler logs one line per module and image set; a slice passes only if every enabled module
of the batch pipeline has its line for every image set of the slice.
"""
import re

from .layout import slice_dir

MODULE_ERROR = re.compile(r"Error detected during run of module (\w+)")
LOAD_ERROR = re.compile(r"Could not find the (\w+) module")
MODULE_TIMING = re.compile(r"Image # (\d+), module (\w+) # (\d+):")


def check_slice(output_dir, piece, modules):
    """Why ``piece`` failed, or None if it ran every module on every one of its image sets.

    Parameters
    ----------
    output_dir : Path
    piece : Slice
    modules : list of (int, str)
        The enabled modules of the batch pipeline.

    Returns
    -------
    str or None
        The first problem found: no exit status (the job was killed), a pipeline that did
        not load, a module error (named), a non-zero exit, CellProfiler's done file not saying
        ``Complete``, or modules that did not run on some image set (named).
    """
    folder = slice_dir(output_dir, piece)
    status_file = folder / "exit_status"
    if not status_file.is_file():
        return "no exit status: the job ended before CellProfiler finished (killed?)"
    status = status_file.read_text().strip()
    log_file = folder / "cellprofiler.log"
    log = log_file.read_text(errors="replace") if log_file.is_file() else ""
    load_error = LOAD_ERROR.search(log)
    if load_error or "Failed to load pipeline" in log:
        what = load_error.group(0) if load_error else "Failed to load pipeline"
        return f"the pipeline did not load: {what} (wrong --plugins-directory?) (log: {log_file})"
    module_errors = sorted(set(MODULE_ERROR.findall(log)))
    if module_errors:
        return f"module error in {', '.join(module_errors)} (log: {log_file})"
    if status != "0":
        return f"CellProfiler exited with status {status} (log: {log_file})"
    done_file = folder / "done"
    done = done_file.read_text().strip() if done_file.is_file() else "no done file"
    if done != "Complete":
        return f"CellProfiler did not complete: {done} (log: {log_file})"
    ran = {(int(image), int(number)) for image, _, number in MODULE_TIMING.findall(log)}
    missing = [(image, number, name) for image in range(piece.first, piece.last + 1)
               for number, name in modules if (image, number) not in ran]
    if missing:
        shown = ", ".join(f"{name} (module {number}) on image set {image}"
                          for image, number, name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return f"modules did not run: {shown}{more} (log: {log_file})"
    return None
