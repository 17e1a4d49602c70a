"""Benchmark: where the time of test-time augmentation goes, predictions against merging.

    python benchmarks/tta.py [--model fluo_nuclei] [--size 1024] [--repeat 3]
                             [--transforms identity,flip_y,...] [--images DIR] [--json FILE]

The image is a mosaic of the images in ``--images`` (default: the four 256 x 256 DSB images of
``example_pipelines/images``, so it runs without ``../shared``), tiled row by row into a
``--size`` x ``--size`` image: 1024 x 1024 by default, about 500 nuclei.

What is timed (:func:`nucleai.tta.segment_tta` with its ``timings``), per run:

- predictions: everything :func:`nucleai.predict.segment` does, once per transform
  (normalisation, network, candidates, NMS, rendering), plus transforming the image and
  turning the label images back (views, nearly free);
- merge: :func:`nucleai.tta.merge_instances` on the versions (matching, votes, pixel vote,
  agreement);
- for reference, one plain :func:`nucleai.predict.segment` of the same image.

One untimed warm-up run comes first (TensorFlow traces its graph for each new input shape),
then ``--repeat`` runs; the medians are reported. The target of issue 8: the merge takes no more
than 20% of the total. Timings taken while the machine is busy (``/tmp/nucleai-training.running``
exists during model training, or the load average exceeds half the cores) are marked
provisional: the network competes for the cores, the merge (single-threaded numpy) less so.
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = ROOT / "example_pipelines" / "images"
BUSY_MARKER = Path("/tmp/nucleai-training.running")
PREDICTION_STAGES = ("transform", "normalize", "network", "candidates", "nms", "render")


def mosaic(paths, size):
    """The images tiled row by row (cycling through them) into a size x size image."""
    from nucleai import predict
    from nucleai.labelio import read_image

    tiles = []
    for path in paths:
        pixels = read_image(path)
        tiles.append(predict.select_channels(pixels, 1, 0 if pixels.ndim == 3 else None)[..., 0])
    canvas = np.zeros((size, size), tiles[0].dtype)
    y, k = 0, 0
    while y < size:
        x, row_height = 0, 0
        while x < size:
            tile = tiles[k % len(tiles)][: size - y, : size - x]
            canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
            x += tile.shape[1]
            row_height = max(row_height, tile.shape[0])
            k += 1
        y += row_height
    return canvas


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fluo_nuclei", help="bundled name or model folder")
    parser.add_argument("--size", type=int, default=1024, help="side of the test image (pixels)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (after one warm-up)")
    parser.add_argument("--transforms", default=",".join(
        ("identity", "flip_y", "flip_x", "rot90", "rot180", "rot270")),
        help="comma-separated transforms (default: the paper's six)")
    parser.add_argument("--images", type=Path, default=EXAMPLE_IMAGES,
                        help="folder of images the mosaic is made of")
    parser.add_argument("--json", type=Path, help="write the timings as JSON")
    args = parser.parse_args()

    from nucleai import labelio, models, predict, tta
    from nucleai.labelio import IMAGE_SUFFIXES

    transforms = tta.check_transforms(args.transforms)
    paths = list(labelio.files_by_stem(args.images, suffixes=IMAGE_SUFFIXES).values())
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    image = mosaic(paths, args.size)
    model = models.load(args.model)
    busy = BUSY_MARKER.exists() or os.getloadavg()[0] > os.cpu_count() / 2

    tta.segment_tta(image, model, tta.TTAOptions(transforms))  # warm-up: graph tracing for this shape
    predict.segment(image, model)
    runs = []
    for _ in range(args.repeat):
        timings = {}
        start = time.perf_counter()
        result = tta.segment_tta(image, model, tta.TTAOptions(transforms), timings=timings)
        total = time.perf_counter() - start
        start = time.perf_counter()
        plain = predict.segment(image, model)
        runs.append({
            "total": total,
            "predictions": sum(timings.get(stage, 0.0) for stage in PREDICTION_STAGES),
            "merge": timings["merge"],
            "plain": time.perf_counter() - start,
            "stages": timings,
        })

    def median(key):
        return statistics.median(run[key] for run in runs)

    total, merge = median("total"), median("merge")
    share = statistics.median(run["merge"] / run["total"] for run in runs)
    print(f"model {model.name}; image {image.shape[0]} x {image.shape[1]} (mosaic of "
          f"{len(paths)} images in {args.images}); {len(transforms)} transforms "
          f"({','.join(transforms)}); cores {os.cpu_count()}; load average "
          f"{os.getloadavg()[0]:.2f}; medians of {args.repeat} runs")
    if busy:
        print("PROVISIONAL: the machine is busy; timings are not final")
    print(f"objects: {result.count} merged, per version {list(result.counts)}; plain segment "
          f"{plain.count}")
    print(f"TTA total {total:.2f} s = predictions {median('predictions'):.2f} s "
          f"({median('predictions') / len(transforms):.2f} s per transform) + merge {merge:.3f} s "
          f"(+ {total - median('predictions') - merge:.3f} s other)")
    print(f"merge share of the total: {100 * share:.1f}% (target: at most 20%)")
    print(f"plain segment (one prediction): {median('plain'):.2f} s; TTA / plain: "
          f"{total / median('plain'):.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "provisional": busy, "model": str(model.spec.path), "size": args.size,
            "transforms": list(transforms), "objects": result.count, "merge_share": share,
            "runs": runs,
        }, indent=1))


if __name__ == "__main__":
    main()
