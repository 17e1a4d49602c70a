"""``nucleai train``: train a star-convex nucleus detector into a StarDist-layout model folder.

Images in ``--images`` are paired with label images in ``--labels`` by file stem; every image
needs its label image. Validation images come from ``--val-images``/``--val-labels`` or, by
default, a random ``--val-fraction`` of the annotated images (seeded). Training runs epochs of
``--steps`` minibatches with conventional augmentation, keeps the weights with the best
validation loss, stops early when the validation loss no longer improves, or when the
``--minutes`` budget is used up, or at Ctrl-C; running the same command again resumes (only the
same command: other images or settings are refused, saying what differs, and ``--restart``
starts afresh in the folder; ``--epochs`` and ``--minutes`` may change). The thresholds are
then tuned on the validation images for the mean DSB score, and MODEL.md records the data,
settings, validation scores and this command. ``--base`` fine-tunes an existing model (its
architecture, rays, grid and channels are kept, except that a grey base is widened to colour
input for a colour network). The input channels are ``--channels``, else the resumed model's,
else 3 when any image has colour, else the base model's, else 1.

With ``--unlabeled DIR`` (unannotated images of the target kind) and ``--style`` (the default
when unannotated images are given), nucleAIzer's style augmentation runs first: the unannotated
images are clustered by style, one mask-to-image generator is trained per style on annotated
images of that style and on a first-pass segmentation (``--first-pass``, default ``--base``) of
the unannotated ones, and ``--synthetic-per-style`` synthetic annotated images per style make
up ``--synthetic-share`` of every minibatch. The generators, synthetic pairs and a PNG grid of
real against synthetic samples per style are kept in the model folder under ``styles/``.
"""
import argparse
import shlex
import sys
from pathlib import Path

from ..errors import InputError
from .outputs import check_folder


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train",
        help="train (or fine-tune) a star-convex nucleus detector on annotated images",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of training images")
    parser.add_argument("--labels", required=True, type=Path, metavar="DIR",
                        help="folder of their label images (same stems)")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL_DIR",
                        help="model folder to write (resumed when it holds an unfinished run)")
    parser.add_argument("--restart", action="store_true",
                        help="start afresh in a --out folder holding a checkpoint of another run "
                        "(its checkpoints, model, card and styles are deleted)")
    parser.add_argument("--val-images", type=Path, metavar="DIR", help="folder of validation images")
    parser.add_argument("--val-labels", type=Path, metavar="DIR", help="folder of their label images")
    parser.add_argument("--val-fraction", type=float, default=0.15, metavar="F",
                        help="without --val-images: share of the annotated images held out for "
                        "validation (default 0.15)")
    parser.add_argument("--base", metavar="NAME_OR_DIR", help="model to fine-tune (bundled name or folder)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="input channels of the network")
    parser.add_argument("--steps", type=int, default=100, metavar="N", help="minibatches per epoch (default 100)")
    parser.add_argument("--epochs", type=int, default=100, metavar="N", help="maximum epochs (default 100)")
    parser.add_argument("--minutes", type=float, metavar="M", help="wall-clock budget of this run")
    parser.add_argument("--patch-size", type=int, nargs="+", default=[256], metavar="PX",
                        help="training patch size, one value (square) or two (height width); "
                        "a multiple of 16 for the default network (default 256)")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="patches per minibatch (default 4)")
    parser.add_argument("--learning-rate", type=float, default=3e-4, metavar="LR", help="Adam learning rate (default 3e-4)")
    parser.add_argument("--patience", type=int, default=25, metavar="N",
                        help="stop after N epochs without a better validation loss (0: never; default 25)")
    parser.add_argument("--invert-prob", type=float, default=0.0, metavar="P",
                        help="probability of inverting a training patch's contrast (default 0; "
                        "use e.g. 0.3 for a model meant for dark nuclei on bright backgrounds too)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (split, patches, augmentation, weights)")
    style = parser.add_argument_group("style augmentation (nucleAIzer)")
    style.add_argument("--unlabeled", type=Path, metavar="DIR",
                       help="folder of unannotated images of the target kind (style input)")
    style.add_argument("--style", action=argparse.BooleanOptionalAction, default=None,
                       help="style augmentation (default: on when --unlabeled is given)")
    style.add_argument("--first-pass", metavar="NAME_OR_DIR",
                       help="model segmenting the unannotated images for their generators (default: --base)")
    style.add_argument("--styles", type=int, metavar="K", help="number of style clusters (default: chosen)")
    style.add_argument("--min-style-images", type=int, default=3, metavar="N",
                       help="styles with fewer unannotated images are dropped (default 3)")
    style.add_argument("--synthetic-per-style", type=int, default=20, metavar="N",
                       help="synthetic annotated images per style (default 20)")
    style.add_argument("--synthetic-share", type=float, default=0.3, metavar="F",
                       help="mean share of synthetic images in each minibatch, 0.1-0.5 (default 0.3)")
    style.add_argument("--generator-minutes", type=float, default=10.0, metavar="M",
                       help="training budget of each style's generator (default 10)")
    style.add_argument("--generator-size", type=int, default=256, metavar="PX",
                       help="crop size the generators train on (default 256)")
    return parser


def _command(args):
    """The command line that reproduces this run, every option spelled out."""
    parts = ["nucleai", "train"]
    for option in ("images", "labels", "val_images", "val_labels", "out", "base", "channels"):
        value = getattr(args, option)
        if value is not None:
            parts += [f"--{option.replace('_', '-')}", str(value)]
    if args.val_images is None:
        parts += ["--val-fraction", f"{args.val_fraction:g}"]
    parts += ["--steps", str(args.steps), "--epochs", str(args.epochs)]
    if args.minutes is not None:
        parts += ["--minutes", f"{args.minutes:g}"]
    parts += ["--patch-size", *[str(p) for p in args.patch_size], "--batch-size", str(args.batch_size),
              "--learning-rate", f"{args.learning_rate:g}", "--patience", str(args.patience),
              "--invert-prob", f"{args.invert_prob:g}", "--seed", str(args.seed)]
    if args.unlabeled is not None:
        parts += ["--unlabeled", str(args.unlabeled)]
    if _style_on(args):
        if args.first_pass is not None:
            parts += ["--first-pass", str(args.first_pass)]
        if args.styles is not None:
            parts += ["--styles", str(args.styles)]
        parts += ["--min-style-images", str(args.min_style_images),
                  "--synthetic-per-style", str(args.synthetic_per_style),
                  "--synthetic-share", f"{args.synthetic_share:g}",
                  "--generator-minutes", f"{args.generator_minutes:g}",
                  "--generator-size", str(args.generator_size)]
    elif args.unlabeled is not None:
        parts.append("--no-style")
    return " ".join(shlex.quote(part) for part in parts)


def _style_on(args):
    """Style augmentation is on when asked, or by default when unannotated images are given."""
    return args.style if args.style is not None else args.unlabeled is not None


#: TrainOptions field -> the flag that sets it (and the other arguments' error fields).
FLAGS = {
    "steps_per_epoch": "--steps", "epochs": "--epochs", "minutes": "--minutes", "patch_size": "--patch-size",
    "batch_size": "--batch-size", "learning_rate": "--learning-rate", "patience": "--patience",
    "invert_prob": "--invert-prob", "seed": "--seed", "val_fraction": "--val-fraction",
    "channels": "--channels", "style": "--style/--unlabeled", "n_styles": "--styles",
    "min_per_style": "--min-style-images", "pairs_per_style": "--synthetic-per-style",
    "synthetic_share": "--synthetic-share", "generator_minutes": "--generator-minutes",
    "generator_size": "--generator-size", "out": "--out", "base": "--base", "first_pass": "--first-pass",
    "labels": "--labels", "resume": "--out",
}
#: What the command line adds to an error of a field: how to fix it here.
HINTS = {"resume": " (--restart starts afresh, deleting that run's checkpoints)"}


def _options(args):
    from ..train.options import TrainOptions

    return TrainOptions(
        steps_per_epoch=args.steps, epochs=args.epochs, minutes=args.minutes, patch_size=args.patch_size,
        batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
        invert_prob=args.invert_prob, seed=args.seed, val_fraction=args.val_fraction, channels=args.channels,
        style=_style_on(args), n_styles=args.styles, min_per_style=args.min_style_images,
        pairs_per_style=args.synthetic_per_style, synthetic_share=args.synthetic_share,
        generator_minutes=args.generator_minutes, generator_size=args.generator_size,
    )


def run(args):
    try:
        return _train(args)
    except InputError as error:
        if error.field in FLAGS:
            raise InputError(f"{FLAGS[error.field]}: {error}{HINTS.get(error.field, '')}", error.field) from None
        raise
    except KeyboardInterrupt:
        print(f"nucleai train: interrupted; {_resumable(args.out)}", file=sys.stderr, flush=True)
        return 130


def _resumable(out):
    """What an interrupted run left in ``out``, in words."""
    import json

    from ..train.loop import STATE_FILE

    try:
        epochs = json.loads((out / STATE_FILE).read_text())["epochs_done"]
    except (OSError, ValueError, KeyError):
        return "no epoch was finished, so there is nothing to resume"
    return f"{out} holds the checkpoint after epoch {epochs}: run the same command again to continue"


def _check_folders(args):
    """--out must not be an input folder (the model's files would mix with the images)."""
    inputs = {"--images": args.images, "--labels": args.labels, "--val-images": args.val_images,
              "--val-labels": args.val_labels, "--unlabeled": args.unlabeled}
    for flag, folder in inputs.items():
        if folder is not None and folder.resolve() == args.out.resolve():
            raise InputError(f"--out must differ from {flag} (the model's files would mix with the images)")


def _train(args):
    from ..labelio import IMAGE_SUFFIXES, read_image
    from ..train import data
    from ..train.run import STOPPED, check_setup, run_training

    if (args.val_images is None) != (args.val_labels is None):
        raise InputError("give both --val-images and --val-labels, or neither (then --val-fraction is used)")
    _check_folders(args)
    check_folder(args.out, "--out")
    options = _options(args)
    check_setup(options, args.out, base=args.base, first_pass=args.first_pass,  # before reading any image
                restart=args.restart)
    samples = data.read_samples(args.images, args.labels, IMAGE_SUFFIXES, read_image)
    description = [f"training images: {args.images.resolve()}, labels: {args.labels.resolve()}"]
    val = None
    if args.val_images is not None:
        val = data.read_samples(args.val_images, args.val_labels, IMAGE_SUFFIXES, read_image)
        description.append(f"validation images: {args.val_images.resolve()}, labels: {args.val_labels.resolve()}")
    unlabeled = []
    if args.unlabeled is not None:
        unlabeled = data.read_images(args.unlabeled, IMAGE_SUFFIXES, read_image)
        description.append(f"unannotated images: {args.unlabeled.resolve()} ({len(unlabeled)})")
    trained = run_training(
        samples, args.out, options, val=val, unlabeled=unlabeled, base=args.base, first_pass=args.first_pass,
        restart=args.restart, data_description=description, command=_command(args), progress=sys.stderr.isatty(),
        log=lambda message: print(message, flush=True),
    )
    if trained.styles is not None:
        print("styles: " + "; ".join(trained.styles.describe()))
    result, training = trained.detector, trained.detector.training
    print(f"{training.epochs_done} epochs ({STOPPED[training.stopped]}); best epoch {training.best_epoch}, "
          f"validation loss {training.best_val_loss:.4f}")
    print(f"validation: mean DSB score {result.validation.dsb_score:.4f}, score at IoU 0.5 "
          f"{result.validation.score[0]:.4f} (prob_thresh {result.prob_thresh:g}, nms_thresh {result.nms_thresh:g})")
    print(f"model written to {result.out_dir} (see MODEL.md)")
    return 0
