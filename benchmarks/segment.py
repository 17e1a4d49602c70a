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

Sizes and precisions (``--sizes 512,1024,2048,2160x2560,4096``)
---------------------------------------------------------------
Per size, one fluorescence field (a mosaic of the bundled example images) is segmented by
``nucleai.predict.segment`` in float32 and in bfloat16, by stardist's ``predict_instances``
(float32, its default ``n_tiles``) and, with ``--baseline REV``, by the float32 code of an
earlier commit (checked out into a temporary worktree, built, and run in a worker process that
loads the model once: "today" before a change). The methods take turns (``--repeat`` rounds,
each method once per size per round; the best round is reported), so load drifts hit them
alike. Printed per size: seconds per image, ratios against float32 and against stardist (and
the baseline), our stage split, and the peak memory of one image, each method in a fresh
process (peak resident set over the loaded, warmed-up model: ``VmHWM`` after resetting it). ``--dsb`` adds the DSB
score of both precisions on the validation images against their annotations.

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


# --------------------------------------------------------------------------------------------
# Sizes and precisions


#: One image segmented by one method in a fresh process: the peak resident memory it added.
MEMORY_PROBE = """
import json, sys
import numpy as np
method, model_name, path = sys.argv[1:4]
image = np.load(path)
if method == "stardist":
    import contextlib, io
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D
    from nucleai import models
    folder = models.locate(model_name)
    with contextlib.redirect_stdout(io.StringIO()):
        model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    run = lambda x: model.predict_instances(normalize(x, 1, 99.8), show_tile_progress=False)
else:
    from nucleai import models, predict
    precision = {"float32": "float32", "bfloat16": "bfloat16", "baseline": None}[method]
    model = models.load(model_name) if precision is None else models.load(model_name, precision=precision)
    run = lambda x: predict.segment(x, model)
def status(field):  # kB; VmHWM is this process's own peak (ru_maxrss carries the parent's over exec)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
run(image[:256, :256])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current resident set
before = status("VmRSS")
run(image)
print(json.dumps((status("VmHWM") - before) / 1024))
"""

#: The baseline's worker: loads the model once, then segments each .npy path read from stdin.
BASELINE_WORKER = """
import json, sys, time
import numpy as np
from nucleai import models, predict
model = models.load(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    image = np.load(line.strip())
    timings = {}
    start = time.perf_counter()
    result = predict.segment(image, model, timings=timings)
    print(json.dumps({"seconds": time.perf_counter() - start, "stages": timings,
                      "objects": int(result.count)}), flush=True)
"""


def parse_size(text):
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def field(size):
    """A fluorescence field of ``size`` (h, w): the bundled example images as a mosaic."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tta import mosaic

    sources = sorted((ROOT / "example_pipelines" / "images").glob("nuclei_[0-9a-f]*.png"))
    return mosaic(sources, max(size))[: size[0], : size[1]]


def baseline_checkout(revision, folder):
    """``revision`` of this repository in ``folder`` (a git worktree), its extensions built."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=folder, check=True,
                   capture_output=True)
    return folder


class BaselineWorker:
    """The baseline commit's ``predict.segment`` in a process of its own (its package first on
    the path, this repository's models)."""

    def __init__(self, checkout, model):
        env = {**os.environ, "PYTHONPATH": str(checkout / "shared"), "NUCLEAI_MODELS_DIR": str(ROOT / "models"),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen([sys.executable, "-c", BASELINE_WORKER, str(model)], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.process.stdout.readline().strip() == "ready"

    def segment(self, path):
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def time_ours(image, model):
    from nucleai import predict

    timings = {}
    start = time.perf_counter()
    result = predict.segment(image, model, timings=timings)
    return {"seconds": time.perf_counter() - start, "stages": timings, "objects": int(result.count)}


def time_stardist(image, model):
    from csbdeep.utils import normalize

    start = time.perf_counter()
    labels, details = model.predict_instances(normalize(image, 1, 99.8), show_tile_progress=False)
    return {"seconds": time.perf_counter() - start, "objects": len(details["prob"])}


def peak_memory(method, model, path, checkout):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if method == "baseline":
        env.update(PYTHONPATH=str(checkout / "shared"), NUCLEAI_MODELS_DIR=str(ROOT / "models"))
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, method, str(model), str(path)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def validation_dsb(model_name):
    """Mean DSB score of float32 and bfloat16 on the validation images (against annotations)."""
    from nucleai import labelio, metrics, models, predict

    labels = DSB_VAL.parent / "labels"
    paths = sorted(labelio.files_by_stem(DSB_VAL, suffixes=labelio.IMAGE_SUFFIXES).items())
    scores = {}
    for precision in ("float32", "bfloat16"):
        model = models.load(model_name, precision=precision)
        evaluations = []
        for stem, path in paths:
            truth = labelio.read_labels(next(labels.glob(f"{stem}.*")))
            image = predict.select_channels(labelio.read_image(path), 1, None)[..., 0]
            evaluations.append(metrics.evaluate_image(truth, predict.segment(image, model).labels))
        scores[precision] = metrics.summarize(evaluations).dsb_score
    return len(paths), scores


def cost_multiples(image, model_name, repeat):
    """Seconds of plain segmentation, TTA (the paper's six transforms) and segmentation plus
    refinement (``fluo_refine``) of one image, per precision (best of ``repeat``, interleaved)."""
    from nucleai import models, predict, tta
    from nucleai.refine.apply import refine_image

    best = {}
    for _ in range(repeat):
        for precision in ("float32", "bfloat16"):
            detector = models.load(model_name, precision=precision)
            refiner = models.load("fluo_refine", kind="unet", precision=precision)
            runs = {"plain": lambda: predict.segment(image, detector),
                    "tta": lambda: tta.segment_tta(image, detector),
                    "refine": lambda: refine_image(image, predict.segment(image, detector).labels, refiner)}
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
                key = (precision, name)
                best[key] = min(best.get(key, seconds), seconds)
    return best


def sizes_main(args):
    import contextlib as _contextlib

    import numpy as np
    from stardist.models import StarDist2D

    from nucleai import models, runtime

    sizes = [parse_size(text) for text in args.sizes.split(",")]
    folder = models.locate(args.model)
    ours = {p: models.load(args.model, precision=p) for p in ("float32", "bfloat16")}
    with _contextlib.redirect_stdout(io.StringIO()):
        stardist = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    methods = ["float32", "bfloat16", "stardist"] + (["baseline"] if args.baseline else [])
    results = {}
    with tempfile.TemporaryDirectory(prefix="nucleai-bench-sizes-") as tmp, _contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        checkout = worker = None
        if args.baseline:
            checkout = baseline_checkout(args.baseline, tmp / "baseline")
            stack.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)])
            worker = BaselineWorker(checkout, args.model)
            stack.callback(worker.close)
        images = {}
        for size in sizes:
            images[size] = tmp / f"{size[0]}x{size[1]}.npy"
            np.save(images[size], field(size))
            image = np.load(images[size])  # warm-up: every method traces its graph for this size
            time_ours(image, ours["float32"]), time_ours(image, ours["bfloat16"]), time_stardist(image, stardist)
            if worker:
                worker.segment(images[size])
        for round_ in range(args.repeat):
            for size in sizes:
                image = np.load(images[size])
                for method in methods:
                    if method == "stardist":
                        record = time_stardist(image, stardist)
                    elif method == "baseline":
                        record = worker.segment(images[size])
                    else:
                        record = time_ours(image, ours[method])
                    best = results.setdefault(size, {}).get(method)
                    if best is None or record["seconds"] < best["seconds"]:
                        results[size][method] = record
        for size in sizes:
            for method in methods:
                results[size][method]["peak_mb"] = peak_memory(method, args.model, images[size], checkout)

    print(f"model {folder}; cores {os.cpu_count()}; bfloat16 native here: {runtime.native_bfloat16()}; "
          f"best of {args.repeat} interleaved rounds; peak memory of one image, fresh process")
    for size in sizes:
        row = results[size]
        f32 = row["float32"]["seconds"]
        text = [f"{size[0]}x{size[1]}:"]
        for method in methods:
            record = row[method]
            text.append(f"{method} {record['seconds']:.3f} s ({record['objects']} objects, {record['peak_mb']:.0f} MB)")
        print("  ".join(text))
        ratios = [f"bfloat16/float32 {row['bfloat16']['seconds'] / f32:.2f}",
                  f"float32/stardist {f32 / row['stardist']['seconds']:.2f}",
                  f"bfloat16/stardist {row['bfloat16']['seconds'] / row['stardist']['seconds']:.2f}"]
        if args.baseline:
            base = row["baseline"]["seconds"]
            ratios += [f"baseline/float32 {base / f32:.2f} (speed-up of float32)",
                       f"bfloat16/baseline {row['bfloat16']['seconds'] / base:.2f}"]
        print("    " + ", ".join(ratios))
        for method in ("float32", "bfloat16", "baseline"):
            if method in row:
                stages = row[method]["stages"]
                total = sum(stages.values()) or 1.0
                print(f"    {method} stages: " + ", ".join(f"{k} {v:.3f} s ({100 * v / total:.0f}%)"
                                                      for k, v in stages.items()))
    report = {f"{h}x{w}": row for (h, w), row in results.items()}
    if args.multiples:
        side = parse_size(args.multiples)
        best = cost_multiples(field(side), args.model, args.repeat)
        for precision in ("float32", "bfloat16"):
            plain = best[(precision, "plain")]
            print(f"{side[0]}x{side[1]} {precision}: plain {plain:.3f} s, TTA x6 {best[(precision, 'tta')]:.3f} s "
                  f"({best[(precision, 'tta')] / plain:.1f}x plain), with refinement {best[(precision, 'refine')]:.3f} s "
                  f"({best[(precision, 'refine')] / plain:.1f}x plain)")
        report["multiples"] = {f"{p} {n}": v for (p, n), v in best.items()}
    if args.dsb:
        n, scores = validation_dsb(args.model)
        print(f"DSB score on the {n} validation images: float32 {scores['float32']:.4f}, bfloat16 "
              f"{scores['bfloat16']:.4f} (difference {scores['bfloat16'] - scores['float32']:+.4f})")
        report["validation_dsb"] = scores
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fluo_nuclei", help="bundled name or model folder")
    parser.add_argument("--images", type=Path, default=DSB_VAL, help="folder of images")
    parser.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")
    parser.add_argument("--json", type=Path, help="write all timings as JSON")
    parser.add_argument("--sizes", metavar="S,S,...", help="per-size benchmark of the precisions, e.g. "
                        "512,1024,2048,2160x2560,4096 (instead of the folder benchmark)")
    parser.add_argument("--baseline", metavar="REV", help="with --sizes: also time this commit's float32 code")
    parser.add_argument("--repeat", type=int, default=2, help="with --sizes: interleaved rounds (best kept)")
    parser.add_argument("--multiples", metavar="S", help="with --sizes: the cost of TTA and refinement "
                        "against plain segmentation on an S-pixel field, per precision")
    parser.add_argument("--dsb", action="store_true", help="with --sizes: DSB score of both precisions on "
                        "the validation images")
    args = parser.parse_args()
    if args.sizes:
        return sizes_main(args)

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
