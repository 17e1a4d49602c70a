"""Choose a training run's epoch by the validation score: tune and score every weight snapshot.

The validation loss tracks the DSB score only loosely, so a training run may keep every N-th
epoch's weights (``snapshots/*.h5``). This script gives each snapshot the shipped model's
treatment through the command line: a model folder with the run's ``config.json`` and the
snapshot's weights, ``nucleai tune-thresholds --write`` (thresholds tuned on the validation images
for the mean DSB score), ``nucleai segment`` at those thresholds, ``nucleai evaluate`` (mean DSB
score and the score at IoU 0.5). Validation images only, never training images.

    python scripts/evaluate_snapshots.py --run /work/train/fluo_nuclei \
        --images ../shared/data/dsb2018/val/images --labels ../shared/data/dsb2018/val/labels

This is a development script (it needs the DSB data beside the repo).
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from nucleai.cli import main as nucleai


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training folder with config.json and snapshots/")
    parser.add_argument("--images", type=Path, required=True, help="validation images")
    parser.add_argument("--labels", type=Path, required=True, help="validation label images (same stems)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more weight files to score")
    args = parser.parse_args()

    for weights in sorted((args.run / "snapshots").glob("*.h5")) + list(args.extra):
        print(f"== {weights}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            model, predictions = Path(folder) / "model", Path(folder) / "predictions"
            model.mkdir()
            for name in ("config.json", "nucleai.json"):
                if (args.run / name).exists():
                    shutil.copy(args.run / name, model / name)
            shutil.copy(weights, model / "weights_best.h5")
            for command in (
                ["tune-thresholds", "--model", str(model), "--images", str(args.images), "--labels",
                 str(args.labels), "--write"],
                ["segment", "--model", str(model), "--input", str(args.images), "--output", str(predictions)],
                ["evaluate", "--pred", str(predictions), "--truth", str(args.labels)],
            ):
                if nucleai(command) != 0:
                    sys.exit(f"nucleai {command[0]} failed for {weights}")


if __name__ == "__main__":
    main()
