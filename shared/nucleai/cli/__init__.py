"""The ``nucleai`` command line.

Each subcommand lives in its own module of this package and exposes two functions:
``add_parser(subparsers)`` registers its arguments and ``run(args) -> int`` does the work.
Adding a subcommand means adding its module name to ``SUBCOMMANDS``; nothing else changes.
Heavy imports (TensorFlow, CellProfiler) belong inside ``run`` so ``nucleai --help`` stays fast.
"""
import argparse
import importlib
import sys

from .._version import __version__
from ..errors import InputError

SUBCOMMANDS = ("segment", "evaluate", "thresholds", "train", "refine", "merge", "batch")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nucleai",
        description="Deep-learning nucleus segmentation for CellProfiler users: "
        "star-convex detection, nucleAIzer refinement, test-time augmentation, DSB evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"nucleai {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        subparser = module.add_parser(subparsers)
        subparser.set_defaults(run=module.run)
    return parser


def check_axes_flag(axes):
    """Refuse bad ``--axes`` letters before any image is read (each image would fail alike)."""
    from ..labelio import check_axes

    if axes is not None:
        try:
            check_axes(axes)
        except InputError as error:
            raise InputError(f"--axes: {error}", error.field) from None


def add_network_flags(parser):
    """``--precision`` and ``--gpu-memory``, for the subcommands that run a network."""
    from ..runtime import GPU_MEMORY_VARIABLE, PRECISIONS

    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="arithmetic of the networks: auto (default) = bfloat16 where the CPU (AMX, "
        "AVX512-BF16) or GPU (Ampere on) computes it natively, float32 elsewhere; the choice and "
        "why are printed",
    )
    parser.add_argument(
        "--gpu-memory", type=int, metavar="MB",
        help="most GPU memory TensorFlow may take, in megabytes (0: as needed; default: "
        f"{GPU_MEMORY_VARIABLE} or as needed); ignored without a GPU",
    )


def apply_network_flags(args):
    """Apply ``--gpu-memory`` (before any model loads) and return the :class:`Precision` that
    ``--precision`` resolves to on this machine."""
    from ..runtime import limit_gpu_memory, resolve_precision

    if args.gpu_memory is not None:
        limit_gpu_memory(args.gpu_memory, "--gpu-memory")
    return resolve_precision(args.precision, "--precision")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except InputError as error:
        print(f"nucleai {args.command}: error: {error}", file=sys.stderr)
        return 2
