"""``nucleai tune-thresholds``: tune a model's probability and NMS thresholds on annotated images.

Images in ``--images`` are paired with label images in ``--labels`` by file stem. The search and
its metric (mean DSB score over images) are :func:`nucleai.thresholds.tune_thresholds`. With
``--write`` the best pair is stored in the model folder's ``thresholds.json``, which RunStarConvex
and ``nucleai segment`` then use by default. Use validation images, never training images.

A label image that cannot be read or whose shape differs from its image's stops the command,
naming the file, before the search; with ``--write``, so does a ``thresholds.json`` that cannot
be written.
"""
import sys
from pathlib import Path

from ..errors import InputError
from .outputs import check_file

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
    from ..labelio import IMAGE_SUFFIXES

    images = labelio.files_by_stem(args.images, suffixes=IMAGE_SUFFIXES)
    truths = labelio.files_by_stem(args.labels)
    paired = sorted(set(images) & set(truths))
    if not paired:
        raise InputError(f"no image in --images {args.images} has a label image of the same stem in --labels {args.labels}")
    unpaired = sorted(set(images) - set(truths))
    if unpaired:
        print(f"nucleai tune-thresholds: {len(unpaired)} images without labels are left out", file=sys.stderr)
    model = models.load(args.model)
    if args.write:  # before the search, which may take long
        check_file(model.spec.path / models.THRESHOLDS_FILE, "--write")
    pairs = [_read_pair(images[stem], truths[stem]) for stem in paired]
    try:
        search = thresholds.tune_thresholds(
            model,
            [image for image, _ in pairs],
            [labels for _, labels in pairs],
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
        try:
            written = thresholds.write_thresholds(model.spec.path, search.prob_thresh, search.nms_thresh)
        except OSError as error:
            raise InputError(f"--write: cannot write {model.spec.path / models.THRESHOLDS_FILE} "
                             f"({error.strerror or error})") from None
        print(f"written to {written}")
    return 0


def _read_pair(image_path, labels_path):
    """An image and its label image, which must be 2-D and of the image's size (a cropped, padded
    or other image's annotation would tune the thresholds on nonsense)."""
    from ..labelio import read_image, read_labels

    image, labels = read_image(image_path), read_labels(labels_path)
    if labels.ndim != 2:
        raise InputError(f"{labels_path}: a 2-D label image is needed, got shape {labels.shape}")
    if labels.shape != image.shape[:2]:
        raise InputError(f"{labels_path}: shape {labels.shape} differs from its image {image_path} "
                         f"({image.shape[:2]})")
    return image, labels
