"""``nucleai evaluate``: score a folder of predicted label images against ground truth.

Files are paired by stem (``img1.tif`` in ``--pred`` with ``img1.png`` in ``--truth``), each pair
is scored with :func:`nucleai.metrics.evaluate_image` (see :mod:`nucleai.metrics` for every
definition), and the dataset table is printed: per threshold the TP, FP and FN summed over images
and the score, precision, recall and F1 averaged over images, then the means over thresholds (the
DSB score is the mean over images of each image's mean over thresholds).

Pairing rules, chosen so that a score is never silently computed on fewer images than the user
thinks:

- A ground-truth file without a prediction is scored as an empty prediction (every object a false
  negative) and reported on stderr and in the CSV/JSON: a method that found nothing may not have
  written a file, and leaving the image out would flatter it.
- A prediction without a ground-truth file is reported and ignored.
- If no prediction pairs with any ground truth at all, the stems almost certainly follow another
  naming scheme, and the command stops with an error instead of scoring everything as empty.
- Two images of a pair with different shapes stop the command with an error naming both files.
- A label image that looks like a binary mask or an intensity image (ids split into many
  separate regions) is scored as it is, with a warning naming the file.
"""
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import InputError
from .outputs import check_file, writing

#: How many stems a warning lists before it only counts the rest (all are in the CSV and JSON).
LISTED_STEMS = 10
PER_THRESHOLD = ("tp", "fp", "fn", "score", "precision", "recall", "f1")
PER_IMAGE = (
    "n_truth",
    "n_pred",
    "dsb_score",
    "mean_precision",
    "mean_recall",
    "mean_f1",
    "mean_matched_iou",
    "n_splits",
    "n_merges",
)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted label images against ground truth (DSB metric)",
        description="Pair label images in --pred and --truth by file stem and print the DSB "
        "metric table: per IoU threshold TP, FP, FN (summed over images) and TP/(TP+FP+FN), "
        "precision, recall, F1 (means over images), their means over thresholds, the mean "
        "matched IoU and split/merge counts. A missing prediction counts as an empty one.",
    )
    parser.add_argument(
        "--pred", required=True, type=Path, metavar="DIR",
        help="folder of predicted label images (.tif, .tiff, .png)",
    )
    parser.add_argument(
        "--truth", required=True, type=Path, metavar="DIR",
        help="folder of ground-truth label images, same stems as the predictions",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE",
        help="write the dataset summary and per-image results as JSON",
    )
    parser.add_argument(
        "--csv", type=Path, metavar="FILE",
        help="write one row per image (per-threshold scores and their means) as CSV",
    )
    parser.add_argument(
        "--thresholds", type=float, nargs="+", metavar="T",
        help="IoU thresholds, each in [0, 1); a pair matches when IoU > T "
        "(default: the DSB thresholds 0.5 0.55 ... 0.95)",
    )
    return parser


def _warn(message, stems):
    listed = ", ".join(stems[:LISTED_STEMS])
    more = f" and {len(stems) - LISTED_STEMS} more" if len(stems) > LISTED_STEMS else ""
    print(f"nucleai evaluate: warning: {message}: {listed}{more}", file=sys.stderr)


def _plain(value):
    """JSON/CSV-ready copy: arrays to lists, numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    return value


def _image_record(stem, truth_path, pred_path, evaluation):
    record = {
        "image": stem,
        "truth_file": str(truth_path),
        "pred_file": "" if pred_path is None else str(pred_path),
        "prediction_missing": pred_path is None,
    }
    record.update({name: getattr(evaluation, name) for name in PER_IMAGE})
    record.update({name: getattr(evaluation, name) for name in PER_THRESHOLD})
    return _plain(record)


def _threshold_label(threshold):
    return repr(float(threshold))


def _write_csv(handle, thresholds, records):
    labels = [_threshold_label(t) for t in thresholds]
    fields = ["image", "truth_file", "pred_file", "prediction_missing", *PER_IMAGE]
    columns = fields + [f"{name}@{label}" for name in PER_THRESHOLD for label in labels]
    writer = csv.writer(handle)
    writer.writerow(columns)
    for record in records:
        row = [record[field] for field in fields]
        row += [value for name in PER_THRESHOLD for value in record[name]]
        writer.writerow(["" if value is None else value for value in row])


def _read(path):
    """A label image, with a warning when it looks like a mask or an intensity image (scored as
    it is, since the user may know better, but rarely what was meant)."""
    from ..labelio import label_image_doubt, read_labels

    labels = read_labels(path)
    doubt = label_image_doubt(labels)
    if doubt is not None:
        print(f"nucleai evaluate: warning: {path}: {doubt}", file=sys.stderr)
    return labels


def _print_table(summary, n_missing, n_with_matches, match_threshold):
    print(
        f"{summary.n_images} images, {summary.n_truth} ground-truth and {summary.n_pred} "
        f"predicted objects; {n_missing} predictions missing (scored as empty); "
        f"{summary.n_empty_images} images empty on both sides (scored 1)"
    )
    print(f"{'threshold':>9} {'TP':>8} {'FP':>8} {'FN':>8} {'score':>7} {'precision':>9} "
          f"{'recall':>7} {'F1':>7}")
    for i, threshold in enumerate(summary.thresholds):
        print(
            f"{_threshold_label(threshold):>9} {summary.tp[i]:>8} {summary.fp[i]:>8} "
            f"{summary.fn[i]:>8} {summary.score[i]:>7.4f} {summary.precision[i]:>9.4f} "
            f"{summary.recall[i]:>7.4f} {summary.f1[i]:>7.4f}"
        )
    print(
        f"{'mean':>9} {'':>8} {'':>8} {'':>8} {summary.dsb_score:>7.4f} "
        f"{summary.mean_precision:>9.4f} {summary.mean_recall:>7.4f} {summary.mean_f1:>7.4f}"
    )
    print("TP, FP, FN: totals over images; score = TP/(TP+FP+FN), precision, recall, F1: "
          "means over images")
    print(f"DSB score (mean over images and thresholds): {summary.dsb_score:.4f}")
    print(
        f"mean matched IoU (pairs with IoU > {match_threshold:g}, mean over the "
        f"{n_with_matches} images with a match): {summary.mean_matched_iou:.4f}"
    )
    print(f"splits: {summary.n_splits}, merges: {summary.n_merges} (nucleAIzer's rule)")


def evaluate_options(args):
    """The :class:`~nucleai.metrics.EvaluateOptions` of the flags; an error names the flag."""
    from ..metrics import EvaluateOptions

    given = {} if args.thresholds is None else {"thresholds": args.thresholds}
    try:
        return EvaluateOptions(**given)
    except InputError as error:
        raise InputError(f"--thresholds: {error}", error.field) from None


def run(args):
    from .. import labelio, metrics

    for option, path in (("--csv", args.csv), ("--json", args.json)):
        if path is not None:
            check_file(path, option)
    options = evaluate_options(args)
    thresholds = np.asarray(options.thresholds)
    truth_files = labelio.files_by_stem(args.truth)
    if not truth_files:
        raise InputError(
            f"no label images ({', '.join(labelio.LABEL_SUFFIXES)}) in --truth {args.truth}"
        )
    pred_files = labelio.files_by_stem(args.pred)
    missing = [stem for stem in truth_files if stem not in pred_files]
    without_truth = [stem for stem in pred_files if stem not in truth_files]
    if pred_files and len(without_truth) == len(pred_files):
        raise InputError(
            f"no file in --pred {args.pred} has the stem of a file in --truth {args.truth} "
            f"(for example {next(iter(pred_files.values())).name} vs "
            f"{next(iter(truth_files.values())).name}); files are paired by name without suffix"
        )
    if missing:
        _warn(f"{len(missing)} of {len(truth_files)} predictions missing, scored as empty", missing)
    if without_truth:
        _warn(f"{len(without_truth)} predictions without ground truth, ignored", without_truth)

    evaluations, records = [], []
    for stem, truth_path in truth_files.items():
        truth = _read(truth_path)
        pred_path = pred_files.get(stem)
        if pred_path is None:
            pred = np.zeros(truth.shape, dtype=np.uint16)
        else:
            pred = _read(pred_path)
            if pred.shape != truth.shape:
                raise InputError(
                    f"{pred_path} has shape {pred.shape} but {truth_path} has {truth.shape}"
                )
        evaluation = metrics.evaluate_image(truth, pred, options)
        evaluations.append(evaluation)
        records.append(_image_record(stem, truth_path, pred_path, evaluation))
    summary = metrics.summarize(evaluations)

    match_threshold = evaluations[0].match_threshold
    n_with_matches = sum(not np.isnan(e.mean_matched_iou) for e in evaluations)
    _print_table(summary, len(missing), n_with_matches, match_threshold)
    if args.csv is not None:
        with writing(args.csv, "--csv", newline="") as handle:
            _write_csv(handle, thresholds, records)
    if args.json is not None:
        report = {
            "nucleai_version": __version__,
            "pred": str(args.pred),
            "truth": str(args.truth),
            "thresholds": thresholds,
            "match_threshold": match_threshold,
            "missing_predictions": missing,
            "predictions_without_truth": without_truth,
            "summary": dataclasses.asdict(summary),
            "images": records,
        }
        with writing(args.json, "--json") as handle:
            json.dump(_plain(report), handle, indent=1, allow_nan=False)
    return 0
