"""``nucleai batch``: slicing, slice checks, retries, merging, and a real local run vs one full run.

The end-to-end tests run the demo pipeline on the 4 bundled images as 2 slices of real headless
CellProfiler processes and compare the merged results with one full run of the same pipeline
(:func:`assert_same_results`, shared with the Slurm test).
"""
import csv
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from cellprofiler_run import java_home, run_pipeline
from nucleai.batch import BATCH_FILE, PLAN_FILE, Plan, Slice, run_slices, schedulers
from nucleai.batch.batchfile import batch_units, write_batch_file
from nucleai.batch.checks import check_slice
from nucleai.batch.layout import is_ok, reset_slice, slice_dir
from nucleai.batch.merge import merge_tables
from nucleai.batch.planning import plan_slices
from nucleai.cli import main
from nucleai.errors import InputError
from testdata import EXAMPLES, IMAGES, REPO

PIPELINE = EXAMPLES / "starconvex_nuclei.cppipe"

# What legitimately differs between a batch run and a full run, and why:
EXCLUDED_COLUMNS = re.compile(r"^ExecutionTime_")  # seconds per module: differ on every run
EXCLUDED_EXPERIMENT_KEYS = {
    "Run_Timestamp",          # when the run started
    "Pipeline_Pipeline",      # the batch run's pipeline has CreateBatchFiles and its folders
    "Pipeline_UserPipeline",  # written by CreateBatchFiles only
    "Path_Mappings",          # written by CreateBatchFiles only
}


def read_table(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def assert_same_results(batch_dir, full_dir):
    """The merged tables and label images of a batch run equal those of one full run."""
    tables = sorted(path.name for path in full_dir.glob("*.csv"))
    assert tables == sorted(path.name for path in batch_dir.glob("*.csv"))
    assert {"Image.csv", "Nuclei.csv", "Cells.csv", "Experiment.csv"} <= set(tables)
    for name in tables:
        full, merged = read_table(full_dir / name), read_table(batch_dir / name)
        if name == "Experiment.csv":
            full, merged = ({key: value for key, value in rows[1:]
                             if key not in EXCLUDED_EXPERIMENT_KEYS} for rows in (full, merged))
            assert merged == full
            continue
        assert merged[0] == full[0], name
        assert len(merged) == len(full), name
        kept = [i for i, column in enumerate(full[0]) if not EXCLUDED_COLUMNS.match(column)]
        for row_merged, row_full in zip(merged[1:], full[1:]):
            assert [row_merged[i] for i in kept] == [row_full[i] for i in kept], name
    labels = sorted(path.name for path in full_dir.glob("*.tiff"))
    assert len(labels) == len(list(IMAGES.glob("*.png")))
    assert labels == sorted(path.name for path in batch_dir.glob("*.tiff"))
    for name in labels:
        np.testing.assert_array_equal(tifffile.imread(batch_dir / name),
                                      tifffile.imread(full_dir / name))


def run_cli(*arguments, timeout=2400):
    """``nucleai ARGUMENTS`` in a subprocess, as a user runs it."""
    env = dict(os.environ, JAVA_HOME=java_home())
    return subprocess.run([sys.executable, "-m", "nucleai.cli", *map(str, arguments)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One full headless run of the demo pipeline: the reference."""
    return run_pipeline(PIPELINE, IMAGES, tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def local_batch(tmp_path_factory):
    output = tmp_path_factory.mktemp("batch") / "screen"
    completed = run_cli("batch", "--pipeline", PIPELINE, "--images", IMAGES, "--output", output,
                        "--scheduler", "local", "--slices", 2, "--jobs", 2)
    return completed, output


# --- slicing -------------------------------------------------------------------------------

def test_slices_split_image_sets_evenly():
    units = [(n, n) for n in range(1, 5)]
    assert plan_slices(units, 2) == [Slice(1, 1, 2), Slice(2, 3, 4)]
    assert [(s.first, s.last) for s in plan_slices([(n, n) for n in range(1, 6)], 3)] == \
        [(1, 2), (3, 4), (5, 5)]


def test_slices_never_split_a_group_and_are_fewer_than_asked_without_enough_groups():
    groups = [(1, 3), (4, 4), (5, 8)]
    assert plan_slices(groups, 2) == [Slice(1, 1, 4), Slice(2, 5, 8)]
    assert plan_slices(groups, 10) == [Slice(1, 1, 3), Slice(2, 4, 4), Slice(3, 5, 8)]
    assert plan_slices(groups, 1) == [Slice(1, 1, 8)]


# --- checking a slice ----------------------------------------------------------------------

MODULES = [(1, "Images"), (2, "RunStarConvex"), (3, "ExportToSpreadsheet")]


def fake_slice(output_dir, piece, log, status="0", done="Complete"):
    folder = reset_slice(output_dir, piece)
    (folder / "cellprofiler.log").write_text(log)
    if status is not None:
        (folder / "exit_status").write_text(status + "\n")
    if done is not None:
        (folder / "done").write_text(done + "\n")


def timing_lines(images, modules=MODULES):
    return "".join(f"Wed Dec  2 05:47:20 2026: Image # {image}, module {name} # {number}: "
                   "CPU_time = 0.01 secs, Wall_time = 0.01 secs\n"
                   for image in images for number, name in modules)


def test_a_slice_that_ran_every_module_on_every_image_set_passes(tmp_path):
    piece = Slice(1, 3, 4)
    fake_slice(tmp_path, piece, timing_lines([3, 4]))
    assert check_slice(tmp_path, piece, MODULES) is None


@pytest.mark.parametrize("log, status, done, expected", [
    # A worker without the plugins: CellProfiler logs the load error, runs the input modules
    # only, writes "Complete" and exits 0.
    ("Failed to load pipeline\nValueError: Could not find the RunStarConvex module\n"
     + timing_lines([3, 4], MODULES[:1]), "0", "Complete",
     "the pipeline did not load: Could not find the RunStarConvex module"),
    ("Error detected during run of module RunStarConvex\n" + timing_lines([3, 4]), "0",
     "Complete", "module error in RunStarConvex"),
    (timing_lines([3]), "0", "Complete",
     "modules did not run: Images (module 1) on image set 4, RunStarConvex (module 2)"),
    (timing_lines([3, 4]), None, None, "no exit status"),
    (timing_lines([3, 4]), "137", "Complete", "CellProfiler exited with status 137"),
    (timing_lines([3, 4]), "0", "Failure", "CellProfiler did not complete: Failure"),
])
def test_a_slice_failure_is_named(tmp_path, log, status, done, expected):
    piece = Slice(1, 3, 4)
    fake_slice(tmp_path, piece, log, status, done)
    assert expected in check_slice(tmp_path, piece, MODULES)


def test_failed_slices_are_retried_and_only_they(tmp_path, monkeypatch):
    """A slice failing once passes on its retry; the slice that passed is not run again."""
    plan = Plan(key="k", slices=[Slice(1, 1, 1), Slice(2, 2, 2)], modules=MODULES[:1],
                plugins_dir=str(tmp_path))
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def command(output_dir, piece, plugins_dir):
        folder = slice_dir(output_dir, piece)
        script = textwrap.dedent(f"""
            import pathlib, sys
            tries = pathlib.Path({str(attempts)!r}) / "{piece.index}"
            tries.write_text(tries.read_text() + "x" if tries.exists() else "x")
            if {piece.index} == 2 and len(tries.read_text()) == 1:
                sys.exit(1)
            (pathlib.Path({str(folder)!r}) / "done").write_text("Complete")
            print("Image # {piece.first}, module Images # 1: CPU_time = 0.00 secs")
        """)
        return [sys.executable, "-c", script]

    monkeypatch.setattr(schedulers, "slice_command", command)
    failures = run_slices(tmp_path, plan, "local", jobs=2, retries=1)
    assert failures == {}
    assert (attempts / "1").read_text() == "x" and (attempts / "2").read_text() == "xx"
    assert is_ok(tmp_path, plan.slices[0]) and is_ok(tmp_path, plan.slices[1])


# --- merging -------------------------------------------------------------------------------

def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def test_merged_tables_keep_image_numbers_and_recount_group_positions(tmp_path):
    pieces = [Slice(1, 1, 2), Slice(2, 3, 3)]
    header = ["ImageNumber", "Group_Number", "Group_Index", "Group_Length", "Count_Nuclei"]
    slice_rows = [[["1", "1", "1", "2", "5"], ["2", "1", "2", "2", "6"]],
                  [["3", "1", "1", "1", "7"]]]
    for piece, rows in zip(pieces, slice_rows):
        output = slice_dir(tmp_path, piece) / "output"
        write_csv(output / "Image.csv", [header] + rows)
        write_csv(output / "Nuclei.csv", [["ImageNumber", "ObjectNumber"]]
                  + [[row[0], "1"] for row in rows])
        write_csv(output / "Experiment.csv", [["Key", "Value"], ["Run_Timestamp", piece.index]])
    merged = merge_tables(pieces, tmp_path)
    assert [path.name for path in merged] == ["Experiment.csv", "Image.csv", "Nuclei.csv"]
    assert read_table(tmp_path / "Image.csv") == [header, ["1", "1", "1", "3", "5"],
                                                  ["2", "1", "2", "3", "6"],
                                                  ["3", "1", "3", "3", "7"]]
    assert read_table(tmp_path / "Nuclei.csv")[1:] == [["1", "1"], ["2", "1"], ["3", "1"]]
    assert read_table(tmp_path / "Experiment.csv") == [["Key", "Value"], ["Run_Timestamp", "1"]]


def test_merge_refuses_image_numbers_outside_the_slice(tmp_path):
    pieces = [Slice(1, 1, 1), Slice(2, 2, 2)]
    for piece, number in zip(pieces, ("1", "1")):
        write_csv(slice_dir(tmp_path, piece) / "output" / "Image.csv",
                  [["ImageNumber"], [number]])
    with pytest.raises(InputError, match="slice 2 .* outside its range"):
        merge_tables(pieces, tmp_path)


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (["--pipeline", "missing.cppipe"], "--pipeline missing.cppipe: no such file"),
    (["--slices", "0"], "--slices must be"),
    (["--retries", "-1"], "--retries must be"),
    (["--sbatch-arg=--partition=x"], "--sbatch-arg needs --scheduler slurm"),
    (["--plugins-directory", "no_such_plugins"], "--plugins-directory no_such_plugins"),
])
def test_bad_arguments_exit_2_with_the_option_named(tmp_path, capsys, arguments, message):
    # argparse keeps the last of a repeated option, so the arguments override the good ones.
    good = ["--pipeline", str(PIPELINE), "--images", str(IMAGES), "--output", str(tmp_path / "o")]
    assert main(["batch", *good, *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_output_folder_of_other_inputs_is_refused(tmp_path, capsys):
    output = tmp_path / "screen"
    output.mkdir()
    (output / PLAN_FILE).write_text(
        Plan(key="other", slices=[], modules=[], plugins_dir="").to_json())
    assert main(["batch", "--pipeline", str(PIPELINE), "--images", str(IMAGES),
                 "--output", str(output)]) == 2
    assert "holds a batch run of other inputs" in capsys.readouterr().err


# --- a real run ----------------------------------------------------------------------------

def test_a_file_list_chooses_the_image_sets(tmp_path):
    """``--file-list``: the batch file holds the listed images only, one unit each."""
    listed = sorted(IMAGES.glob("*.png"))[:2]
    file_list = tmp_path / "files.txt"
    file_list.write_text("".join(f"{path}\n" for path in listed))
    output = tmp_path / "screen"
    output.mkdir()
    modules = write_batch_file(PIPELINE, output, file_list=file_list)
    assert batch_units(output / BATCH_FILE) == [(1, 1), (2, 2)]
    assert (5, "RunStarConvex") in modules and modules[-1][1] == "CreateBatchFiles"



def test_local_batch_equals_one_full_run(local_batch, full_run):
    completed, output = local_batch
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "2/2 slices done, 0 failed" in completed.stderr
    assert "images/min" in completed.stderr
    assert_same_results(output, full_run.output_dir)


def test_rerun_runs_only_the_missing_slice(local_batch, full_run):
    completed, output = local_batch
    assert completed.returncode == 0, completed.stderr[-4000:]
    first_log = output / "slices" / "slice_1" / "cellprofiler.log"
    first_written = first_log.stat().st_mtime_ns
    (output / "slices" / "slice_2" / "ok").unlink()
    for table in output.glob("*.csv"):
        table.unlink()
    again = run_cli("batch", "--pipeline", PIPELINE, "--images", IMAGES, "--output", output,
                    "--slices", 2, "--jobs", 2)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "resuming: 1 of 2 slices already done" in again.stderr
    # the 5 demo image sets (4 fields and the blank one) in 2 slices: 1-3 and 4-5
    assert "slice 2 (image sets 4-5) done" in again.stderr and "slice 1 (" not in again.stderr
    assert first_log.stat().st_mtime_ns == first_written
    assert_same_results(output, full_run.output_dir)


def test_a_worker_without_the_plugins_is_a_named_failure(local_batch, tmp_path):
    """The issue's silent failure: no --plugins-directory, exit 0, nothing run."""
    completed, output = local_batch
    assert completed.returncode == 0, completed.stderr[-4000:]
    (tmp_path / BATCH_FILE).symlink_to(output / BATCH_FILE)
    plan = Plan.from_json((output / PLAN_FILE).read_text())
    plan.slices, plan.plugins_dir = plan.slices[:1], str(tmp_path / "no_plugins")
    (tmp_path / "no_plugins").mkdir()
    failures = run_slices(tmp_path, plan, "local", jobs=1, retries=0)
    assert list(failures) == plan.slices
    assert "Could not find the RunStarConvex module" in failures[plan.slices[0]]
