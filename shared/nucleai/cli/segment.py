"""``nucleai segment``: label the nuclei in every image of a folder with a star-convex model.

One uint16 label TIFF (uint32 above 65535 objects) is written per input image, with the input's
stem (``a.png`` -> ``OUT/a.tif``). The model is loaded once; a progress bar runs over the images
(on a terminal). The steps are those of :func:`nucleai.predict.segment`; with ``--tta``, those
of :func:`nucleai.tta.segment_tta` (one prediction per transform, merged by voting); with
``--refine MODEL``, the objects are then refined as ``nucleai refine`` does. With ``--model auto``
each image gets the bundled model :func:`nucleai.modality.segment_auto` chooses for its kind (the
decision is printed per image and recorded in ``--timings``).

Rules, chosen so that a long batch is not lost to one bad image:

- Problems with the arguments or the model (missing folder, broken config or weights, bad
  thresholds) stop the command before any image is read.
- A problem with one image (unreadable, NaN pixels, wrong channel count, its label image cannot
  be written) is reported on stderr with the file name, no label image is written for it (the
  one of an earlier run is removed), and the other images are processed; the exit status is
  then 2.
- An image with nothing to segment (blank, constant) is no problem: its label image is written,
  with no objects, and a warning names the file.
- Input images: ``.png .tif .tiff .jpg .jpeg .bmp`` in ``--input`` (not recursive); two files
  with the same stem are refused (their outputs would collide). ``--output`` is created if
  needed and must not be the input folder.
"""
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

from ..errors import InputError, about_file
from ..labelio import IMAGE_SUFFIXES, read_image
from ..timing import timed
from . import add_network_flags, apply_network_flags, check_axes_flag
from .outputs import check_file, check_folder, make_folder, remove_stale, write_text

def add_parser(subparsers):
    parser = subparsers.add_parser(
        "segment",
        help="label nuclei in a folder of images with a star-convex (StarDist-type) model",
        description="Segment every image in --input with a star-convex model and write one "
        "label TIFF per image (same stem) to --output. The model is a bundled one by name or "
        "a folder in stardist's layout (config.json, thresholds.json, weights_best.h5).",
    )
    parser.add_argument(
        "--model", required=True, metavar="NAME_OR_DIR",
        help="bundled model name (e.g. fluo_nuclei) or model folder (a bare name is the "
        "bundled model if there is one; write ./NAME for a local folder of that name), or auto: "
        "per image, decide whether it is fluorescence, brightfield or colour histology and use the "
        "bundled model for that kind (printed per image; in --timings as model, kind, preparation "
        "(none or haematoxylin), evidence)",
    )
    parser.add_argument("--input", required=True, type=Path, metavar="DIR", help="folder of images")
    parser.add_argument(
        "--output", required=True, type=Path, metavar="DIR",
        help="folder for the label images (created if missing)",
    )
    parser.add_argument(
        "--prob-thresh", type=float, metavar="P",
        help="object probability threshold in (0, 1) (default: the model's tuned value)",
    )
    parser.add_argument(
        "--nms-thresh", type=float, metavar="N",
        help="overlap above which the weaker of two candidates is dropped, in (0, 1) "
        "(default: the model's tuned value)",
    )
    parser.add_argument(
        "--tiles", default="auto", metavar="auto|YxX",
        help="predict in YxX overlapping tiles (e.g. 2x2) to bound memory; 'auto' (default) "
        "tiles only images of more than 6 megapixels (the network needs ~300-400 bytes per pixel), "
        "with the fewest tiles that stay within that",
    )
    parser.add_argument(
        "--scale", type=float, metavar="S",
        help="resize images by S before prediction (objects S times larger); labels are "
        "drawn at the original size (default 1)",
    )
    parser.add_argument(
        "--channel", type=int, metavar="C",
        help="for colour or multi-channel images and a one-channel model: the channel to "
        "segment, counted from 0",
    )
    parser.add_argument(
        "--axes", metavar="YXC|CYX|...",
        help="the images' layout, for files nucleai reads wrongly (e.g. CYX for an image with "
        "more than 4 channels first; Z or T are refused: 3-D is not supported yet); default: "
        "2-D is grey, a third axis of at most 4 is channels",
    )
    parser.add_argument(
        "--tta", action="store_true",
        help="test-time augmentation: predict every image under the --tta-transforms, undo "
        "each transform and merge the objects by voting (Moshkov et al.); one prediction per "
        "transform",
    )
    parser.add_argument(
        "--tta-transforms", metavar="T,T,...",
        help="with --tta: comma-separated transforms from identity, flip_y, flip_x, rot90, "
        "rot180, rot270, transpose, transverse (default: the paper's identity,flip_y,flip_x,"
        "rot90,rot180,rot270)",
    )
    parser.add_argument(
        "--tta-min-votes", type=int, metavar="K",
        help="with --tta: transforms that must find an object for it to be kept (default: at "
        "least half, 3 of 6)",
    )
    parser.add_argument(
        "--refine", metavar="NAME_OR_DIR",
        help="refine the detected objects with this refinement U-Net and nucleAIzer's rules "
        "(as nucleai refine, with the model's parameters), e.g. fluo_refine",
    )
    add_network_flags(parser)
    parser.add_argument(
        "--timings", type=Path, metavar="FILE",
        help="write seconds per image and per stage (read, normalize, network, candidates, "
        "nms, render, write) and the model loading time as JSON",
    )
    return parser


#: Options field -> the flag that sets it.
FLAGS = {
    "prob_thresh": "--prob-thresh", "nms_thresh": "--nms-thresh", "tiles": "--tiles", "scale": "--scale",
    "channel": "--channel", "transforms": "--tta-transforms", "min_votes": "--tta-min-votes",
}


def options_of(args):
    """The :class:`~nucleai.predict.SegmentOptions` of the flags and the
    :class:`~nucleai.tta.TTAOptions` of ``--tta`` (None without it); an error names the flag."""
    from .. import predict, tta

    if not args.tta:
        for option, value in (("--tta-transforms", args.tta_transforms),
                              ("--tta-min-votes", args.tta_min_votes)):
            if value is not None:
                raise InputError(f"{option} needs --tta")
    try:
        options = predict.SegmentOptions(prob_thresh=args.prob_thresh, nms_thresh=args.nms_thresh,
                                         scale=args.scale, tiles=args.tiles, channel=args.channel)
        tta_options = None if not args.tta else tta.TTAOptions(
            tta.PAPER_TRANSFORMS if args.tta_transforms is None else args.tta_transforms,
            min_votes=args.tta_min_votes,
        )
    except InputError as error:
        raise InputError(f"{FLAGS[error.field]}: {error}", error.field) from None
    return options, tta_options


def run(args):
    from .. import labelio, modality, models, predict, tta
    from ..refine.apply import RefineOptions, refine_image

    options, tta_options = options_of(args)
    check_axes_flag(args.axes)
    if args.timings is not None:
        check_file(args.timings, "--timings")
    images = labelio.files_by_stem(args.input, suffixes=IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in --input {args.input}")
    if args.output.resolve() == args.input.resolve():
        raise InputError("--output must differ from --input (label images would mix with images)")
    check_folder(args.output, "--output")
    precision = apply_network_flags(args)

    start = time.perf_counter()
    if args.model == modality.AUTO:  # chosen per image; every model it may choose is checked now
        for name in modality.models_in_use():
            models.read_spec(name)
        model = None
    else:
        model = models.load(args.model, precision=precision.name)
    refiner = None if args.refine is None else models.load(args.refine, kind="unet", precision=precision.name)
    load_seconds = time.perf_counter() - start
    make_folder(args.output, "--output")

    from tqdm import tqdm

    failed, records, n_objects = [], [], 0
    progress = tqdm(images.items(), total=len(images), unit="image", desc="nucleai segment",
                    disable=None, file=sys.stderr)
    for stem, path in progress:
        timings = {}
        begin = time.perf_counter()
        try:
            with timed(timings, "read"):
                image = read_image(path, axes=args.axes)
            decision = None
            if model is None:
                result, decision = modality.segment_auto(image, options, tta=tta_options, timings=timings,
                                                         precision=precision.name)
                progress.write(f"nucleai segment: {path.name}: {decision}", file=sys.stdout)
            elif tta_options is None:
                result = predict.segment(image, model, options, timings=timings)
            else:
                result = tta.segment_tta(image, model, tta_options, options, timings=timings)
            used = model.name if decision is None else decision.model
            warning = modality.no_objects_warning(image, result, used, decision)
            if warning is not None:
                progress.write(f"nucleai segment: warning: {path}: {warning}", file=sys.stderr)
            labels, count = result.labels, result.count
            if result.empty_reason is not None:
                progress.write(f"nucleai segment: warning: {path}: the image is {result.empty_reason}, nothing "
                               "to segment: no objects", file=sys.stderr)
            if refiner is not None:
                refined = refine_image(image, labels, refiner,
                                       RefineOptions(tiles=options.tiles, channel=options.channel),
                                       timings=timings).refinement
                labels, count = refined.labels, refined.count
            with timed(timings, "write"):
                labelio.write_labels(args.output / f"{stem}.tif", labels)
        except InputError as error:
            failed.append(stem)
            stale = remove_stale(args.output / f"{stem}.tif")
            progress.write(f"nucleai segment: error: {about_file(path, error)}"
                           + (f"; {stale}" if stale else ""), file=sys.stderr)
            continue
        n_objects += count
        records.append({
            "image": path.name, "shape": list(image.shape), "objects": count,
            "tiles": list(result.n_tiles), "seconds": time.perf_counter() - begin,
            "stages": timings, "model": used,
            **({} if decision is None else {"kind": decision.kind, "preparation": decision.preparation,
                                            "evidence": dataclasses.asdict(decision.evidence)}),
        })
    progress.close()

    if model is None:
        chosen = Counter(record["model"] for record in records)
        used = "model auto: " + (", ".join(f"{name} {n}" for name, n in sorted(chosen.items())) or "none")
        thresholds = "".join(f", {flag} {value:g}" for flag, value in
                             (("prob_thresh", options.prob_thresh), ("nms_thresh", options.nms_thresh)) if value)
    else:
        used = f"model {model.name}"
        thresholds = (f", prob_thresh {options.prob_thresh or model.spec.prob_thresh:g}, "
                      f"nms_thresh {options.nms_thresh or model.spec.nms_thresh:g}")
    print(
        f"nucleai segment: {len(records)} of {len(images)} images, {n_objects} objects "
        f"({used}{thresholds}"
        + ("" if tta_options is None else f", TTA {','.join(tta_options.transforms)}, min votes "
           f"{tta_options.merge.votes_needed(len(tta_options.transforms))}")
        + f", {precision}) -> {args.output}"
    )
    if args.timings is not None:
        report = {
            "model": modality.AUTO if model is None else str(model.spec.path), "model_load_seconds": load_seconds,
            "precision": precision.name, "precision_reason": precision.reason,
            "images": records, "failed": failed,
        }
        write_text(args.timings, json.dumps(report, indent=1), "--timings")
    if failed:
        print(f"nucleai segment: error: {len(failed)} images failed: {', '.join(failed[:10])}"
              + (" ..." if len(failed) > 10 else ""), file=sys.stderr)
        return 2
    return 0
