"""Train the bundled refinement U-Net (``models/fluo_refine``) on the DSB 2018 fluorescence images.

The images of one kind (``index.json``: ``kind``) and their split are read from the team's copy of
the DSB data; the ``train`` split is trained on, the ``val`` split only chooses the best epoch and
stops training early. Training is :func:`nucleai.refine.training.train_unet`, i.e. the shared loop
(:func:`nucleai.train.loop.fit`) with the shared augmentation; run it again with the same
``--out`` to resume. Then tune the rules on the validation images (``nucleai refine --tune``) and
copy ``config.json``, ``weights_best.h5`` and ``refine.json`` into ``models/fluo_refine``.

    .venv/bin/python scripts/train_refine_model.py --data ../shared/data/dsb2018 \\
        --out /work/train/fluo_refine --minutes 25
"""
import argparse
import json
import sys
import time
from pathlib import Path

from nucleai import labelio
from nucleai.labelio import read_image
from nucleai.refine import training, unet
from nucleai.train.data import Sample


def read_split(data, kind, split):
    """Samples of one kind and split, in id order."""
    index = json.loads((data / "index.json").read_text())
    ids = sorted(row["id"] for row in index if row["kind"] == kind and row["split"] == split)
    return [Sample(i, read_image(data / split / "images" / f"{i}.png"),
                   labelio.read_labels(data / split / "labels" / f"{i}.tif")) for i in ids]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with index.json, train/, val/")
    parser.add_argument("--out", type=Path, required=True, help="model folder to train into (resumed)")
    parser.add_argument("--kind", default="fluo", help="image kind from index.json (default fluo)")
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget of this call")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--filters", type=int, default=16, help="filters of the first level")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    config = unet.unet_config(depth=args.depth, filter_base=args.filters)
    train = training.prepare_pairs(read_split(args.data, args.kind, "train"), config["n_channel_in"])
    val = training.prepare_pairs(read_split(args.data, args.kind, "val"), config["n_channel_in"])
    print(f"{len(train)} training, {len(val)} validation images ({args.kind})", flush=True)
    settings = training.default_settings(epochs=args.epochs, steps_per_epoch=args.steps, minutes=args.minutes,
                                         seed=args.seed)
    start = time.monotonic()
    result = training.train_unet(train, val, args.out, config=config, settings=settings, progress=False,
                                 log=lambda line: print(line, flush=True))
    print(f"{result.epochs_done} epochs, best {result.best_epoch} (validation loss {result.best_val_loss:.4f}), "
          f"stopped: {result.stopped}, {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
