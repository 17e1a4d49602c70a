"""Running slices: local processes or one Slurm array job, checked as each ends, and retries.

Both schedulers run the same CellProfiler command per slice (:func:`slice_command`) and leave
its exit status in the slice's folder, so one check serves both.
"""
import shlex
import subprocess
import sys
import time

from ..errors import InputError
from .batchfile import cellprofiler_command
from .checks import check_slice
from .layout import (BATCH_FILE, SLICES, SLURM_SCRIPT, environment, is_ok, mark_ok, reset_slice,
                     slice_dir)


def slice_command(output_dir, piece, plugins_dir):
    """The CellProfiler command line that runs ``piece`` of ``output_dir``'s batch file."""
    folder = slice_dir(output_dir, piece)
    return cellprofiler_command(
        "-p", output_dir / BATCH_FILE, "-f", piece.first, "-l", piece.last,
        "-o", folder / "output", "-d", folder / "done", plugins_dir=plugins_dir)


class Progress:
    """Slices done and failed, and images per minute, printed as each slice finishes."""

    def __init__(self, total_slices, already_done, stream=sys.stderr):
        self.total, self.done, self.failed = total_slices, already_done, 0
        self.images, self.start, self.stream = 0, time.monotonic(), stream

    def finished(self, piece, problem):
        if problem is None:
            self.done += 1
            self.images += piece.size
        else:
            self.failed += 1
        minutes = (time.monotonic() - self.start) / 60
        rate = self.images / minutes if minutes > 0 else 0.0
        what = "done" if problem is None else f"FAILED: {problem}"
        print(f"nucleai batch: {piece.describe()} {what}; {self.done}/{self.total} slices done, "
              f"{self.failed} failed, {rate:.1f} images/min", file=self.stream, flush=True)


def run_local(output_dir, pieces, plan, jobs, on_finished, poll_seconds=0.5):
    """Run ``pieces`` as local CellProfiler processes, ``jobs`` at a time."""
    waiting, running = list(pieces), {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                piece = waiting.pop(0)
                folder = reset_slice(output_dir, piece)
                log = open(folder / "cellprofiler.log", "w")
                process = subprocess.Popen(
                    slice_command(output_dir, piece, plan.plugins_dir), stdout=log,
                    stderr=subprocess.STDOUT, cwd=folder, env=environment())
                running[piece] = (process, log)
            for piece, (process, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                (slice_dir(output_dir, piece) / "exit_status").write_text(
                    f"{process.returncode}\n")
                del running[piece]
                on_finished(piece)
            time.sleep(poll_seconds)
    finally:  # interrupted: stop the slices still running (they have no exit status: rerun)
        for process, log in running.values():
            process.terminate()
            process.wait()
            log.close()


def slurm_script(output_dir, pieces, plan):
    """The array job script: task ``N`` runs slice ``N`` and records CellProfiler's exit status.

    It is written next to the batch file, so it can be read or resubmitted by hand.
    """
    cases = "\n".join(
        f"  {piece.index}) {shlex.join(slice_command(output_dir, piece, plan.plugins_dir))}"
        f" > {shlex.quote(str(slice_dir(output_dir, piece) / 'cellprofiler.log'))} 2>&1 ;;"
        for piece in pieces)
    return (
        "#!/bin/bash\n"
        f"# nucleai batch: one slice of {output_dir / BATCH_FILE} per array task.\n"
        f"cd {shlex.quote(str(output_dir))}\n"
        'case "$SLURM_ARRAY_TASK_ID" in\n'
        f"{cases}\n"
        '  *) echo "no slice $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;\n'
        "esac\n"
        "status=$?\n"
        f"echo $status > {shlex.quote(str(output_dir / SLICES))}"
        "/slice_$SLURM_ARRAY_TASK_ID/exit_status\n"
        "exit $status\n"
    )


def run_slurm(output_dir, pieces, plan, jobs, sbatch_args, on_finished, poll_seconds=2.0):
    """Run ``pieces`` as one Slurm array job (task N = slice N) and wait for all its tasks.

    ``sbatch_args`` (partition, memory, time, ...) are passed to sbatch before nucleai's own
    ``--array``, ``--output`` and ``--parsable``. ``jobs`` caps the tasks running at once.

    Raises
    ------
    InputError
        If sbatch refuses the job (its message is included).
    """
    script = output_dir / SLURM_SCRIPT
    script.write_text(slurm_script(output_dir, pieces, plan))
    for piece in pieces:
        reset_slice(output_dir, piece)
    array = ",".join(str(piece.index) for piece in pieces) + (f"%{jobs}" if jobs else "")
    command = ["sbatch", *sbatch_args, f"--array={array}", "--parsable", "--job-name=nucleai",
               f"--output={output_dir / SLICES}/slice_%a/slurm.out", str(script)]
    try:
        submitted = subprocess.run(command, capture_output=True, text=True, env=environment())
    except FileNotFoundError:
        raise InputError("--scheduler slurm: sbatch not found (is Slurm installed here?)")
    if submitted.returncode != 0:
        raise InputError(f"sbatch refused the job ({shlex.join(command)}): "
                         f"{submitted.stderr.strip()}")
    job = submitted.stdout.strip().split(";")[0]
    print(f"nucleai batch: Slurm job {job}, array {array}", file=sys.stderr, flush=True)
    pending = list(pieces)
    try:
        while pending:
            time.sleep(poll_seconds)
            # One line per array task ("JOB_N") while it is pending or running; none once it
            # ended (squeue fails once Slurm has forgotten the job: all ended).
            queued = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i"],
                                    capture_output=True, text=True)
            in_queue = set(queued.stdout.split()) if queued.returncode == 0 else set()
            for piece in list(pending):
                if f"{job}_{piece.index}" not in in_queue:
                    pending.remove(piece)
                    on_finished(piece)
    finally:  # interrupted: cancel what is left of the job (those slices are rerun next time)
        if pending:
            subprocess.run(["scancel", job], capture_output=True)


def run_slices(output_dir, plan, scheduler, jobs, retries, sbatch_args=(), stream=sys.stderr):
    """Run every slice of ``plan`` not yet marked good, retrying failures ``retries`` times.

    Returns
    -------
    dict
        Slice -> why it failed, for the slices still failing after the last attempt (empty
        when all passed).
    """
    todo = [piece for piece in plan.slices if not is_ok(output_dir, piece)]
    progress = Progress(len(plan.slices), len(plan.slices) - len(todo), stream)
    if len(todo) < len(plan.slices):
        print(f"nucleai batch: resuming: {len(plan.slices) - len(todo)} of {len(plan.slices)} "
              "slices already done", file=stream, flush=True)
    failures = {}
    for attempt in range(retries + 1):
        if not todo:
            break
        if attempt:
            print(f"nucleai batch: retry {attempt} of {retries}: "
                  f"{', '.join(piece.describe() for piece in todo)}", file=stream, flush=True)
        failures, progress.failed = {}, 0

        def finished(piece):
            problem = check_slice(output_dir, piece, plan.modules)
            if problem is None:
                mark_ok(output_dir, piece)
            else:
                failures[piece] = problem
            progress.finished(piece, problem)

        if scheduler == "local":
            run_local(output_dir, todo, plan, jobs or 1, finished)
        else:
            run_slurm(output_dir, todo, plan, jobs, list(sbatch_args), finished)
        todo = sorted(failures, key=lambda piece: piece.index)
    return failures
