"""``nucleai refine``: refine label images with a U-Net and nucleAIzer's rules, or tune the rules.

Refining (label TIFFs in, label TIFFs out)::

    nucleai refine --objects DIR --input DIR --model NAME_OR_DIR --output DIR

Every label image in ``--objects`` is paired by stem with its image in ``--input``; the refined
objects are written to ``--output`` with the same stem (uint16 TIFF). The rules' parameters are
the model folder's (``refine.json``, else the published ones); ``--p1`` ... ``--p6`` override
them. ``--report FILE`` writes, per image, the count of objects per fate and for every output
object the input ids it came from.

Tuning (writes ``refine.json`` into the model folder)::

    nucleai refine --tune --objects DIR [DIR ...] --input DIR --truth DIR --model NAME_OR_DIR

The probability maps are predicted once; then differential evolution
(:mod:`nucleai.refine.tune`) searches p1 ... p6 for the best mean DSB score of the refined
objects against ``--truth`` over all (objects folder, image) pairs. Several ``--objects`` folders
(e.g. the outputs of two detectors) tune one set of parameters that suits both.

Rules as in ``nucleai segment``: argument, output and model problems stop the command before any
image is read; a problem with one image (unreadable or corrupt image or label image, sizes
differ, output not writable) is reported with the file name, no output is left for it (one of an
earlier run is removed), the other images are processed, and the exit status is 2.
"""
import json
import sys
from pathlib import Path

from ..errors import InputError, about_file
from . import add_network_flags, apply_network_flags, check_axes_flag
from .outputs import check_file, check_folder, make_folder, remove_stale, write_text


def add_parser(subparsers):
    from ..refine.params import DESCRIPTIONS, NAMES

    parser = subparsers.add_parser(
        "refine",
        help="refine label images with a U-Net probability map and nucleAIzer's rules (or tune them)",
        description="Refine the objects of every label image in --objects with the U-Net "
        "--model and nucleAIzer's contour-refinement rules, writing label images to --output; "
        "or, with --tune, tune the rules' parameters on annotated images and store them in the "
        "model folder (refine.json).",
    )
    parser.add_argument("--objects", required=True, type=Path, nargs="+", metavar="DIR",
                        help="folder of label images to refine (several only with --tune)")
    parser.add_argument("--input", required=True, type=Path, metavar="DIR",
                        help="folder of the images (same stems as the label images)")
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                        help="bundled refinement model (e.g. fluo_refine) or model folder")
    parser.add_argument("--output", type=Path, metavar="DIR", help="folder for the refined label images")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="write per image the fates of the input objects and each output "
                        "object's input ids (JSON)")
    for name in NAMES:
        parser.add_argument(f"--{name}", type=float, metavar="V",
                            help=f"{DESCRIPTIONS[name]} (default: the model's)")
    parser.add_argument("--tiles", default="auto", metavar="auto|YxX",
                        help="predict the probability map in YxX tiles ('auto': tiles of at "
                        "most 1024 pixels per side)")
    parser.add_argument("--channel", type=int, metavar="C",
                        help="for colour images and a one-channel model: the channel, from 0")
    parser.add_argument("--axes", metavar="YXC|CYX|...",
                        help="the images' layout, for files nucleai reads wrongly (e.g. CYX for "
                        "an image with more than 4 channels first); default: guessed")
    add_network_flags(parser)
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--tune", action="store_true",
                        help="tune p1 ... p6 for the DSB score against --truth and write them to "
                        "the model folder's refine.json")
    tuning.add_argument("--truth", type=Path, metavar="DIR", help="ground-truth label images (same stems)")
    tuning.add_argument("--maxiter", type=int, default=15, metavar="N", help="most generations (default 15)")
    tuning.add_argument("--popsize", type=int, default=6, metavar="N",
                        help="population = N x 6 parameter sets (default 6)")
    tuning.add_argument("--minutes", type=float, metavar="M", help="wall-clock budget of the search")
    tuning.add_argument("--workers", type=int, default=1, metavar="N", help="parallel processes (default 1)")
    tuning.add_argument("--seed", type=int, default=0, help="random seed of the search (default 0)")
    tuning.add_argument("--dry-run", action="store_true", help="with --tune: do not write refine.json")
    return parser


def refine_options(args):
    """The :class:`~nucleai.refine.apply.RefineOptions` of the flags; an error names the flag
    (every option's flag is ``--`` and its name)."""
    from ..refine.apply import RefineOptions
    from ..refine.params import NAMES

    try:
        return RefineOptions(**{name: getattr(args, name) for name in NAMES}, tiles=args.tiles,
                             channel=args.channel)
    except InputError as error:
        raise InputError(f"--{error.field}: {error}", error.field) from None


def _pairs(objects_dir, images):
    """(stem, label path, image path) for the label images with an image; the unpaired stems."""
    from .. import labelio

    labels = labelio.files_by_stem(objects_dir)
    if not labels:
        raise InputError(f"no label images (.tif, .tiff, .png) in --objects {objects_dir}")
    paired = [(stem, labels[stem], images[stem]) for stem in labels if stem in images]
    return paired, sorted(set(labels) - set(images))


def run(args):
    from .. import labelio, models
    from ..labelio import IMAGE_SUFFIXES

    options = refine_options(args)
    check_axes_flag(args.axes)
    images = labelio.files_by_stem(args.input, suffixes=IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in --input {args.input}")
    if args.tune:
        if args.truth is None:
            raise InputError("--tune needs --truth (the ground-truth label images)")
        if args.output is not None or args.report is not None:
            raise InputError("--tune writes the tuned parameters to the model folder; drop --output/--report")
        if options.given:
            raise InputError("--p1 ... --p6 cannot be combined with --tune (they are what is tuned)")
        spec = models.read_spec(args.model, kind="unet")
        return _tune(args, images, spec, options)
    if len(args.objects) != 1:
        raise InputError("refining takes one --objects folder (several only with --tune)")
    if args.output is None:
        raise InputError("--output is needed (the folder for the refined label images)")
    if args.output.resolve() in (args.objects[0].resolve(), args.input.resolve()):
        raise InputError("--output must differ from --objects and --input")
    check_folder(args.output, "--output")
    if args.report is not None:
        check_file(args.report, "--report")
    return _refine(args, images, options)


def _refine(args, images, options):
    from tqdm import tqdm

    from .. import labelio, models
    from ..refine import apply
    from ..labelio import read_image

    paired, unpaired = _pairs(args.objects[0], images)
    if not paired:
        raise InputError(f"no label image in --objects {args.objects[0]} has an image of the same stem in --input {args.input}")
    model = models.load(args.model, kind="unet", precision=apply_network_flags(args).name)
    make_folder(args.output, "--output")
    failed = [f"{stem} (no image)" for stem in unpaired]
    for stem in unpaired:
        stale = remove_stale(args.output / f"{stem}.tif")
        print(f"nucleai refine: error: {args.objects[0] / stem}: no image of that stem in --input"
              + (f"; {stale}" if stale else ""), file=sys.stderr)
    report, totals = {}, {"input": 0, "output": 0}
    progress = tqdm(paired, unit="image", desc="nucleai refine", disable=None, file=sys.stderr)
    for stem, label_path, image_path in progress:
        output = args.output / f"{stem}.tif"
        try:
            labels = labelio.read_labels(label_path)
            result = apply.refine_image(read_image(image_path, axes=args.axes), labels, model, options)
            labelio.write_labels(output, result.refinement.labels)
        except InputError as error:
            failed.append(stem)
            stale = remove_stale(output)
            progress.write(f"nucleai refine: error: {about_file(image_path, error)}"
                           + (f"; {stale}" if stale else ""), file=sys.stderr)
            continue
        refinement = result.refinement
        counts = refinement.counts()
        totals["input"] += counts["input"]
        totals["output"] += counts["output"]
        report[stem] = {
            "counts": counts,
            "mean_boundary_shift": round(refinement.mean_boundary_shift, 4),
            "sources": {str(i + 1): refinement.sources(i + 1).tolist() for i in range(refinement.count)},
        }
    progress.close()
    params = options.parameters(model.spec.params)
    print(f"nucleai refine: {len(report)} of {len(paired) + len(unpaired)} images, {totals['input']} -> "
          f"{totals['output']} objects (model {model.name}, "
          + ", ".join(f"{k} {v:g}" for k, v in params.items()) + f") -> {args.output}")
    if args.report is not None:
        write_text(args.report, json.dumps({"model": str(model.spec.path), "params": params, "images": report}, indent=1),
                   "--report")
    if failed:
        print(f"nucleai refine: error: {len(failed)} images failed: {', '.join(failed[:10])}"
              + (" ..." if len(failed) > 10 else ""), file=sys.stderr)
        return 2
    return 0


def _tune(args, images, spec, options):
    from tqdm import tqdm

    from .. import labelio, models
    from ..refine import params as refine_params
    from ..refine import tune, unet
    from ..labelio import read_image

    truths = labelio.files_by_stem(args.truth)
    jobs = []
    for folder in args.objects:
        paired, unpaired = _pairs(folder, images)
        missing = [stem for stem, _, _ in paired if stem not in truths]
        if unpaired or missing:
            raise InputError(f"--objects {folder}: {', '.join((unpaired + missing)[:5])} have no image "
                             f"in --input or no ground truth in --truth (all must be paired for tuning)")
        jobs += [(folder, stem, label_path, image_path) for stem, label_path, image_path in paired]
    model = models.load(spec.path, kind="unet", precision=apply_network_flags(args).name)
    probs, names, labels, prob_list, truth_list = {}, [], [], [], []
    for folder, stem, label_path, image_path in tqdm(jobs, desc="probability maps", unit="image",
                                                     disable=None, file=sys.stderr):
        if stem not in probs:
            probs[stem] = unet.predict_probability(read_image(image_path, axes=args.axes), model, tiles=options.tiles,
                                                   channel=options.channel)
        names.append(f"{folder.name}/{stem}")
        labels.append(labelio.read_labels(label_path))
        prob_list.append(probs[stem])
        truth_list.append(labelio.read_labels(truths[stem]))
    cases = tune.make_cases(names, labels, prob_list, truth_list)
    result = tune.tune_parameters(
        cases, start=spec.params, maxiter=args.maxiter, popsize=args.popsize, minutes=args.minutes,
        seed=args.seed, workers=args.workers, log=lambda message: print(f"nucleai refine --tune: {message}", file=sys.stderr),
    )
    print(f"nucleai refine --tune: {len(cases)} images ({len(args.objects)} object folders): mean DSB score "
          f"unrefined {result.unrefined_score:.4f}, start ({spec.params_from}) {result.start_score:.4f}, "
          f"tuned {result.score:.4f} after {result.evaluations} evaluations ({result.stopped})")
    print("tuned: " + ", ".join(f"{k} {v:.4g}" for k, v in result.params.items()))
    if not args.dry_run:
        record = result.record(len(cases))
        record["objects"] = [str(folder) for folder in args.objects]
        path = refine_params.write_parameters(spec.path, result.params, record)
        print(f"written to {path}")
    return 0
