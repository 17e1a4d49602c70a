"""Choose a training run's epoch by the validation score: tune and score every weight snapshot.

The validation loss (what stardist's trainer keeps as ``weights_best.h5``) tracks the DSB score
only loosely, so ``scripts/train_default_model.py --snapshot-every N`` keeps every N-th epoch's
weights. This script gives each snapshot the same treatment as the final model: thresholds tuned
on the validation split for the mean DSB score (``nucleai.thresholds`` grid), then prints the
mean DSB score and the score at IoU 0.5 at those thresholds. Validation images only, never
training images.

    python scripts/evaluate_snapshots.py --run /work/train/fluo_nuclei \
        --images ../shared/data/dsb2018/val/images --labels ../shared/data/dsb2018/val/labels

This is a development script (it needs the DSB data beside the repo).
"""
import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nucleai import metrics, models, thresholds
from nucleai.labelio import IMAGE_SUFFIXES, read_image
from nucleai.labelio import LABEL_SUFFIXES, files_by_stem, read_labels


def score_grid(model, images, truths):
    """Mean DSB score and mean score at IoU 0.5 for every pair of the default threshold grid."""
    lowest = min(thresholds.PROB_THRESHOLDS)
    candidates = [thresholds.image_candidates(image, model, lowest) for image in images]
    grid = {}
    for nms_thresh in thresholds.NMS_THRESHOLDS:
        for prob_thresh in thresholds.PROB_THRESHOLDS:
            evaluations = [
                metrics.evaluate_image(truth, thresholds.labels_at(found, prob_thresh, nms_thresh, truth.shape))
                for found, truth in zip(candidates, truths)
            ]
            grid[(float(prob_thresh), float(nms_thresh))] = (
                float(np.mean([e.dsb_score for e in evaluations])),
                float(np.mean([e.score[0] for e in evaluations])),
            )
    return grid


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training folder with config.json and snapshots/")
    parser.add_argument("--images", type=Path, required=True, help="validation images")
    parser.add_argument("--labels", type=Path, required=True, help="validation label images (same stems)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more weight files to score")
    args = parser.parse_args()

    image_files = files_by_stem(args.images, IMAGE_SUFFIXES)
    label_files = files_by_stem(args.labels, LABEL_SUFFIXES)
    stems = sorted(set(image_files) & set(label_files))
    images = [read_image(image_files[stem]) for stem in stems]
    truths = [read_labels(label_files[stem]) for stem in stems]
    print(f"{len(stems)} validation images")

    weight_files = sorted((args.run / "snapshots").glob("*.h5")) + list(args.extra)
    for weights in weight_files:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            for name in ("config.json", "nucleai.json"):
                if (args.run / name).exists():
                    shutil.copy(args.run / name, folder / name)
            shutil.copy(weights, folder / "weights_best.h5")
            grid = score_grid(models.load_model(folder), images, truths)
        best = max(grid, key=lambda pair: grid[pair][0])
        print(json.dumps({"weights": str(weights), "prob": best[0], "nms": best[1],
                          "dsb": round(grid[best][0], 4), "score_iou50": round(grid[best][1], 4)}), flush=True)


if __name__ == "__main__":
    main()
