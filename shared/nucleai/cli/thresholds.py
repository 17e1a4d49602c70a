"""``nucleai tune-thresholds``: tune a model's probability and NMS thresholds on annotated images.

Images in ``--images`` are paired with label images in ``--labels`` by file stem. The search and
its metric (mean DSB score over images) are :func:`nucleai.thresholds.tune_thresholds`. With
``--write`` the best pair is stored in the model folder's ``thresholds.json``, which RunStarConvex
and ``nucleai segment`` then use by default. Use validation images, never training images.
"""
import sys
from pathlib import Path

from ..errors import InputError

#: Options field -> the flag that sets it.
FLAGS = {"prob_thresh": "--prob", "nms_thresh": "--nms"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "tune-thresholds",
        help="tune a star-convex model's probability/NMS thresholds on annotated images",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR", help="bundled model name or model folder")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="folder of validation images")
    parser.add_argument("--labels", required=True, type=Path, metavar="DIR",
                        help="folder of their label images (same stems)")
    parser.add_argument("--prob", type=float, nargs="+", metavar="P", help="probability thresholds to try")
    parser.add_argument("--nms", type=float, nargs="+", metavar="N", help="NMS thresholds to try")
    parser.add_argument("--write", action="store_true", help="store the best pair in the model's thresholds.json")
    return parser


def run(args):
    from .. import labelio, models, thresholds
    from ..labelio import IMAGE_SUFFIXES, read_image

    images = labelio.files_by_stem(args.images, suffixes=IMAGE_SUFFIXES)
    truths = labelio.files_by_stem(args.labels)
    paired = sorted(set(images) & set(truths))
    if not paired:
        raise InputError(f"no image in --images {args.images} has a label image of the same stem in --labels {args.labels}")
    unpaired = sorted(set(images) - set(truths))
    if unpaired:
        print(f"nucleai tune-thresholds: {len(unpaired)} images without labels are left out", file=sys.stderr)
    model = models.load(args.model)
    try:
        search = thresholds.tune_thresholds(
            model,
            [read_image(images[stem]) for stem in paired],
            [labelio.read_labels(truths[stem]) for stem in paired],
            prob_thresholds=args.prob or thresholds.PROB_THRESHOLDS,
            nms_thresholds=args.nms or thresholds.NMS_THRESHOLDS,
        )
    except InputError as error:
        if error.field not in FLAGS:
            raise
        raise InputError(f"{FLAGS[error.field]}: {error}", error.field) from None
    print(f"{'prob':>6} {'nms':>6} {'DSB score':>10}")
    for (prob, nms), score in sorted(search.scores.items()):
        print(f"{prob:6.2f} {nms:6.2f} {score:10.4f}")
    print(f"best on {len(paired)} images: prob_thresh {search.prob_thresh:g}, nms_thresh {search.nms_thresh:g}, "
          f"mean DSB score {search.best_score:.4f}")
    if args.write:
        print(f"written to {thresholds.write_thresholds(model.spec.path, search.prob_thresh, search.nms_thresh)}")
    return 0
