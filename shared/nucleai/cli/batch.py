"""``nucleai batch``: run a CellProfiler pipeline over a screen as checked, resumable slices.

What a cluster user does by hand, in one command (the steps are those of :mod:`nucleai.batch`):
CreateBatchFiles writes ``OUTPUT/Batch_data.h5`` (with ``--path-mapping`` applied), the image
sets are cut into ``--slices`` slices run as local processes (``--scheduler local``, ``--jobs``
at a time) or as one Slurm array job (``--scheduler slurm``), each slice's exit status, done
file and log are checked (a slice whose pipeline did not load, that hit a module error or that
left a module unrun is a failure, named), failures are retried ``--retries`` times, and the
slices' ExportToSpreadsheet tables are merged into ``OUTPUT/`` (equal to one full run's); the
other files they wrote are gathered there too.

Running the same command again resumes: only slices not yet marked good run. The exit status is
0 when every slice passed, 1 when some still fail (each is listed with its log), 2 on bad input.
"""
import shutil
import sys
from pathlib import Path

from ..errors import InputError
from ..options import check_number

SCHEDULERS = ("local", "slurm")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "batch",
        help="run a CellProfiler pipeline over many images as checked slices (local or Slurm)",
        description="Write a CellProfiler batch file for --pipeline over --images (or "
        "--file-list), run it as --slices slices locally or as a Slurm array, check and retry "
        "the slices, and merge their CSV tables into --output. Run it again to resume.",
    )
    parser.add_argument("--pipeline", required=True, type=Path, metavar="FILE",
                        help="the CellProfiler pipeline (.cppipe); CreateBatchFiles is added")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR",
                        help="folder of images (all files below it, as cellprofiler -i)")
    source.add_argument("--file-list", type=Path, metavar="FILE",
                        help="CellProfiler file list: one image path or URL per line")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="folder for the batch file, the slices and the merged results "
                        "(new, or a previous run of the same inputs to resume)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="local",
                        help="run the slices as local processes (default) or as a Slurm array job")
    parser.add_argument("--slices", type=int, metavar="N",
                        help="number of slices (default: --jobs, or 1); groups are never split")
    parser.add_argument("--jobs", type=int, metavar="J",
                        help="slices running at once: local processes (default 1) or Slurm "
                        "array tasks (default: no limit)")
    parser.add_argument("--retries", type=int, default=0, metavar="R",
                        help="run failed slices again up to R times (default 0)")
    parser.add_argument("--path-mapping", nargs=2, action="append", default=[],
                        metavar=("LOCAL", "CLUSTER"),
                        help="CreateBatchFiles path mapping: paths starting with LOCAL start with "
                        "CLUSTER in the batch file (images, model and output folders); repeatable")
    parser.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                        help="with --scheduler slurm: passed to sbatch, e.g. "
                        "--sbatch-arg=--partition=short --sbatch-arg=--mem=8G; repeatable")
    parser.add_argument("--plugins-directory", type=Path, metavar="DIR",
                        help="CellProfiler plugins folder for every run (default: nucleai's "
                        "plugins/)")
    return parser


def _check_args(args):
    """Every argument problem, before anything is written."""
    from ..batch import DEFAULT_PLUGINS

    if not args.pipeline.is_file():
        raise InputError(f"--pipeline {args.pipeline}: no such file")
    if args.images is not None and not args.images.is_dir():
        raise InputError(f"--images {args.images}: no such folder")
    if args.file_list is not None and not args.file_list.is_file():
        raise InputError(f"--file-list {args.file_list}: no such file")
    if args.output.exists() and not args.output.is_dir():
        raise InputError(f"--output {args.output} is a file")
    for option, value, low in (("--slices", args.slices, 1), ("--jobs", args.jobs, 1),
                               ("--retries", args.retries, 0)):
        if value is not None:
            check_number(value, option, low=low, integer=True)
    plugins = args.plugins_directory or DEFAULT_PLUGINS
    if not plugins.is_dir():
        raise InputError(f"--plugins-directory {plugins}: no such folder")
    if args.scheduler == "slurm":
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise InputError("--scheduler slurm: sbatch/squeue not found (is Slurm installed?)")
    elif args.sbatch_arg:
        raise InputError("--sbatch-arg needs --scheduler slurm")
    return plugins


def run(args):
    from .. import batch

    plugins = _check_args(args)
    output = args.output.resolve()
    n_slices = args.slices or args.jobs or 1
    plan = batch.prepare(
        args.pipeline.resolve(), output,
        images=None if args.images is None else args.images.resolve(),
        file_list=None if args.file_list is None else args.file_list.resolve(),
        mappings=[tuple(pair) for pair in args.path_mapping], n_slices=n_slices,
        plugins_dir=plugins)
    n_images = sum(piece.size for piece in plan.slices)
    print(f"nucleai batch: {n_images} image sets in {len(plan.slices)} slices "
          f"({args.scheduler})", file=sys.stderr, flush=True)
    failures = batch.run_slices(output, plan, args.scheduler, args.jobs, args.retries,
                                sbatch_args=args.sbatch_arg)
    if failures:
        for piece, problem in sorted(failures.items(), key=lambda item: item[0].index):
            print(f"nucleai batch: error: {piece.describe()}: {problem}", file=sys.stderr)
        print(f"nucleai batch: {len(failures)} of {len(plan.slices)} slices failed; run the same "
              "command again to rerun only those", file=sys.stderr)
        return 1
    tables, n_files = batch.merge_outputs(plan, output)
    print(f"nucleai batch: {n_images} image sets, {len(plan.slices)} slices; merged "
          f"{', '.join(table.name for table in tables) or 'no tables'} and {n_files} other "
          f"files -> {output}")
    return 0
