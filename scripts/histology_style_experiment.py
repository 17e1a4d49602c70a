"""Does nucleAIzer's style augmentation help on histology-like images? Both arms, same budget.

The DSB 2018 development data (``../shared/data/dsb2018``) has 8 annotated and 40 unannotated
histology-like (H&E, RGB) images. Leave-some-out over the 8: the annotated ones are split into
``--folds`` folds; for each fold, the other folds' histology images (plus the same
``--fluo`` fluorescence training images in both arms) train an RGB detector fine-tuned from
the bundled grey ``fluo_nuclei`` (widened to colour), and the fold's images, never trained on,
are scored:

(a) without style augmentation;
(b) with it: the 40 unannotated histology images are clustered by style, each style's
    generator learns from the fold's annotated histology images in that style and a first-pass
    segmentation of its unannotated images by model (a), and the synthetic pairs make up
    ``--share`` of each minibatch.

Everything else is the same in both arms: data, base model, steps, epochs, augmentation, seed,
and the threshold tuning (on the arm's own annotated histology training images, so the held-out
images are used only for the score). Each fold's models stay in ``--out``; a summary table and
``results.json`` are printed/written at the end. Run with the repo's venv::

    .venv/bin/python scripts/histology_style_experiment.py --out /work/histo_experiment
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile

from nucleai import metrics
from nucleai.labelio import read_image
from nucleai.models import load
from nucleai.predict import segment
from nucleai.train.augment import Augmenter
from nucleai.train.data import Sample
from nucleai.train.loop import TrainSettings
from nucleai.train.pix2pix import GeneratorSettings, depth_for_size
from nucleai.train.styletransfer import StyleSettings, train_with_styles

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def read_index(data):
    rows = json.loads((data / "index.json").read_text())
    return rows if isinstance(rows, list) else rows["images"]


def annotated(data, row):
    split = row["split"]
    return Sample(row["id"], read_image(data / split / "images" / f"{row['id']}.png"),
                  tifffile.imread(data / split / "labels" / f"{row['id']}.tif"))


def folds_of(ids, n_folds, seed):
    order = np.random.default_rng(seed).permutation(sorted(ids))
    return [sorted(order[k::n_folds].tolist()) for k in range(n_folds)]


def score(model_dir, samples):
    model = load(model_dir)
    per_image = [metrics.evaluate_image(s.labels, segment(s.image, model).labels) for s in samples]
    return metrics.summarize(per_image), [e.dsb_score for e in per_image]


def zero_shot(args, histo):
    model = load("fluo_nuclei")
    for k, held_out in enumerate(folds_of(histo, args.folds, args.seed)):
        per_image = []
        for sample in (annotated(args.data, histo[i]) for i in held_out):
            grey = 255.0 - np.asarray(sample.image, np.float32)[..., :3].mean(axis=2)
            per_image.append(metrics.evaluate_image(sample.labels, segment(grey, model).labels))
        summary = metrics.summarize(per_image)
        print(f"fold {k}: fluo_nuclei zero-shot (grey, inverted) held-out DSB {summary.dsb_score:.4f}, "
              f"score@0.5 {summary.score[0]:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--only-fold", type=int, help="run one fold (0-based) only")
    parser.add_argument("--fluo", type=int, default=16, help="fluorescence training images in both arms")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--generator-steps", type=int, default=1500)
    parser.add_argument("--generator-minutes", type=float, default=4.0, help="cap per style")
    parser.add_argument("--generator-size", type=int, default=128)
    parser.add_argument("--min-style-images", type=int, default=3)
    parser.add_argument("--invert-prob", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zero-shot", action="store_true",
                        help="only score the grey fluo_nuclei on each fold's held-out images, "
                        "converted to grey and inverted (the baseline without any histology training)")
    args = parser.parse_args()

    rows = read_index(args.data)
    histo = {r["id"]: r for r in rows if r["kind"] == "histo" and r["split"] == "train"}
    unlabeled = [Sample(r["id"], read_image(args.data / "unlabeled" / "images" / f"{r['id']}.png"), None)
                 for r in rows if r["kind"] == "histo" and r["split"] == "unlabeled"]
    fluo_rows = [r for r in rows if r["kind"] == "fluo" and r["split"] == "train"]
    chosen = np.random.default_rng(args.seed).choice(len(fluo_rows), size=args.fluo, replace=False)
    fluo = [annotated(args.data, fluo_rows[i]) for i in sorted(chosen)]
    settings = TrainSettings(steps_per_epoch=args.steps, epochs=args.epochs, learning_rate=args.learning_rate,
                             patience=0, lr_patience=0, seed=args.seed)
    augmenter = Augmenter(invert_prob=args.invert_prob)
    style = StyleSettings(min_cluster_size=args.min_style_images, share=args.share, seed=args.seed,
                          generator=GeneratorSettings(size=args.generator_size,
                                                      depth=depth_for_size(args.generator_size),
                                                      steps=args.generator_steps, minutes=args.generator_minutes,
                                                      seed=args.seed))
    if args.zero_shot:
        zero_shot(args, histo)
        return
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    folds = folds_of(histo, args.folds, args.seed)
    for k, held_out in enumerate(folds):
        if args.only_fold is not None and k != args.only_fold:
            continue
        test = [annotated(args.data, histo[i]) for i in held_out]
        train_histo = [annotated(args.data, histo[i]) for i in sorted(histo) if i not in held_out]
        fold = {"held_out": held_out, "trained_on": [s.name for s in train_histo]}
        for arm, style_settings, first_pass in (("a_no_style", None, None),
                                                ("b_style", style, args.out / f"fold{k}" / "a_no_style")):
            out = args.out / f"fold{k}" / arm
            start = time.monotonic()
            train_with_styles(
                train_histo + fluo, train_histo, out, n_channels=3, settings=settings,
                unlabeled=unlabeled if style_settings else (), style=style_settings, first_pass=first_pass,
                base="fluo_nuclei", augmenter=augmenter, progress=False,
                data_description=[f"histology fold {k} of {args.folds}: trained on {len(train_histo)} annotated "
                                  f"histology images + {len(fluo)} fluorescence images; held out: "
                                  + ", ".join(i[:8] for i in held_out)],
                command="scripts/histology_style_experiment.py " + " ".join(
                    f"--{name.replace('_', '-')} {value}" for name, value in vars(args).items() if value is not None),
                log=lambda message: print(f"[fold {k} {arm}] {message}", flush=True),
            )
            summary, per_image = score(out, test)
            fold[arm] = {"dsb": summary.dsb_score, "score_at_0.5": summary.score[0],
                         "per_image": dict(zip(held_out, per_image)), "minutes": (time.monotonic() - start) / 60}
            print(f"fold {k} {arm}: held-out histology DSB {summary.dsb_score:.4f}, "
                  f"score@0.5 {summary.score[0]:.4f}", flush=True)
        results[str(k)] = fold
        args.out.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1))

    print("fold | held out | (a) no style DSB | (b) style DSB")
    images = {"a_no_style": [], "b_style": []}
    for k, fold in sorted(results.items()):
        print(f"{k} | {len(fold['held_out'])} | {fold['a_no_style']['dsb']:.4f} | {fold['b_style']['dsb']:.4f}")
        for arm in images:
            images[arm] += list(fold[arm]["per_image"].values())
    print(f"all held-out images ({len(images['a_no_style'])}): (a) {np.mean(images['a_no_style']):.4f}, "
          f"(b) {np.mean(images['b_style']):.4f}")


if __name__ == "__main__":
    main()
