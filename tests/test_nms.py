"""Non-maximum suppression: exactness, agreement with stardist, input checks.

Agreement with stardist is exact up to one documented difference: stardist's polygon clipper
rounds intersection points to integer pixels, so its overlap of two small polygons can be off by
a few square pixels. Where that puts stardist's value and the exact one on different sides of
``nms_thresh``, the survivors differ; the random-set test allows exactly that (and the
candidates those decisions change downstream), and the fixture ``clipper_rounding.npz`` keeps
real examples.
"""
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from nucleai import nms
from nucleai._nms import snapped_polygons
from nucleai.errors import InputError
from testdata import FIXTURES

stardist_nms = pytest.importorskip("stardist.nms")

NMS_FIXTURES = FIXTURES / "nms"


# ----------------------------------------------------------------------------- helpers

def ellipse_rays(q, centre, a, b, theta, n_rays):
    """Ray lengths from points ``q`` (m, 2) to the boundary of an ellipse (rays as stardist)."""
    phi = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    p = (q - centre) @ rot.T
    v = np.stack([np.sin(phi), np.cos(phi)], axis=1) @ rot.T
    w = np.array([1 / b ** 2, 1 / a ** 2])
    qa = (v ** 2 * w).sum(1)[np.newaxis]
    qb = 2 * (p[:, np.newaxis, :] * v[np.newaxis] * w).sum(-1)
    qc = (p ** 2 * w).sum(1)[:, np.newaxis] - 1
    return (-qb + np.sqrt(np.maximum(qb ** 2 - 4 * qa * qc, 0))) / (2 * qa)


def random_candidates(seed):
    """Candidates of touching/overlapping, round to elongated objects, as a network gives them:
    several noisy polygons per object, scores highest near its centre."""
    rng = np.random.default_rng(seed)
    n_rays = int(rng.choice([8, 16, 32, 64, 128]))
    n_objects = int(rng.integers(4, 25))
    size = rng.uniform(6, 16)
    spacing = 2 * size * rng.uniform(0.8, 1.3)
    elongation = rng.choice([1.5, 3, 5])
    side = int(np.ceil(np.sqrt(n_objects)))
    dist, points, scores = [], [], []
    for k in range(n_objects):
        centre = (np.array([k // side + 1, k % side + 1]) * spacing
                  + rng.normal(0, size / 3, 2))
        e = rng.uniform(1, elongation)
        a, b = size * np.sqrt(e), size / np.sqrt(e)
        m = int(rng.integers(5, 25))
        q = np.round(centre + rng.normal(0, 0.35 * b, (m, 2)))
        d = ellipse_rays(q, centre, a, b, rng.uniform(0, np.pi), n_rays)
        d = np.maximum(d * (1 + 0.08 * rng.standard_normal(d.shape)), 1e-3)
        if rng.random() < 0.2:          # integer rays: shared and collinear edges
            d = np.round(d)
        r = np.linalg.norm(q - centre, axis=1) / b
        dist.append(d)
        points.append(q)
        scores.append(np.clip(np.exp(-r ** 2) + 0.1 * rng.standard_normal(m), 0.01, 1))
    thresh = float(rng.choice([0.1, 0.3, 0.4, 0.5, 0.7]))
    return (np.concatenate(dist).astype(np.float32), np.concatenate(points).astype(np.float32),
            np.concatenate(scores).astype(np.float32), thresh)


def exact_intersection_area(poly_a, poly_b):
    """Area of the intersection of two simple polygons ((y, x) int vertices), exactly.

    Independent of the implementation under test: integrates the length of the horizontal
    cross-section, which is linear in y between consecutive vertex and crossing heights.
    """
    def edges(poly):
        pts = [(int(x), int(y)) for y, x in poly]
        return list(zip(pts, pts[1:] + pts[:1]))

    ea, eb = edges(poly_a), edges(poly_b)
    heights = {Fraction(p[1]) for e in ea + eb for p in e}
    for (a0, a1) in ea:
        for (b0, b1) in eb:
            den = (a1[0] - a0[0]) * (b1[1] - b0[1]) - (a1[1] - a0[1]) * (b1[0] - b0[0])
            if den:
                t = Fraction((b0[0] - a0[0]) * (b1[1] - b0[1])
                             - (b0[1] - a0[1]) * (b1[0] - b0[0]), den)
                u = Fraction((b0[0] - a0[0]) * (a1[1] - a0[1])
                             - (b0[1] - a0[1]) * (a1[0] - a0[0]), den)
                if 0 <= t <= 1 and 0 <= u <= 1:
                    heights.add(a0[1] + t * (a1[1] - a0[1]))

    def inside_intervals(edge_list, y):
        xs = sorted(p0[0] + (y - p0[1]) * Fraction(p1[0] - p0[0], p1[1] - p0[1])
                    for p0, p1 in edge_list if (p0[1] > y) != (p1[1] > y))
        return list(zip(xs[0::2], xs[1::2]))

    heights = sorted(heights)
    area = Fraction(0)
    for y0, y1 in zip(heights[:-1], heights[1:]):
        y = (y0 + y1) / 2
        length = sum(max(0, min(p1, q1) - max(p0, q0))
                     for p0, p1 in inside_intervals(ea, y) for q0, q1 in inside_intervals(eb, y))
        area += length * (y1 - y0)
    return float(area)


def greedy_reference(dist, points, thresh):
    """Sequential greedy NMS with exact overlaps: the definition, without grid or bounds."""
    kept = []
    for j in range(len(dist)):
        if kept:
            _, overlap = nms.polygon_overlap(dist[kept], points[kept],
                                             np.repeat(dist[j:j + 1], len(kept), 0),
                                             np.repeat(points[j:j + 1], len(kept), 0))
            if (overlap.astype(np.float32) > np.float32(thresh)).any():
                continue
        kept.append(j)
    mask = np.zeros(len(dist), bool)
    mask[kept] = True
    return mask


def sorted_by_score(dist, points, scores):
    order = np.argsort(scores)[::-1]
    return dist[order], points[order], scores[order]


def ours_sorted(dist, points, thresh):
    """Keep mask of our NMS for candidates already in score order."""
    _, _, _, kept = nms.non_maximum_suppression_sparse(
        dist, points, np.arange(len(dist), 0, -1), nms_thresh=thresh)
    mask = np.zeros(len(dist), bool)
    mask[kept] = True
    return mask


# ----------------------------------------------------------------------------- exactness

def crosses_itself(poly):
    """Do two edges of the polygon ((y, x) int vertices) cross properly?"""
    pts = [(int(x), int(y)) for y, x in poly]
    edges = list(zip(pts, pts[1:] + pts[:1]))

    def orient(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return any(orient(*e, f[0]) * orient(*e, f[1]) < 0 and orient(*f, e[0]) * orient(*f, e[1]) < 0
               for k, e in enumerate(edges) for f in edges[k + 2:])


def star_shapes(rng, n, n_rays, radius):
    """Smooth star-convex shapes: a radius modulated by a few low harmonics."""
    phi = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    harmonics = sum(rng.uniform(-0.25, 0.25, (n, 1)) * np.cos(k * phi + rng.uniform(0, 7, (n, 1)))
                    for k in (1, 2, 3))
    return radius * (1 + harmonics)


@pytest.mark.parametrize("seed", range(6))
def test_intersection_area_is_exact(seed):
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(14):
        n_rays = int(rng.choice([5, 8, 16, 32, 64]))
        dist = star_shapes(rng, 2, n_rays, rng.uniform(2, 14, (2, 1)))
        points = rng.integers(-5, 30, (2, 2)).astype(float)
        points[1] = points[0] + rng.integers(-12, 13, 2)
        kind = rng.integers(5)
        if kind == 0:                      # identical polygons
            dist[1], points[1] = dist[0], points[0]
        elif kind == 1:                    # integer rays: shared, collinear and touching edges
            dist = np.round(dist)
        elif kind == 2:                    # some zero-length rays
            dist[:, rng.integers(n_rays, size=2)] = 0
        elif kind == 3:                    # non-integer centres
            points += rng.uniform(-1, 1, (2, 2))
        dist, points = dist.astype(np.float32), points.astype(np.float32)
        polygons, area2 = snapped_polygons(dist, points)
        inter, overlap = nms.polygon_overlap(dist[:1], points[:1], dist[1:], points[1:])
        assert 0 <= inter[0] <= area2.min() / 2 + 1e-9
        if any(crosses_itself(p) for p in polygons):
            continue                       # snapping made it self-intersecting: see nms docs
        expected = exact_intersection_area(*polygons) if area2.min() > 0 else 0.0
        assert inter[0] == pytest.approx(expected, abs=1e-9)
        if area2.min() > 0:
            assert overlap[0] == pytest.approx(expected / (area2.min() / 2), abs=1e-12)
        checked += 1
    assert checked >= 10


def test_overlap_of_a_polygon_with_itself_and_with_a_far_one():
    dist = np.full((2, 32), 10.0, np.float32)
    inter, overlap = nms.polygon_overlap(dist, np.array([[20, 20], [50, 20]]),
                                         dist, np.array([[20, 20], [20, 50]]))
    assert overlap[0] == 1.0 and inter[0] > 300
    assert overlap[1] == 0.0 and inter[1] == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_nms_equals_the_sequential_greedy_definition(seed):
    dist, points, scores, thresh = random_candidates(100 + seed)
    dist, points, scores = sorted_by_score(dist, points, scores)
    np.testing.assert_array_equal(ours_sorted(dist, points, thresh),
                                  greedy_reference(dist, points, thresh))


def many_candidates():
    """Enough candidates (random sets side by side, 16 rays) for the parallel path."""
    sets = [random_candidates(seed) for seed in range(200)]
    sets = [s for s in sets if s[0].shape[1] == 16][:24]
    dist = np.concatenate([s[0] for s in sets])
    points = np.concatenate([s[1] + [0, 1000 * k] for k, s in enumerate(sets)])
    scores = np.concatenate([s[2] for s in sets])
    assert len(dist) >= 4096
    return dist, points, scores


def test_result_does_not_depend_on_the_number_of_threads(tmp_path):
    dist, points, scores = many_candidates()
    thresh = 0.4
    np.savez(tmp_path / "case.npz", dist=dist, points=points, scores=scores)
    script = ("import sys, numpy as np; from nucleai import nms; z = np.load(sys.argv[1]); "
              f"print(nms.non_maximum_suppression_sparse(z['dist'], z['points'], z['scores'], "
              f"{thresh})[3].tolist())")
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path / "case.npz")],
                           env={**os.environ, "OMP_NUM_THREADS": str(n)}, check=True,
                           capture_output=True, text=True).stdout for n in (1, 2, 3)]
    assert runs[0] == runs[1] == runs[2]


def test_n_threads_does_not_change_the_result():
    dist, points, scores = many_candidates()
    results = [nms.non_maximum_suppression_sparse(dist, points, scores, 0.4, n_threads=n)
               for n in (1, 2, None)]
    for result in results[1:]:
        for got, expected in zip(result, results[0]):
            np.testing.assert_array_equal(got, expected)
    assert 0 < len(results[0][3]) < len(dist)
    prob, dist_map = GOOD_PROB, GOOD_DIST
    dense = [nms.non_maximum_suppression(dist_map, prob, n_threads=n) for n in (1, 2, None)]
    for result in dense[1:]:
        for got, expected in zip(result, dense[0]):
            np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- agreement

def unexplained_differences(dist, points, ours, theirs, thresh, tolerance=0.05):
    """Candidates kept by one NMS and not the other that neither a near-threshold overlap nor an
    earlier difference explains.

    A decision can differ when an overlap with an earlier kept polygon is within ``tolerance``
    of the threshold (stardist's clipper rounds intersection points to integers); a later
    candidate can then differ because the kept sets differ (it overlaps an earlier differing
    candidate).
    """
    differing = np.flatnonzero(ours != theirs)
    unexplained = []
    for j in differing:
        before = np.flatnonzero(ours[:j] | theirs[:j])
        if len(before) == 0:
            unexplained.append(j)
            continue
        _, overlap = nms.polygon_overlap(dist[before], points[before],
                                         np.repeat(dist[j:j + 1], len(before), 0),
                                         np.repeat(points[j:j + 1], len(before), 0))
        near = np.abs(overlap - thresh) <= tolerance
        cascade = np.isin(before[overlap > 0], differing)
        if not (near.any() or cascade.any()):
            unexplained.append(j)
    return unexplained


def test_agrees_with_stardist_on_50_random_candidate_sets():
    total, differing = 0, 0
    for seed in range(50):
        dist, points, scores, thresh = random_candidates(seed)
        dist, points, scores = sorted_by_score(dist, points, scores)
        theirs = stardist_nms.non_maximum_suppression_inds(dist, points, scores, thresh=thresh,
                                                           verbose=False)
        ours = ours_sorted(dist, points, thresh)
        assert unexplained_differences(dist, points, ours, theirs, thresh) == [], seed
        total += len(dist)
        differing += int((ours != theirs).sum())
    assert differing <= 0.001 * total


@pytest.mark.parametrize("name", sorted(p.name for p in NMS_FIXTURES.glob("map_*.npz")))
def test_agrees_with_stardist_on_network_output_fixtures(name):
    """Real-ish prob/dist maps (a small StarDist network and ground-truth-derived maps on DSB
    images, see make_fixtures.py), with the survivors stardist 0.9.2 kept."""
    case = np.load(NMS_FIXTURES / name)
    kwargs = dict(grid=tuple(case["grid"]), b=int(case["b"]),
                  nms_thresh=float(case["nms_thresh"]), prob_thresh=float(case["prob_thresh"]))
    points, scores, dist = nms.non_maximum_suppression(case["dist"], case["prob"], **kwargs)
    np.testing.assert_array_equal(points, case["points"])
    np.testing.assert_array_equal(scores, case["prob"][tuple((points // kwargs["grid"]).T)])
    np.testing.assert_array_equal(dist, case["dist"][tuple((points // kwargs["grid"]).T)])
    live = stardist_nms.non_maximum_suppression(case["dist"], case["prob"], **kwargs)
    np.testing.assert_array_equal(points, live[0])


@pytest.mark.parametrize("name", ["clipper_rounding.npz", "clipper_rounding_dsb.npz"])
def test_clipper_rounding_fixture(name):
    """Pairs where stardist and we disagree: our overlap is the exact one, stardist's is off by
    its integer rounding, and the two lie on different sides of the threshold (pairs from
    random sets, and from the DSB mosaic of benchmarks/nms.py)."""
    case = np.load(NMS_FIXTURES / name)
    for k in range(len(case["thresh"])):
        dist, points = case["dist"][k], case["points"][k]
        polygons, _ = snapped_polygons(dist, points)
        inter, overlap = nms.polygon_overlap(dist[:1], points[:1], dist[1:], points[1:])
        assert inter[0] == pytest.approx(exact_intersection_area(*polygons), abs=1e-9)
        assert overlap[0] == pytest.approx(case["overlap_exact"][k], abs=1e-9)
        thresh = case["thresh"][k]
        assert abs(overlap[0] - thresh) <= 0.05
        assert (overlap[0] > thresh) != (case["overlap_stardist"][k] > thresh)
        keep_ours = ours_sorted(dist, points, thresh)
        assert keep_ours[1] == (overlap[0] <= np.float32(thresh))
        keep_theirs = stardist_nms.non_maximum_suppression_inds(dist, points, None,
                                                                thresh=thresh, verbose=False)
        assert keep_theirs[1] != keep_ours[1]


# ----------------------------------------------------------------------------- semantics

@pytest.mark.parametrize("radius, survivors", [(0.5, None), (500.0, 1)])
def test_border_grid_and_ordering_follow_stardist(radius, survivors):
    """Candidate selection, coordinates and tie order, with overlaps that decide nothing at
    the threshold: sub-pixel polygons (zero area once snapped: all kept) or huge ones (only
    the first survives)."""
    rng = np.random.default_rng(3)
    prob = rng.choice([0.3, 0.6, 0.8, 1.0], (21, 26)).astype(np.float32)     # many ties
    dist = np.full((21, 26, 16), radius, np.float32)
    for grid, b in [((1, 1), 2), ((2, 2), 0), ((2, 1), ((1, 3), (0, 2))), ((4, 4), None)]:
        ours = nms.non_maximum_suppression(dist, prob, grid=grid, b=b, nms_thresh=0.3)
        theirs = stardist_nms.non_maximum_suppression(dist, prob, grid=grid, b=b,
                                                      nms_thresh=0.3)
        for a, t in zip(ours, theirs):
            np.testing.assert_array_equal(a, t)
        assert (ours[0] % np.array(grid) == 0).all()
        if survivors:
            assert len(ours[0]) == survivors


def test_sparse_and_dense_agree():
    rng = np.random.default_rng(4)
    prob = rng.uniform(0, 1, (30, 30)).astype(np.float32)
    dist = rng.uniform(1, 5, (30, 30, 8)).astype(np.float32)
    points, scores, kept_dist = nms.non_maximum_suppression(dist, prob, b=0, prob_thresh=0.2)
    mask = prob > 0.2
    sp, ss, sd, idx = nms.non_maximum_suppression_sparse(dist[mask], np.argwhere(mask),
                                                         prob[mask])
    np.testing.assert_array_equal(sp, points)
    np.testing.assert_array_equal(ss, scores)
    np.testing.assert_array_equal(sd, kept_dist)
    np.testing.assert_array_equal(np.argwhere(mask)[idx], points)


def test_empty_candidate_sets_give_empty_results():
    dist = np.ones((10, 12, 8), np.float32)
    for prob in [np.zeros((10, 12), np.float32), np.ones((3, 3), np.float32)]:
        points, scores, kept = nms.non_maximum_suppression(dist[:len(prob), :prob.shape[1]],
                                                           prob)
        assert points.shape == (0, 2) and scores.shape == (0,) and kept.shape == (0, 8)
    sparse = nms.non_maximum_suppression_sparse(np.zeros((0, 8)), np.zeros((0, 2)), np.zeros(0))
    assert [a.shape for a in sparse] == [(0, 2), (0,), (0, 8), (0,)]


def test_zero_length_rays_overlap_nothing_as_in_stardist():
    prob = np.zeros((12, 12), np.float32)
    prob[4:8, 4:8] = np.linspace(0.6, 0.9, 16).reshape(4, 4)
    dist = np.zeros((12, 12, 16), np.float32)
    dist[5, 5] = 3.0
    ours = nms.non_maximum_suppression(dist, prob)
    theirs = stardist_nms.non_maximum_suppression(dist, prob, nms_thresh=0.4)
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert len(ours[0]) == 16                     # zero-area polygons suppress nothing


@pytest.mark.parametrize("thresh, kept", [(0.0, 1), (1.0, 3)])
def test_threshold_extremes(thresh, kept):
    dist = np.full((3, 8), 5.0, np.float32)
    points = np.array([[10, 10], [10, 11], [11, 10]], np.float32)
    result = nms.non_maximum_suppression_sparse(dist, points, np.array([0.9, 0.8, 0.7]),
                                                nms_thresh=thresh)
    assert len(result[3]) == kept


# ----------------------------------------------------------------------------- bad input

GOOD_DIST = np.ones((6, 7, 8), np.float32)
GOOD_PROB = np.full((6, 7), 0.9, np.float32)


@pytest.mark.parametrize("dist, prob, kwargs, message", [
    (GOOD_DIST, GOOD_PROB[np.newaxis], {}, "prob must be a 2-D"),
    (GOOD_DIST[..., 0], GOOD_PROB, {}, "dist must have shape"),
    (GOOD_DIST[:5], GOOD_PROB, {}, "dist must have shape"),
    (GOOD_DIST[..., :2], GOOD_PROB, {}, "at least 3 rays"),
    (GOOD_DIST, GOOD_PROB.astype(complex), {}, "prob must be an array of real numbers"),
    (GOOD_DIST.astype(bool), GOOD_PROB, {}, "dist must be an array of real numbers"),
    (GOOD_DIST.astype(str), GOOD_PROB, {}, "dist must be an array of real numbers"),
    (GOOD_DIST, np.where(np.eye(6, 7) > 0, np.nan, GOOD_PROB), {}, "prob contains NaN"),
    (np.where(GOOD_DIST > 0, np.nan, 0), GOOD_PROB, {}, "dist must be finite"),
    (np.full_like(GOOD_DIST, np.inf), GOOD_PROB, {}, "dist must be finite"),
    (-GOOD_DIST, GOOD_PROB, {}, "negative"),
    (GOOD_DIST * 1e9, GOOD_PROB, {}, "exceeds"),
    (GOOD_DIST, GOOD_PROB, {"grid": (0, 1)}, "grid"),
    (GOOD_DIST, GOOD_PROB, {"grid": (1.5, 1)}, "grid"),
    (GOOD_DIST, GOOD_PROB, {"b": -1}, "b must be"),
    (GOOD_DIST, GOOD_PROB, {"b": (1, 2)}, "b must be"),
    (GOOD_DIST, GOOD_PROB, {"nms_thresh": 1.5}, "nms_thresh"),
    (GOOD_DIST, GOOD_PROB, {"nms_thresh": float("nan")}, "nms_thresh"),
    (GOOD_DIST, GOOD_PROB, {"nms_thresh": "0.4"}, "nms_thresh"),
    (GOOD_DIST, GOOD_PROB, {"prob_thresh": float("nan")}, "prob_thresh"),
])
def test_bad_input_is_refused_clearly(dist, prob, kwargs, message):
    with pytest.raises(InputError, match=message):
        nms.non_maximum_suppression(dist, prob, **kwargs)


@pytest.mark.parametrize("n_threads", [0, -2, 2.0, "2", True, 4097, 10 ** 6])
def test_bad_thread_count_is_refused_clearly(n_threads):
    message = "n_threads must be None or an int in \\[1, 4096\\]"
    with pytest.raises(InputError, match=message):
        nms.non_maximum_suppression(GOOD_DIST, GOOD_PROB, n_threads=n_threads)
    with pytest.raises(InputError, match=message):
        nms.non_maximum_suppression_sparse(GOOD_DIST[0], np.zeros((7, 2)), GOOD_PROB[0],
                                           n_threads=n_threads)


def test_bad_distances_only_matter_for_candidates():
    dist = GOOD_DIST.copy()
    prob = GOOD_PROB.copy()
    dist[0, 0] = np.nan                    # in the border, not a candidate
    prob[3, 3] = 0.1
    dist[3, 3] = -5                        # below the threshold, not a candidate
    assert len(nms.non_maximum_suppression(dist, prob)[0]) > 0


@pytest.mark.parametrize("args, message", [
    ((np.ones((3, 8)), np.zeros((2, 2)), np.ones(3)), "points"),
    ((np.ones((3, 8)), np.zeros((3, 2)), np.ones(4)), "scores"),
    ((np.ones((3, 8)), np.zeros((3, 2)), np.array([1, np.nan, 0])), "scores contains NaN"),
    ((np.ones((3, 8)), np.full((3, 2), np.nan), np.ones(3)), "points must be finite"),
    ((np.ones((3, 8, 1)), np.zeros((3, 2)), np.ones(3)), "dist must be a 2-D"),
])
def test_sparse_bad_input(args, message):
    with pytest.raises(InputError, match=message):
        nms.non_maximum_suppression_sparse(*args)
