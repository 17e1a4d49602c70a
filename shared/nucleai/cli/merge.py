"""``nucleai merge``: merge label images of the same images from several folders by voting.

Each ``--inputs`` folder holds one version of the segmentation of the same images (another
method, another model, a TTA version), one label image per image; files are paired by stem
(``a.tif`` in every folder). Every set of versions is merged with
:func:`nucleai.tta.merge_instances` (match by IoU >= 0.5, keep objects found by at least
``--min-votes`` folders, per-pixel vote, no overlaps) and written to ``--output`` as
``<stem>.tif`` (uint16, uint32 above 65535 objects).

Rules, as for ``nucleai segment``, so that a long batch is not lost to one bad image:

- Argument problems (fewer than two folders, a missing folder, ``--min-votes`` out of range,
  ``--output`` among the inputs) stop the command before any image is read, as does finding no
  stem present in every folder (the folders almost certainly follow different naming schemes).
- A stem missing from some folders, or whose versions differ in shape or cannot be read
  (corrupt, not a label image), or whose output cannot be written, is reported on stderr with
  the file names and left out (no output file; the file of an earlier run is removed); the
  others are merged; the exit status is then 2. A missing file is not read as "no objects": it
  more likely means a failed run, and counting it as a vote against every object would silently
  change the result.
"""
import csv
import sys
from pathlib import Path

from ..errors import InputError
from .outputs import check_file, check_folder, make_folder, remove_stale, writing

#: Options field -> the flag that sets it.
FLAGS = {"min_votes": "--min-votes", "iou_threshold": "--iou-threshold"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "merge",
        help="merge label images from several folders (methods, models) into one by voting",
        description="Pair the label images of the --inputs folders by file stem and merge each "
        "set into one label image: objects are matched across folders by IoU >= 0.5, kept when "
        "at least --min-votes folders found them, and drawn by per-pixel vote (a pixel is kept "
        "when at least half of the folders that found the object cover it); no overlaps.",
    )
    parser.add_argument(
        "--inputs", required=True, nargs="+", type=Path, metavar="DIR",
        help="two or more folders of label images (.tif, .tiff, .png) with the same stems",
    )
    parser.add_argument(
        "--output", required=True, type=Path, metavar="DIR",
        help="folder for the merged label images (created if missing)",
    )
    parser.add_argument(
        "--min-votes", type=int, metavar="K",
        help="folders that must find an object for it to be kept, 1 to the number of folders "
        "(default: at least half, rounded up: 1 of 2 (every object, matched ones merged), "
        "2 of 3, 2 of 4); K = the number of folders keeps only objects all of them found",
    )
    parser.add_argument(
        "--iou-threshold", type=float, metavar="T",
        help="objects of two folders are the same object when their IoU is at least T, in "
        "(0, 1] (default 0.5)",
    )
    parser.add_argument(
        "--table", type=Path, metavar="FILE",
        help="write one CSV row per merged object: image, object, votes, mean IoU of the "
        "versions' masks with the merged one",
    )
    return parser


def merge_options(args):
    """The :class:`~nucleai.tta.MergeOptions` of the flags for ``--inputs``; an error names the flag."""
    from ..tta import MergeOptions

    try:
        given = {"iou_threshold": args.iou_threshold} if args.iou_threshold is not None else {}
        options = MergeOptions(min_votes=args.min_votes, **given)
        options.votes_needed(len(args.inputs))
    except InputError as error:
        raise InputError(f"{FLAGS[error.field]}: {error}", error.field) from None
    return options


def _check_args(args):
    if len(args.inputs) < 2:
        raise InputError(f"--inputs needs at least two folders, got {len(args.inputs)}")
    resolved = [folder.resolve() for folder in args.inputs]
    if len(set(resolved)) < len(resolved):
        raise InputError("--inputs names the same folder twice (its vote would count twice)")
    if args.output.resolve() in resolved:
        raise InputError("--output must differ from every --inputs folder")
    check_folder(args.output, "--output")
    if args.table is not None:
        check_file(args.table, "--table")


def _read_versions(stem, folders, files):
    """The label images of one stem, one per folder; InputError naming the files."""
    from .. import labelio

    missing = [str(folder) for folder, found in zip(folders, files) if stem not in found]
    if missing:
        raise InputError(f"no {stem}.* in {', '.join(missing)}")
    paths = [found[stem] for found in files]
    versions = [labelio.read_labels(path) for path in paths]
    shapes = {version.shape for version in versions}
    if len(shapes) > 1:
        described = ", ".join(f"{path} {version.shape}" for path, version in zip(paths, versions))
        raise InputError(f"label images of different shapes: {described}")
    if versions[0].ndim != 2:
        raise InputError(f"{paths[0]}: a 3-D stack; merging works on 2-D label images")
    return versions


def run(args):
    from .. import labelio, tta

    _check_args(args)
    options = merge_options(args)
    files = [labelio.files_by_stem(folder) for folder in args.inputs]
    stems = sorted(set().union(*files))
    if not any(all(stem in found for found in files) for stem in stems):
        raise InputError(
            "no file stem is present in every --inputs folder; files are paired by name "
            "without suffix"
        )
    min_votes = options.votes_needed(len(args.inputs))
    make_folder(args.output, "--output")

    failed, rows, n_objects = [], [], 0
    for stem in stems:
        output = args.output / f"{stem}.tif"
        try:
            versions = _read_versions(stem, args.inputs, files)
            merged = tta.merge_instances(versions, options)
            labelio.write_labels(output, merged.labels)
        except InputError as error:
            failed.append(stem)
            stale = remove_stale(output)
            print(f"nucleai merge: error: {stem}: {error}" + (f"; {stale}" if stale else ""), file=sys.stderr)
            continue
        n_objects += merged.count
        rows += [(stem, i + 1, int(votes), float(iou))
                 for i, (votes, iou) in enumerate(zip(merged.votes, merged.mean_iou))]

    print(
        f"nucleai merge: {len(stems) - len(failed)} of {len(stems)} images, {n_objects} objects "
        f"(kept when found in at least {min_votes} of {len(args.inputs)} folders, IoU >= "
        f"{options.iou_threshold:g}) -> {args.output}"
    )
    if args.table is not None:
        with writing(args.table, "--table", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "object", "votes", "mean_iou"])
            writer.writerows(rows)
    if failed:
        print(f"nucleai merge: error: {len(failed)} images failed: {', '.join(failed[:10])}"
              + (" ..." if len(failed) > 10 else ""), file=sys.stderr)
        return 2
    return 0
