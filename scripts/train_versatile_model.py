"""Train ``versatile_nuclei``: one 3-channel detector for fluorescence, brightfield and histology.

nucleAIzer's recipe on the DSB 2018 development data (``../shared/data/dsb2018``), in stages that
each resume where they stopped (run the same command again):

``styles``
    Style clusters, found separately in the two groups the style features split first
    (fluorescence: the 406 annotated fluorescence images; the rest: the 40 + 4 unannotated
    histology and brightfield images): clustering all images at once put brightfield and
    histology into one style. A style's generator learns from (mask, image) pairs: real masks
    for fluorescence, a first pass for the unannotated images (:func:`first_pass`). The annotated
    histology and brightfield images are kept out of the styles on purpose, so that one set of
    generators serves every fold without seeing a held-out image. One pix2pix generator per style
    at the full default budget (256 px crops, 2,000 steps = the 10-minute default on an idle
    2-core CPU), ``--workers`` processes at once, each with ``NUCLEAI_THREADS`` threads.
``train --run R --arm A``
    ``R`` is ``final`` (every annotated image) or ``foldK`` (leave-some-out: the K-th of
    ``--folds`` folds of the 8 annotated histology and of the 4 brightfield images held out).
    Synthetic pairs are made for the run: per style ``--pairs`` masks drawn from the style's
    measured nuclei, with real outlines pooled from the run's annotated masks of every kind
    (rescaled to the style's nucleus size), rendered by the style's generator. ``A`` is
    ``style`` (``--share`` of each minibatch synthetic) or ``no_style`` (the same run without
    them: same data, base, steps, augmentation and seed). Fine-tuned from ``fluo_nuclei``
    widened to colour; each histology and brightfield training image is listed ``--repeat``
    times so that the 12 of them are not lost among 406 fluorescence images.
``all``
    The folds (both arms), their scores, then ``final`` in the arm whose held-out mean DSB was
    higher (nucleAIzer's style transfer is kept only where it measurably helps), then the scores
    again; each step skips what an earlier call finished.
``score``
    Held-out DSB scores per fold, kind and arm, and the fluorescence validation score, with the
    cheap inference levers (inversion, haematoxylin channel, rescaling to the trained nucleus
    size) tried on the held-out images; writes ``scores.json`` (``--only foldK`` rescoring one
    run and keeping the others' scores).

Run from the repository root with the repo's venv, e.g.::

    nice -n 19 .venv/bin/python scripts/train_versatile_model.py styles --out /work/versatile
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

from nucleai.labelio import read_image, read_labels, write_labels
from nucleai.train.data import Sample, to_channels

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"
STYLES = "styles"


def log(message):
    print(time.strftime("%H:%M:%S"), message, flush=True)


def read_rows(data):
    rows = json.loads((data / "index.json").read_text())
    return rows if isinstance(rows, list) else rows["images"]


def sample(data, row):
    folder = data / row["split"]
    labels = folder / "labels" / f"{row['id']}.tif"
    return Sample(row["id"], read_image(folder / "images" / f"{row['id']}.png"),
                  read_labels(labels) if labels.is_file() else None)


def folds_of(ids, n_folds, seed):
    order = np.random.default_rng(seed).permutation(sorted(ids))
    return [sorted(order[k::n_folds].tolist()) for k in range(n_folds)]


def held_out(args, rows, run):
    """Ids of the annotated histology and brightfield images a run must not see."""
    if run == "final":
        return []
    k = int(run.removeprefix("fold"))
    ids = []
    for kind in ("histo", "brightfield"):
        kind_ids = [r["id"] for r in rows if r["kind"] == kind and r["split"] == "train"]
        ids += folds_of(kind_ids, args.folds, args.seed)[k]
    return ids


# --- styles ---------------------------------------------------------------------------------

def plan_styles(args, rows):
    """Cluster, first-pass and record the styles (``styles/plan.json``); returns the plan."""
    from nucleai.train import style

    folder = args.out / STYLES
    plan_file = folder / "plan.json"
    groups = {
        "fluo": [r for r in rows if r["kind"] == "fluo" and r["split"] == "train"],
        "other": [r for r in rows if r["kind"] != "fluo" and r["split"] == "unlabeled"],
    }
    first_pass(args, groups["other"])
    if plan_file.is_file():
        return json.loads(plan_file.read_text())
    plan = {"styles": [], "groups": {}}
    for group, group_rows in groups.items():
        samples = [sample(args.data, r) for r in group_rows]
        clusters = style.cluster_styles([s.image for s in samples], min_cluster_size=3, seed=args.seed)
        plan["groups"][group] = {"k": clusters.k, "rule": clusters.rule, "dropped": clusters.dropped}
        log(f"{group}: {len(samples)} images, {clusters.k} style clusters ({clusters.rule})")
        for j in clusters.kept:
            members = [r for r, label in zip(group_rows, clusters.labels) if label == j]
            plan["styles"].append({
                "name": f"{group}_{j}", "ids": [r["id"] for r in members],
                "kinds": sorted({r["kind"] for r in members}),
                "masks": "annotations" if group == "fluo" else "first pass (see first_pass/)"})
    plan_file.write_text(json.dumps(plan, indent=1))
    return plan


def first_pass(args, unannotated):
    """Label the unannotated images the style generators learn from (``styles/first_pass/ID.tif``,
    each made once: delete a file to redo it).

    An image the automatic choice calls brightfield gets its model, ``histo_nuclei`` on the
    haematoxylin density, which trained on no brightfield image: on the 4 annotated DSB
    brightfield images it scores DSB 0.236 against 0.119 for ``fluo_nuclei`` on the density,
    whose first pass outlined whole squamous cells instead of their nuclei. Histology images get
    ``fluo_nuclei`` on the density (:func:`first_pass_labels`): ``histo_nuclei`` trained on the
    histology images fold1 holds out, and ``fluo_nuclei`` scores as well there (0.237 against 0.229).
    """
    from nucleai.modality import BRIGHTFIELD, decide, seen_as, segment_auto
    from nucleai.models import load
    from nucleai.train.styletransfer import first_pass_labels

    folder = args.out / STYLES / "first_pass"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [sample(args.data, r) for r in unannotated if not (folder / f"{r['id']}.tif").is_file()]
    if not todo:
        return
    is_brightfield = [decide(s.image).kind == BRIGHTFIELD for s in todo]
    for s in (s for s, bright in zip(todo, is_brightfield) if bright):
        result, decision = segment_auto(s.image)
        log(f"first pass of {s.name[:8]}: {decision.model}{seen_as(decision.preparation)}, {result.labels.max()} objects")
        write_labels(folder / f"{s.name}.tif", result.labels)
    rest = [s for s, bright in zip(todo, is_brightfield) if not bright]
    if rest:
        masks = first_pass_labels(load("fluo_nuclei"), [s.image for s in rest], log)
        for s, labels in zip(rest, masks):
            write_labels(folder / f"{s.name}.tif", labels)


def style_pairs(args, rows, entry):
    """(masks, images) a style's generator learns from."""
    by_id = {r["id"]: r for r in rows}
    masks, images = [], []
    for image_id in entry["ids"]:
        s = sample(args.data, by_id[image_id])
        labels = s.labels if s.labels is not None else read_labels(
            args.out / STYLES / "first_pass" / f"{image_id}.tif")
        if labels.max() > 0:
            masks.append(labels)
            images.append(to_channels(s.image, 3))
    return masks, images


def train_generators(args, rows, plan):
    """Train the plan's generators not yet trained, ``--workers`` processes at once."""
    todo = [e["name"] for e in plan["styles"]
            if not (args.out / STYLES / e["name"] / "config.json").is_file()]
    if args.style:
        todo = [name for name in todo if name == args.style]
        for name in todo:
            train_generator(args, rows, next(e for e in plan["styles"] if e["name"] == name))
        return
    log(f"{len(todo)} generator(s) to train: {', '.join(todo) or 'none'}")
    running = []
    env = {**os.environ, "NUCLEAI_THREADS": str(args.threads)}
    while todo or running:
        while todo and len(running) < args.workers:
            name = todo.pop(0)
            command = [sys.executable, __file__, "styles", "--out", str(args.out), "--data",
                       str(args.data), "--style", name, "--seed", str(args.seed),
                       "--generator-steps", str(args.generator_steps)]
            handle = open(args.out / STYLES / f"{name}.log", "a")
            running.append((name, subprocess.Popen(command, env=env, stdout=handle, stderr=handle)))
        time.sleep(5)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                log(f"generator {name}: exit {process.returncode}")


def train_generator(args, rows, entry):
    from nucleai.train import pix2pix

    masks, images = style_pairs(args, rows, entry)
    log(f"style {entry['name']}: generator on {len(masks)} pairs ({', '.join(entry['kinds'])})")
    settings = pix2pix.GeneratorSettings(size=256, steps=args.generator_steps, minutes=None, seed=args.seed)
    pix2pix.train_generator(masks, images, n_channels=3, settings=settings,
                            out_dir=args.out / STYLES / entry["name"], progress=False, log=log)


# --- synthetic pairs and detector training -------------------------------------------------

def synthetic_pairs(args, rows, plan, run, train):
    """The run's synthetic pairs (made once, then read back)."""
    from nucleai import models
    from nucleai.train import pix2pix, style_grid, synthetic_masks

    folder = args.out / "runs" / run / "synthetic"
    done = folder / "done.json"
    if done.is_file():
        names = json.loads(done.read_text())["names"]
        return [Sample(n, tifffile.imread(folder / "images" / f"{n}.tif"),
                       read_labels(folder / "labels" / f"{n}.tif")) for n in names]
    pool = synthetic_masks.measure_objects([s.labels for s in train], max_shapes=2000, seed=args.seed).shapes
    made = []
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, entry in enumerate(plan["styles"]):
        masks, images = style_pairs(args, rows, entry)
        stats = synthetic_masks.with_shapes_of(synthetic_masks.measure_objects(masks), pool, seed=args.seed + k)
        new_masks = synthetic_masks.synthesise_masks(stats, (256, 256), args.pairs, seed=args.seed + k)
        generator = models.load(args.out / STYLES / entry["name"], kind="generator")
        new_images = pix2pix.render_images(generator.keras_model, new_masks, n_channels=3)
        for i, (image, labels) in enumerate(zip(new_images, new_masks)):
            name = f"{entry['name']}_{i:03d}"
            tifffile.imwrite(folder / "images" / f"{name}.tif", image)
            write_labels(folder / "labels" / f"{name}.tif", labels)
            made.append(Sample(name, image, labels))
        style_grid.save_style_grid(folder / f"{entry['name']}_real_vs_synthetic.png", images, masks,
                                   new_images, new_masks,
                                   title=f"style {entry['name']}: real (top) and synthetic (bottom)")
        log(f"{run}: style {entry['name']}: {len(new_masks)} synthetic pairs")
    done.write_text(json.dumps({"names": [s.name for s in made]}))
    return made


def train_run(args, rows, plan):
    from nucleai.train.augment import Augmenter
    from nucleai.train.detector import train_detector
    from nucleai.train.loop import TrainSettings

    out = args.out / "runs" / args.run / args.arm
    state = out / "train_state.json"
    if (out / "thresholds.json").is_file() and state.is_file() and \
            json.loads(state.read_text())["epochs_done"] >= args.epochs:
        log(f"{args.run}/{args.arm}: trained ({args.epochs} epochs), skipped")
        return
    hidden = set(held_out(args, rows, args.run))
    fluo = [sample(args.data, r) for r in rows if r["kind"] == "fluo" and r["split"] == "train"]
    other = [sample(args.data, r) for r in rows
             if r["kind"] != "fluo" and r["split"] == "train" and r["id"] not in hidden]
    val = [sample(args.data, r) for r in rows if r["split"] == "val"] + other
    train = fluo + other * args.repeat
    extra = synthetic_pairs(args, rows, plan, args.run, fluo + other) if args.arm == "style" else []
    settings = TrainSettings(steps_per_epoch=args.steps_per_epoch, epochs=args.epochs, learning_rate=args.learning_rate,
                             patience=0, lr_patience=0, seed=args.seed,
                             extra_share=args.share if args.arm == "style" else 0.0)
    description = [
        f"run {args.run}: {len(fluo)} fluorescence + {len(other)} histology/brightfield annotated "
        f"images (the latter listed {args.repeat} times); held out: "
        + (", ".join(i[:8] for i in sorted(hidden)) or "none"),
        f"validation (best epoch, thresholds): the {len(val) - len(other)} fluorescence images of the "
        f"val split + the run's {len(other)} histology/brightfield training images (in-sample)",
        f"synthetic pairs: {len(extra)} ({args.pairs} per style, {len(plan['styles'])} styles)"
        if extra else "no style augmentation"]
    train_detector(train, val, out, n_channels=3,
                   settings=settings, base="fluo_nuclei", augmenter=Augmenter(invert_prob=0.2),
                   extra=extra, data_description=description,
                   command=" ".join(["scripts/train_versatile_model.py"] + sys.argv[1:]),
                   progress=False, log=log)


# --- scores ---------------------------------------------------------------------------------

def inverted(image):
    """Bright-background images (brightfield, histology) inverted, so nuclei are bright."""
    from nucleai.train.styletransfer import dark_objects

    rgb = to_channels(image, 3).astype(np.float32)
    return rgb.max() - rgb if dark_objects(image) else rgb


def score(args, rows):
    from nucleai import metrics
    from nucleai.models import load
    from nucleai.predict import SegmentOptions, segment
    from nucleai.stain import haematoxylin

    scores_file = args.out / "scores.json"
    results = json.loads(scores_file.read_text()) if args.only and scores_file.is_file() else {}
    by_id = {r["id"]: r for r in rows}
    levers = {"plain": lambda im: (im, SegmentOptions()),
              "inverted": lambda im: (inverted(im), SegmentOptions()),
              "rescaled": lambda im: (im, SegmentOptions(object_diameter="auto")),
              "haematoxylin": lambda im: (haematoxylin(im), SegmentOptions())}
    for run_dir in sorted((args.out / "runs").glob("*")):
        if args.only and run_dir.name != args.only:
            continue
        for arm_dir in sorted(p for p in run_dir.glob("*") if (p / "thresholds.json").is_file()):
            model = load(arm_dir)
            key = f"{run_dir.name}/{arm_dir.name}"
            hidden = held_out(args, rows, run_dir.name)
            entry = {}
            for lever, prepare in levers.items():
                per_kind = {}
                for image_id in hidden:
                    s = sample(args.data, by_id[image_id])
                    image, options = prepare(s.image)
                    result = metrics.evaluate_image(s.labels, segment(to_channels(image, 3), model, options).labels)
                    per_kind.setdefault(by_id[image_id]["kind"], {})[image_id[:8]] = result.dsb_score
                entry[lever] = per_kind
            if run_dir.name == "final":
                val = [sample(args.data, r) for r in rows if r["split"] == "val"]
                entry["val_fluo_dsb"] = metrics.summarize(
                    [metrics.evaluate_image(s.labels, segment(to_channels(s.image, 3), model).labels)
                     for s in val]).dsb_score
            results[key] = entry
            log(f"{key}: {json.dumps(entry)}")
    scores_file.write_text(json.dumps(results, indent=1))
    (args.out / "scores.md").write_text(score_tables(results))
    log(f"scores in {scores_file}, tables in {args.out / 'scores.md'}")
    return results


KINDS_HELD_OUT = ("histo", "brightfield")


def folds_in(results):
    return sorted({key.split("/")[0] for key in results if key.startswith("fold")})


def run_mean(results, key, lever, kind):
    """Mean DSB of one run's held-out images of one kind (NaN while the run is not scored)."""
    values = list(results.get(key, {}).get(lever, {}).get(kind, {}).values())
    return float(np.mean(values)) if values else float("nan")


def fold_mean(results, arm, lever, kind):
    """Mean over the folds of :func:`run_mean`: the figure the tables report and the targets name."""
    return float(np.mean([run_mean(results, f"{fold}/{arm}", lever, kind) for fold in folds_in(results)]))


def score_tables(results):
    """Markdown: the held-out DSB per fold and kind in both arms, then every lever's mean."""
    lines = ["| fold | kind | held-out images | no style transfer | style transfer |", "| --- | --- | --- | ---: | ---: |"]
    for kind in KINDS_HELD_OUT:
        for fold in folds_in(results):
            ids = ", ".join(results.get(f"{fold}/no_style", results.get(f"{fold}/style", {}))["plain"].get(kind, {}))
            lines.append(f"| {fold} | {kind} | {ids} | {run_mean(results, f'{fold}/no_style', 'plain', kind):.3f} "
                         f"| {run_mean(results, f'{fold}/style', 'plain', kind):.3f} |")
        lines.append(f"| **mean** | {kind} | | **{fold_mean(results, 'no_style', 'plain', kind):.3f}** "
                     f"| **{fold_mean(results, 'style', 'plain', kind):.3f}** |")
    levers = [lever for lever in next(iter(results.values())) if lever != "val_fluo_dsb"]
    lines += ["", "Mean held-out DSB over the folds, per inference lever:", "",
              "| arm | kind | " + " | ".join(levers) + " |", "| --- | --- |" + " ---: |" * len(levers)]
    for arm in ("no_style", "style"):
        for kind in KINDS_HELD_OUT:
            cells = [fold_mean(results, arm, lever, kind) for lever in levers]
            lines.append(f"| {arm} | {kind} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    for key, entry in results.items():
        if "val_fluo_dsb" in entry:
            lines += ["", f"{key}: fluorescence validation split (54 images) DSB {entry['val_fluo_dsb']:.4f}"]
    return "\n".join(lines) + "\n"


def better_arm(results):
    """The arm whose fold means (the tables' **mean** rows), averaged over the two kinds, are higher."""
    return max(("no_style", "style"),
               key=lambda arm: np.mean([fold_mean(results, arm, "plain", kind) for kind in KINDS_HELD_OUT]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("styles", "train", "score", "all"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="generators trained at once")
    parser.add_argument("--threads", type=int, default=1, help="NUCLEAI_THREADS per generator")
    parser.add_argument("--style", help=argparse.SUPPRESS)  # one generator (a worker process)
    parser.add_argument("--generator-steps", type=int, default=2000,
                        help="per style (2,000 = the 10-minute default on an idle 2-core CPU)")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--run", default="final", help="final or foldK")
    parser.add_argument("--arm", choices=("style", "no_style"), default="style")
    parser.add_argument("--only", metavar="RUN", help="score: only this run (e.g. fold0), the others' scores kept")
    parser.add_argument("--epochs", type=int, default=20, help="of --steps-per-epoch steps")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="minibatches of 4 patches")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--share", type=float, default=0.3, help="synthetic share per minibatch")
    parser.add_argument("--pairs", type=int, default=200, help="synthetic pairs per style")
    parser.add_argument("--repeat", type=int, default=10,
                        help="times each histology/brightfield training image is listed")
    args = parser.parse_args()
    rows = read_rows(args.data)
    (args.out / STYLES).mkdir(parents=True, exist_ok=True)
    if args.stage == "styles":
        plan = plan_styles(args, rows)
        train_generators(args, rows, plan)
    elif args.stage == "train":
        # the no_style arm needs no styles: it can train before (or without) the generators
        plan = json.loads((args.out / STYLES / "plan.json").read_text()) if args.arm == "style" else None
        train_run(args, rows, plan)
    elif args.stage == "score":
        score(args, rows)
    else:  # everything, in order; each step skips what an earlier call finished
        plan = plan_styles(args, rows)
        train_generators(args, rows, plan)
        for run in [f"fold{k}" for k in range(args.folds)]:
            for arm in ("no_style", "style"):
                train_run(argparse.Namespace(**{**vars(args), "run": run, "arm": arm}), rows, plan)
        arm = better_arm(score(args, rows))
        log(f"final: trained in the {arm} arm (higher held-out mean DSB over the folds)")
        train_run(argparse.Namespace(**{**vars(args), "run": "final", "arm": arm}), rows, plan)
        score(args, rows)


if __name__ == "__main__":
    main()
