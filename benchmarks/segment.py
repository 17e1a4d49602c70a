"""Benchmark: ``nucleai segment`` against ``StarDist2D.predict_instances``, same model and images.

    python benchmarks/segment.py [--model fluo_nuclei] [--images DIR] [--limit N] [--json FILE]

What is timed
-------------
- ours: the real command, ``nucleai segment --model M --input DIR --output TMP --timings T``,
  run once as a subprocess. Its per-image time is what the command measures around each image
  (read, normalise, network, candidates, NMS, rendering, writing the TIFF); process start and
  the one model load are reported separately.
- stardist: in this process, the model loaded the way stardist users load it
  (``StarDist2D(None, name, basedir)``), then per image ``normalize(img, 1, 99.8)`` (csbdeep)
  and ``predict_instances`` with the model's thresholds, plus writing the same TIFF, so both
  sides do the same work. The image is read before the clock starts (reading is part of our
  per-image time, so this errs in stardist's favour). stardist's stages are timed through the
  generator ``predict_instances`` wraps: it announces the start of the prediction and of the
  NMS, so ``network`` is everything up to the NMS (padding, network, candidate selection) and
  ``nms+render`` the rest (NMS, polygon rendering).

Both run each image once ("one run"), in order, first image included (each side's first image
pays its TensorFlow graph tracing). The ratio is ours / stardist on the mean per-image time;
<= 1.0 means ours is no slower. Medians are given too. Both use every core.

The images default to the DSB 2018 fluorescence validation images beside the repository
(``../shared/data/dsb2018/val/images``). Timings taken while other work loads the machine
(``/tmp/nucleai-training.running`` exists during model training) are marked provisional.
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DSB_VAL = ROOT.parent / "shared" / "data" / "dsb2018" / "val" / "images"
BUSY_MARKER = Path("/tmp/nucleai-training.running")
OUR_STAGES = ("read", "normalize", "network", "candidates", "nms", "render", "write")
THEIR_STAGES = ("normalize", "network", "nms+render", "write")


def run_ours(model, images, output, timings_file):
    command = [str(Path(sys.executable).with_name("nucleai")), "segment", "--model", str(model),
               "--input", str(images), "--output", str(output), "--timings", str(timings_file)]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"nucleai segment failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    report = json.loads(Path(timings_file).read_text())
    report["wall_seconds"] = wall
    return report


def run_stardist(model_path, paths, output):
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    from nucleai import labelio, predict
    from nucleai.labelio import read_image

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        model = StarDist2D(None, name=model_path.name, basedir=str(model_path.parent))
    load = time.perf_counter() - start
    records = []
    for path in paths:
        image = read_image(path)
        image = predict.select_channels(image, 1, None)[..., 0]
        stages = {}
        begin = time.perf_counter()
        x = normalize(image, 1, 99.8)
        mark = time.perf_counter()
        stages["normalize"] = mark - begin
        result = None
        for step in model._predict_instances_generator(x, show_tile_progress=False):
            now = time.perf_counter()
            if isinstance(step, str):
                if step == "nms":
                    stages["network"] = now - mark
                    mark = now
            else:
                result = step
        now = time.perf_counter()
        stages["nms+render"] = now - mark
        labels = result[0]
        labelio.write_labels(output / f"{path.stem}.tif", labels)
        stages["write"] = time.perf_counter() - now
        records.append({"image": path.name, "shape": list(image.shape),
                        "objects": len(result[1]["prob"]),
                        "seconds": time.perf_counter() - begin, "stages": stages})
    return {"model_load_seconds": load, "images": records}


def summarise(records, stages):
    seconds = [r["seconds"] for r in records]
    per_stage = {s: sum(r["stages"].get(s, 0.0) for r in records) / len(records) for s in stages}
    return {
        "n_images": len(records),
        "mean_seconds": statistics.fmean(seconds),
        "median_seconds": statistics.median(seconds),
        "mean_without_first": statistics.fmean(seconds[1:]) if len(seconds) > 1 else seconds[0],
        "stages_mean_seconds": per_stage,
        "objects": sum(r["objects"] for r in records),
    }


def print_summary(name, summary, load, extra=""):
    print(f"{name}: {summary['n_images']} images, {summary['objects']} objects; per image "
          f"mean {summary['mean_seconds'] * 1000:.1f} ms, median "
          f"{summary['median_seconds'] * 1000:.1f} ms, mean without the first "
          f"{summary['mean_without_first'] * 1000:.1f} ms; model load {load:.2f} s{extra}")
    total = sum(summary["stages_mean_seconds"].values()) or 1.0
    parts = ", ".join(f"{stage} {value * 1000:.1f} ms ({100 * value / total:.0f}%)"
                      for stage, value in summary["stages_mean_seconds"].items())
    print(f"  where the time goes (mean per image): {parts}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fluo_nuclei", help="bundled name or model folder")
    parser.add_argument("--images", type=Path, default=DSB_VAL, help="folder of images")
    parser.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")
    parser.add_argument("--json", type=Path, help="write all timings as JSON")
    args = parser.parse_args()

    from nucleai import labelio, metrics, models
    from nucleai.labelio import IMAGE_SUFFIXES

    model_path = models.locate(args.model)
    paths = list(labelio.files_by_stem(args.images, suffixes=IMAGE_SUFFIXES).values())
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no images in {args.images}")
    busy = BUSY_MARKER.exists()
    with tempfile.TemporaryDirectory(prefix="nucleai-bench-") as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        for path in paths:  # the command takes a folder: link the selected images into one
            os.symlink(path.resolve(), images / path.name)
        ours_out, theirs_out = tmp / "ours", tmp / "stardist"
        theirs_out.mkdir()
        ours = run_ours(model_path, images, ours_out, tmp / "timings.json")
        theirs = run_stardist(model_path, paths, theirs_out)
        scores = [
            metrics.evaluate_image(labelio.read_labels(theirs_out / f"{p.stem}.tif"),
                                   labelio.read_labels(ours_out / f"{p.stem}.tif")).dsb_score
            for p in paths
        ]

    ours_summary = summarise(ours["images"], OUR_STAGES)
    theirs_summary = summarise(theirs["images"], THEIR_STAGES)
    ratio = ours_summary["mean_seconds"] / theirs_summary["mean_seconds"]
    print(f"model {model_path}; images {args.images} ({len(paths)}); cores {os.cpu_count()}")
    if busy:
        print("PROVISIONAL: the machine is busy (model training running); timings are not final")
    startup = ours["wall_seconds"] - sum(r["seconds"] for r in ours["images"])
    print_summary("nucleai segment", ours_summary, ours["model_load_seconds"],
                  f"; process start + load + exit {startup:.2f} s")
    print_summary("stardist predict_instances", theirs_summary, theirs["model_load_seconds"])
    print(f"ratio ours / stardist (mean per-image time): {ratio:.3f}  "
          f"(median: {ours_summary['median_seconds'] / theirs_summary['median_seconds']:.3f}; "
          f"without the first image: "
          f"{ours_summary['mean_without_first'] / theirs_summary['mean_without_first']:.3f})")
    print(f"agreement: DSB score of ours against stardist's labels, mean over images "
          f"{statistics.fmean(scores):.4f}, min {min(scores):.4f}")
    if args.json:
        args.json.write_text(json.dumps({
            "provisional": busy, "model": str(model_path), "images": str(args.images),
            "ratio": ratio, "ours": {**ours_summary, "raw": ours},
            "stardist": {**theirs_summary, "raw": theirs}, "agreement_dsb": scores,
        }, indent=1))


if __name__ == "__main__":
    main()
