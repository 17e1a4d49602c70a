"""Train the bundled default fluorescence nucleus model (StarDist layout) on DSB 2018.

Trains a stardist StarDist2D on the fluorescence *training* split of the team's DSB 2018 copy;
the validation split is used only for early stopping (best validation loss) and threshold tuning
(for the mean DSB score, with nucleai.thresholds).
Runs under a wall-clock budget so it fits a session, writes a log, checkpoints every epoch and
resumes from the last checkpoint when started again with the same --out folder.

    python scripts/train_default_model.py --data ../shared/data/dsb2018 --out models/fluo_nuclei \
        --minutes 85

This is a development script (it needs the DSB data beside the repo); the shipped model folder is
what users get.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
from imageio.v2 import imread

STATE_FILE = "train_state.json"


def load_split(data_dir, split, kind="fluo"):
    """Images (float32, percentile-normalised) and label images of one split of one image kind."""
    from csbdeep.utils import normalize

    index = json.loads((data_dir / "index.json").read_text())
    ids = sorted(row["id"] for row in index if row["kind"] == kind and row["split"] == split)
    images, labels = [], []
    for image_id in ids:
        image = imread(data_dir / split / "images" / f"{image_id}.png")
        if image.ndim == 3:
            image = image[..., :3].mean(axis=-1)
        images.append(normalize(image.astype(np.float32), 1, 99.8, axis=(0, 1)).astype(np.float32))
        labels.append(tifffile.imread(data_dir / split / "labels" / f"{image_id}.tif").astype(np.int32))
    return images, labels, ids


def augment(image, labels, rng):
    """Dihedral transform, intensity scale/offset and Gaussian noise (labels follow the geometry)."""
    k = rng.integers(4)
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image = image * rng.uniform(0.6, 1.4) + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        image = image + rng.normal(0, rng.uniform(0.0, 0.05), image.shape)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(labels)


def make_time_budget_callback(deadline, state_path, first_epoch, best_val_loss, log, snapshot_every=0):
    """Keras callback: record progress after every epoch and stop once the deadline has passed.

    With ``snapshot_every`` > 0 it also keeps a copy of every n-th epoch's weights in
    ``snapshots/``, so the epoch can be chosen by the validation score we report (the validation
    loss tracks it only loosely).
    """
    import shutil

    import keras

    previous_best = [best_val_loss]

    class TimeBudget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            done = first_epoch + epoch + 1
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            best = min(float(logs.get("val_loss", np.inf)), previous_best[0])
            previous_best[0] = best
            state = {"epochs_done": done, "learning_rate": lr, "best_val_loss": best,
                     "last_logs": {k: float(v) for k, v in logs.items()}}
            state_path.write_text(json.dumps(state, indent=1))
            log(f"epoch {done}: " + " ".join(f"{k}={float(v):.4f}" for k, v in sorted(logs.items())))
            if snapshot_every and done % snapshot_every == 0:
                snapshots = state_path.parent / "snapshots"
                snapshots.mkdir(exist_ok=True)
                shutil.copyfile(state_path.parent / "weights_now.h5", snapshots / f"weights_epoch{done:03d}.h5")
            if time.time() > deadline:
                log("time budget used up: stopping after this epoch")
                self.model.stop_training = True

    return TimeBudget()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="DSB 2018 folder with index.json")
    parser.add_argument("--out", type=Path, required=True, help="model folder (created or resumed)")
    parser.add_argument("--minutes", type=float, default=85, help="wall-clock training budget")
    parser.add_argument("--max-epochs", type=int, default=400)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot-every", type=int, default=0, metavar="N",
                        help="keep every N-th epoch's weights in OUT/snapshots (0: none)")
    args = parser.parse_args()

    start = time.time()
    deadline = start + 60 * args.minutes
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "train.log", "a", buffering=1)

    def log(message):
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        log_file.write(line + "\n")

    from stardist.models import Config2D, StarDist2D

    x_train, y_train, _ = load_split(args.data, "train")
    x_val, y_val, val_ids = load_split(args.data, "val")
    log(f"data: {len(x_train)} training and {len(x_val)} validation fluorescence images")

    state_path = args.out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {"epochs_done": 0}
    if (args.out / "config.json").exists():
        model = StarDist2D(None, name=args.out.name, basedir=str(args.out.parent))
        # stardist writes weights_now.h5 after every epoch (weights_last.h5 only when fit() ends).
        model.load_weights("weights_now.h5")
        log(f"resuming after epoch {state['epochs_done']}")
    else:
        config = Config2D(
            n_rays=32,
            grid=(2, 2),
            n_channel_in=1,
            train_patch_size=(256, 256),
            train_batch_size=4,
            train_steps_per_epoch=args.steps_per_epoch,
            train_tensorboard=False,
            train_reduce_lr={"factor": 0.5, "patience": 8, "min_delta": 0},
        )
        model = StarDist2D(config, name=args.out.name, basedir=str(args.out.parent))
        log(f"new model: {json.dumps(vars(config))}")

    model.prepare_for_training()
    best_val_loss = state.get("best_val_loss", np.inf)
    if "learning_rate" in state:
        model.keras_model.optimizer.learning_rate.assign(state["learning_rate"])
    for callback in model.callbacks:
        if getattr(callback, "save_best_only", False):
            # A resumed run must not replace weights_best.h5 with a worse epoch.
            callback.best = best_val_loss
    model.callbacks.append(make_time_budget_callback(
        deadline, state_path, state["epochs_done"], best_val_loss, log, args.snapshot_every))

    rng = np.random.default_rng(args.seed + state["epochs_done"])
    remaining = args.max_epochs - state["epochs_done"]
    if remaining > 0:
        model.train(
            x_train, y_train, validation_data=(x_val, y_val),
            augmenter=lambda x, y: augment(x, y, rng),
            epochs=remaining, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
        )
    log(f"training stopped after {json.loads(state_path.read_text())['epochs_done']} epochs "
        f"({(time.time() - start) / 60:.1f} min)")

    # Thresholds are tuned for the metric we report (mean DSB score over validation images),
    # with nucleai's own prediction path: the same as `nucleai tune-thresholds --write`.
    from nucleai import models, thresholds

    images = [imread(args.data / "val" / "images" / f"{image_id}.png") for image_id in val_ids]
    search = thresholds.tune_thresholds(models.load_model(args.out), images, y_val)
    thresholds.write_thresholds(args.out, search.prob_thresh, search.nms_thresh)
    log(f"tuned thresholds on the validation split: prob {search.prob_thresh}, nms {search.nms_thresh}, "
        f"mean DSB score {search.best_score:.4f}")


if __name__ == "__main__":
    main()
