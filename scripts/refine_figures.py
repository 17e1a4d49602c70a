"""The refinement figures of the model card: DSB scores with and without contour refinement.

For every folder of detections (label TIFFs named like the images, e.g. ``nucleai segment``'s
output for RunStarConvex, or IdentifyPrimaryObjects' labels saved by CellProfiler) the mean DSB
score over the validation images is reported unrefined, refined with the published parameters,
and refined with the model's tuned parameters (``refine.json``; tuned on these same images, so
optimistic). A two-fold cross-validation gives the honest estimate of tuning: the images are
split in two halves (alternating in sorted order), the parameters tuned on one half (all
detection folders pooled, as ``nucleai refine --tune`` does) are scored on the other, and the
two held-out halves are averaged image by image.

    .venv/bin/python scripts/refine_figures.py --model fluo_refine --images VAL/images \\
        --truth VAL/labels --objects DIR [DIR ...] [--json FILE]
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nucleai import labelio, models
from nucleai.labelio import IMAGE_SUFFIXES, read_image
from nucleai.refine import PUBLISHED, tune, unet


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--objects", type=Path, nargs="+", required=True)
    parser.add_argument("--maxiter", type=int, default=8, help="generations per cross-validation fold")
    parser.add_argument("--popsize", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    model = models.load(args.model, kind="unet")
    images = labelio.files_by_stem(args.images, suffixes=IMAGE_SUFFIXES)
    truths = labelio.files_by_stem(args.truth)
    stems = sorted(set(images) & set(truths))
    probs = {stem: unet.predict_probability(read_image(images[stem]), model) for stem in stems}
    truth = {stem: labelio.read_labels(truths[stem]) for stem in stems}
    cases = {}
    for folder in args.objects:
        found = labelio.files_by_stem(folder)
        cases[folder.name] = tune.make_cases(
            stems, [labelio.read_labels(found[stem]) for stem in stems], [probs[s] for s in stems],
            [truth[s] for s in stems])

    halves = [stems[0::2], stems[1::2]]
    held_out = {name: {} for name in cases}
    folds = []
    for fold, (tune_half, test_half) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        pooled = [c for group in cases.values() for c in group if c.name in tune_half]
        result = tune.tune_parameters(pooled, maxiter=args.maxiter, popsize=args.popsize, seed=fold,
                                      workers=args.workers)
        folds.append({"tuned_on": len(tune_half), "params": result.params, "score_tuning_half": result.score})
        print(f"fold {fold + 1}: tuned on {len(tune_half)} images: {result.params} "
              f"({result.score:.4f} on them)", file=sys.stderr)
        for name, group in cases.items():
            for case in group:
                if case.name in test_half:
                    held_out[name][case.name] = tune.mean_score([case], result.params)

    figures = {"model": str(model.spec.path), "model_params": model.spec.params,
               "params_from": model.spec.params_from, "images": len(stems), "folds": folds, "objects": {}}
    print(f"{'objects':<14} {'unrefined':>10} {'published':>10} {'model':>10} {'2-fold CV':>10}")
    for name, group in cases.items():
        row = {
            "unrefined": tune.mean_score(group),
            "published": tune.mean_score(group, PUBLISHED),
            "model": tune.mean_score(group, model.spec.params),
            "cross_validated": float(np.mean([held_out[name][case.name] for case in group])),
        }
        figures["objects"][name] = row
        print(f"{name:<14} " + " ".join(f"{row[key]:10.4f}" for key in
                                        ("unrefined", "published", "model", "cross_validated")))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
