"""Benchmark: nucleai's NMS against stardist's, on the same candidates, in one process.

    python benchmarks/nms.py [--repeat 5] [--quick]     # timing and agreement, then scaling
    python benchmarks/nms.py --agreement-only          # agreement only (no clock: any load)
    python benchmarks/nms.py --scaling-only            # thread scaling only

Cases
-----
- ``mosaic2048``: a 2048 x 2048 map with about 3000 nuclei: 64 tiles of 256 x 256 cut from the
  densest DSB 2018 training label images (random ellipses if ../shared is absent), turned into
  the maps an ideal network would predict (stardist's ``edt_prob`` and ``star_dist``,
  smoothed, 5 % noise); at grid 1 (full resolution) and grid 2 (every second pixel, as a
  StarDist model with ``grid=(2, 2)`` predicts).
- ``dsb-*``: single DSB images the same way.
- ``net-*``: crops of a small StarDist network's output (the test fixtures).
- ``random-*``: random candidate sets (touching, overlapping, elongated polygons, 8 to 128
  rays), through the sparse entry points.

Timing: both implementations run alternately ``--repeat`` times per case and the median of each
is reported, so a machine whose load changes during the run still compares like with like. The
ratio is stardist's time over ours; the last line is the median ratio over all cases. Both use
all cores (OpenMP) unless ``OMP_NUM_THREADS`` says otherwise.

Agreement: ``diff`` counts candidates kept by one implementation and not by the other;
``near`` how many of those have an overlap (exact, ours) within 1e-3 of ``nms_thresh`` with a
polygon kept before them, and ``clip`` how many more are within 0.05: stardist's clipper rounds
intersection points to integer pixels, which moves its overlaps of small polygons by up to a
few 1e-2 (see tests/test_nms.py); candidates not explained either way are reported as ``other``.
The totals give the number of candidates compared.

Thread scaling (not with ``--quick``): our NMS of the full-resolution mosaic with one thread and
with all (``os.cpu_count()``), alternately ``--repeat`` times; the speed-up is the ratio of the
medians. Our result does not depend on the number of threads (the tests check it), so only the
time is compared.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from nucleai import nms as ours
from nucleai.geometry import star_dist

try:
    from stardist import nms as theirs
    from stardist.utils import edt_prob
except ImportError:
    sys.exit("this benchmark compares with stardist: pip install stardist")

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018"
FIXTURES = ROOT / "tests" / "fixtures" / "nms"
sys.path.insert(0, str(ROOT / "tests"))
from test_nms import random_candidates  # noqa: E402  (the tests' generator, one definition)


def ideal_maps(labels, rng, n_rays=32, grid=(1, 1)):
    """prob/dist an ideal network would predict: edt_prob and star distances, smoothed, noisy."""
    prob = ndi.gaussian_filter(edt_prob(labels.astype(np.int32)), 1.0)
    prob = np.clip(prob + 0.05 * rng.standard_normal(prob.shape), 0, 1).astype(np.float32)
    dist = ndi.gaussian_filter(star_dist(labels, n_rays), (1, 1, 0))
    dist = np.maximum(dist * (1 + 0.05 * rng.standard_normal(dist.shape)), 1e-3)
    return prob[::grid[0], ::grid[1]], dist[::grid[0], ::grid[1]].astype(np.float32)


def dsb_label_tiles(n_tiles, size=256):
    """The densest size x size tiles of DSB fluorescence training labels, ids made unique."""
    import tifffile
    rows = json.loads((DSB / "index.json").read_text())
    rows = [r for r in rows if r["kind"] == "fluo" and r["split"] == "train"
            and r["h"] >= size and r["w"] >= size]
    rows.sort(key=lambda r: -r["n"] / (r["h"] * r["w"]))
    tiles = []
    for r in rows[:n_tiles]:
        labels = tifffile.imread(DSB / "train" / "labels" / f"{r['id']}.tif")[:size, :size]
        tiles.append(labels.astype(np.int64))
    return tiles


def ellipse_tiles(n_tiles, rng, size=256):
    from skimage.draw import ellipse
    tiles = []
    for _ in range(n_tiles):
        labels = np.zeros((size, size), np.int64)
        for i in range(1, 60):
            rr, cc = ellipse(*rng.uniform(0, size, 2), *rng.uniform(6, 14, 2), shape=labels.shape,
                             rotation=rng.uniform(0, np.pi))
            labels[rr, cc] = i
        tiles.append(labels)
    return tiles


def mosaic(rng, side=8):
    tiles = dsb_label_tiles(side * side) if DSB.is_dir() else ellipse_tiles(side * side, rng)
    rows, offset = [], 0
    for r in range(side):
        row = []
        for tile in tiles[r * side:(r + 1) * side]:
            row.append(np.where(tile > 0, tile + offset, 0))
            offset += int(tile.max())
        rows.append(np.concatenate(row, axis=1))
    labels = np.concatenate(rows, axis=0)
    return labels, len(np.unique(labels)) - 1


def mosaic_maps(rng):
    """The 2048 x 2048 mosaic's prob/dist maps at full resolution."""
    labels, n_nuclei = mosaic(rng)
    print(f"mosaic2048: {labels.shape[0]}x{labels.shape[1]}, {n_nuclei} nuclei")
    return ideal_maps(labels, rng)


def dense_cases(rng, quick):
    full = mosaic_maps(rng)
    yield "mosaic2048-grid2", (full[0][::2, ::2], full[1][::2, ::2]), (2, 2), 0.4, 0.5
    if not quick:
        yield "mosaic2048-grid1", full, (1, 1), 0.4, 0.5
    if DSB.is_dir():
        import tifffile
        rows = json.loads((DSB / "index.json").read_text())
        picks = [r for r in rows if r["kind"] == "fluo" and r["split"] == "train"][::60][:4]
        for r in picks:
            labels = tifffile.imread(DSB / "train" / "labels" / f"{r['id']}.tif")
            for grid in [(1, 1), (2, 2)]:
                yield (f"dsb-{r['id'][:6]}-grid{grid[0]}", ideal_maps(labels, rng, grid=grid),
                       grid, 0.4, 0.5)
    for path in sorted(FIXTURES.glob("map_net_*.npz")):
        case = np.load(path)
        yield (f"net-{path.stem[8:14]}", (case["prob"], case["dist"]), tuple(case["grid"]),
               0.4, float(case["prob_thresh"]))


def timed(functions, repeat):
    """Run the functions alternately; median seconds of each and the last results."""
    times, results = [[] for _ in functions], [None] * len(functions)
    for _ in range(repeat):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            results[k] = function()
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], results


def agreement(dist, points, keep_ours, keep_theirs, thresh):
    """Differing candidates, split by how close their deciding overlap is to the threshold."""
    differing = np.flatnonzero(keep_ours != keep_theirs)
    near = clip = 0
    for j in differing:
        before = np.flatnonzero(keep_ours[:j] | keep_theirs[:j])
        if len(before) == 0:
            continue
        _, overlap = ours.polygon_overlap(dist[before], points[before],
                                          np.repeat(dist[j:j + 1], len(before), 0),
                                          np.repeat(points[j:j + 1], len(before), 0))
        margin = np.abs(overlap - thresh).min()
        near += margin <= 1e-3
        clip += 1e-3 < margin <= 0.05
    return len(differing), near, clip, len(differing) - near - clip


def keep_masks_dense(prob, dist, grid, thresh, prob_thresh, kept):
    """Candidates in score order and a keep mask per list of kept points."""
    mask = theirs._ind_prob_thresh(prob, prob_thresh, 2)
    points = np.stack(np.nonzero(mask), axis=1)
    order = np.argsort(prob[mask])[::-1]
    points = points[order] * np.array(grid)
    index = {tuple(p): k for k, p in enumerate(points)}
    masks = []
    for kept_points in kept:
        m = np.zeros(len(points), bool)
        m[[index[tuple(p)] for p in kept_points]] = True
        masks.append(m)
    return dist[mask][order], points, masks


def run(args):
    rng = np.random.default_rng(0)
    print(f"cores: {os.cpu_count()}, load average (1 min): {os.getloadavg()[0]:.1f}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    timing = not args.agreement_only
    repeat = args.repeat if timing else 1
    header = f"{'case':24s} {'rays':>4s} {'cand':>8s} {'kept':>6s} "
    if timing:
        header += f"{'stardist_s':>11s} {'ours_s':>9s} {'ratio':>7s} "
    header += f"{'diff':>5s} {'near':>5s} {'clip':>5s} {'other':>5s}"
    print(header)
    ratios, totals, n_compared = [], np.zeros(4, int), 0

    def report(name, n_rays, n_cand, n_kept, t, counts):
        nonlocal n_compared
        n_compared += n_cand
        totals[:] += counts
        line = f"{name:24s} {n_rays:4d} {n_cand:8d} {n_kept:6d} "
        if timing:
            ratios.append(t[1] / t[0])
            line += f"{t[1]:11.4f} {t[0]:9.4f} {ratios[-1]:7.2f} "
        print(line + " ".join(f"{c:5d}" for c in counts), flush=True)

    for name, (prob, dist), grid, thresh, prob_thresh in dense_cases(rng, args.quick):
        kwargs = dict(grid=grid, b=2, nms_thresh=thresh, prob_thresh=prob_thresh)
        t, (mine, other) = timed(
            (lambda: ours.non_maximum_suppression(dist, prob, **kwargs),
             lambda: theirs.non_maximum_suppression(dist, prob, **kwargs)), repeat)
        cand_dist, cand_points, (m_ours, m_theirs) = keep_masks_dense(
            prob, dist, grid, thresh, prob_thresh, [mine[0], other[0]])
        report(name, dist.shape[-1], len(cand_points), len(mine[0]), t,
               agreement(cand_dist, cand_points, m_ours, m_theirs, thresh))

    for seed in range(args.random_sets):
        dist, points, scores, thresh = random_candidates(10_000 + seed)
        t, (mine, other) = timed(
            (lambda: ours.non_maximum_suppression_sparse(dist, points, scores, thresh),
             lambda: theirs.non_maximum_suppression_sparse(dist, scores, points,
                                                           nms_thresh=thresh)), repeat)
        order = np.argsort(scores)[::-1]
        m_ours = np.isin(order, mine[3])
        m_theirs = np.isin(order, other[3])
        report(f"random-{seed}", dist.shape[1], len(dist), len(mine[3]), t,
               agreement(dist[order], points[order], m_ours, m_theirs, thresh))

    print(f"agreement over {n_compared} candidates: {totals[0]} differing, {totals[1]} within "
          f"1e-3 of the threshold, {totals[2]} within 0.05 (clipper rounding), {totals[3]} other")
    if timing:
        print(f"median ratio (stardist time / ours) over {len(ratios)} cases: "
              f"{statistics.median(ratios):.2f}")


def thread_scaling(args):
    """Our NMS of the full-resolution mosaic with one thread and with all."""
    prob, dist = mosaic_maps(np.random.default_rng(0))
    n_all = os.cpu_count()
    kwargs = dict(grid=(1, 1), b=2, nms_thresh=0.4, prob_thresh=0.5)
    n_cand = int(theirs._ind_prob_thresh(prob, kwargs["prob_thresh"], kwargs["b"]).sum())
    print(f"thread scaling, mosaic2048-grid1, {n_cand} candidates, "
          f"load average (1 min): {os.getloadavg()[0]:.1f}")
    t, results = timed(
        [lambda n=n: ours.non_maximum_suppression(dist, prob, **kwargs, n_threads=n)
         for n in (1, n_all)], args.repeat)
    assert np.array_equal(results[0][0], results[1][0])
    print(f"1 thread {t[0]:8.4f} s   {n_all} threads {t[1]:8.4f} s   "
          f"speed-up {t[0] / t[1]:5.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per implementation")
    parser.add_argument("--random-sets", type=int, default=8, help="random candidate sets")
    parser.add_argument("--quick", action="store_true",
                        help="skip the full-resolution mosaic and the thread scaling")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--agreement-only", action="store_true",
                      help="agreement only, each NMS run once, no times")
    what.add_argument("--scaling-only", action="store_true", help="thread scaling only")
    args = parser.parse_args()
    if not args.scaling_only:
        run(args)
    if args.scaling_only or not (args.quick or args.agreement_only):
        thread_scaling(args)


if __name__ == "__main__":
    main()
