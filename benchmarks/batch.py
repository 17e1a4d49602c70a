"""Benchmark: screening throughput of ``nucleai batch``, RunStarConvex against IdentifyPrimaryObjects.

    python benchmarks/batch.py [--count 24] [--size 1024] [--repeat 1] [--json FILE]

The peer is CellProfiler's classical pipeline: ``example_pipelines/classical_nuclei.cppipe``
(IdentifyPrimaryObjects) and ``starconvex_nuclei.cppipe`` (RunStarConvex) are the same pipeline
but for the identification step (both then run IdentifySecondaryObjects, MeasureObjectIntensity,
ConvertObjectsToImage, SaveImages and ExportToSpreadsheet). Both run through ``nucleai batch
--scheduler local`` on the same ``--count`` fields, each a ``--size`` x ``--size`` mosaic of the
bundled DSB 2018 fluorescence images (a different order per field; no ``../shared`` needed), in
three worker layouts:

- 1 worker (1 slice), TensorFlow's default threads;
- 2 workers (2 slices at once), each bounded with ``NUCLEAI_THREADS=1``: the screening layout of
  one worker per core;
- 2 workers without a bound: each TensorFlow takes every core, so they compete.

What is measured per run: the wall time of the whole ``nucleai batch`` command (batch file,
CellProfiler start-up and model load in every worker, all image sets, checks, merge) as
images/min, and the peak resident memory of each CellProfiler worker process (the
processes that run a slice, sampled every 0.2 s with psutil; the Java VM CellProfiler starts is
part of it). Runs are interleaved (each
repeat runs every pipeline and layout once) and the medians reported; ratios are against the
classical pipeline in the same layout and against 1 worker of the same pipeline. Time nothing
else meanwhile: the machine's cores are the thing measured.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import skimage.io

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tta import mosaic  # noqa: E402  (the sibling benchmark's mosaic of the bundled images)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_pipelines"
PIPELINES = {"RunStarConvex": EXAMPLES / "starconvex_nuclei.cppipe",
             "IdentifyPrimaryObjects": EXAMPLES / "classical_nuclei.cppipe"}
#: name -> (workers, NUCLEAI_THREADS or None)
LAYOUTS = {"1 worker": (1, None), "2 workers, 1 thread each": (2, "1"),
           "2 workers, unbounded": (2, None)}


def write_fields(folder, count, size):
    """``count`` mosaics named like plate wells (nuclei_A01.png, ...), as the pipelines expect."""
    sources = sorted((EXAMPLES / "images").glob("nuclei_[0-9a-f]*.png"))
    rng = np.random.default_rng(0)
    for k in range(count):
        order = [sources[i] for i in rng.permutation(len(sources))]
        field = mosaic(order, size)
        name = f"nuclei_{'ABCDEFGH'[k // 12 % 8]}{k % 12 + 1:02d}.png"
        skimage.io.imsave(folder / name, field, check_contrast=False)


class PeakMemory:
    """Peak RSS of each CellProfiler worker below ``root_pid`` (the processes running a slice of
    the batch file, ``-p Batch_data.h5 -f N -l M``; not the one that writes the batch file),
    sampled in a thread."""

    def __init__(self, root_pid, interval=0.2):
        self.root, self.interval, self.peaks = psutil.Process(root_pid), interval, {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.done.is_set():
            try:
                for process in self.root.children(recursive=True):
                    try:
                        command = process.cmdline()
                        if "cellprofiler" in command and "-f" in command:
                            rss = process.memory_info().rss
                            self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.done.wait(self.interval)

    def stop(self):
        self.done.set()
        self.thread.join()
        return sorted(self.peaks.values())


def run_batch(pipeline, images, output, workers, threads):
    """Seconds for one ``nucleai batch`` run and the workers' peak RSS (bytes)."""
    env = {key: value for key, value in os.environ.items() if key != "NUCLEAI_THREADS"}
    if threads:
        env["NUCLEAI_THREADS"] = threads
    command = [sys.executable, "-m", "nucleai.cli", "batch", "--pipeline", str(pipeline),
               "--images", str(images), "--output", str(output), "--scheduler", "local",
               "--jobs", str(workers), "--slices", str(workers)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    memory = PeakMemory(process.pid)
    log, _ = process.communicate()
    seconds = time.perf_counter() - start
    peaks = memory.stop()
    if process.returncode != 0:
        raise SystemExit(f"nucleai batch failed ({pipeline.name}, {workers} workers):\n{log}")
    return seconds, peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24, help="fields (image sets) per run")
    parser.add_argument("--size", type=int, default=1024, help="side of each field (pixels)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of every case")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nucleai-batch-benchmark-"))
    try:
        images = work / "images"
        images.mkdir()
        write_fields(images, args.count, args.size)
        runs = {(name, layout): [] for name in PIPELINES for layout in LAYOUTS}
        for repeat in range(args.repeat):
            for layout, (workers, threads) in LAYOUTS.items():
                for name, pipeline in PIPELINES.items():
                    output = work / f"out-{len(os.listdir(work))}"
                    seconds, peaks = run_batch(pipeline, images, output, workers, threads)
                    runs[name, layout].append((seconds, peaks))
                    shutil.rmtree(output, ignore_errors=True)
                    print(f"  run {repeat + 1}: {name:22s} {layout:26s} {seconds:6.1f} s, "
                          f"peak RSS per worker {', '.join(f'{p / 2**30:.2f}' for p in peaks)} GiB",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cores, load = os.cpu_count(), os.getloadavg()[0]
    print(f"\n{args.count} fields of {args.size} x {args.size} px, {cores} cores, load average "
          f"{load:.2f} at the end; medians of {args.repeat} run(s); whole `nucleai batch` "
          "commands (start-up and model load included)")
    print(f"{'pipeline':22s} {'layout':26s} {'images/min':>10s} {'vs classical':>12s} "
          f"{'vs 1 worker':>11s} {'peak RSS/worker':>15s}")
    figures = []
    for layout in LAYOUTS:
        for name in PIPELINES:
            seconds = statistics.median(s for s, _ in runs[name, layout])
            peak = max(max(p, default=0) for _, p in runs[name, layout])
            rate = args.count / seconds * 60
            classical = args.count / statistics.median(
                s for s, _ in runs["IdentifyPrimaryObjects", layout]) * 60
            single = args.count / statistics.median(s for s, _ in runs[name, "1 worker"]) * 60
            figures.append({"pipeline": name, "layout": layout, "images_per_min": rate,
                            "seconds": seconds, "peak_rss_gib": peak / 2**30})
            print(f"{name:22s} {layout:26s} {rate:10.1f} {rate / classical:11.2f}x "
                  f"{rate / single:10.2f}x {peak / 2**30:11.2f} GiB")
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "size": args.size, "cores": cores,
                                         "repeat": args.repeat, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
