"""Star-convex geometry: agreement with stardist's definitions, and input checks."""
import numpy as np
import pytest
from skimage.draw import ellipse

from nucleai import geometry
from nucleai.errors import InputError

stardist_geometry = pytest.importorskip("stardist.geometry")


def ellipse_labels(seed=0, shape=(96, 112), n=14):
    """Touching and overlapping ellipses (later ones on top), some cut by the image border."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for i in range(1, n + 1):
        rr, cc = ellipse(rng.uniform(-5, shape[0] + 5), rng.uniform(-5, shape[1] + 5),
                         rng.uniform(3, 16), rng.uniform(3, 16), shape=shape,
                         rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = i
    return labels


def random_polygons(seed, n=40, n_rays=32, shape=(80, 90)):
    rng = np.random.default_rng(seed)
    points = np.stack([rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)], axis=1)
    dist = (rng.uniform(2, 12, (n, 1)) * rng.uniform(0.7, 1.3, (n, n_rays))).astype(np.float32)
    return dist, points


def test_ray_angles():
    np.testing.assert_allclose(geometry.ray_angles(4), [0, np.pi / 2, np.pi, 3 * np.pi / 2])
    np.testing.assert_array_equal(geometry.ray_angles(32), stardist_geometry.ray_angles(32))


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (2, 1), (1, 4)])
@pytest.mark.parametrize("n_rays", [3, 8, 32, 65])
def test_star_dist_matches_stardist_bit_for_bit(grid, n_rays):
    labels = ellipse_labels()
    ours = geometry.star_dist(labels, n_rays, grid)
    theirs = stardist_geometry.star_dist(labels, n_rays, grid=grid, mode="cpp")
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_star_dist_matches_stardist_on_dsb_labels(dsb2018):
    import tifffile
    for path in sorted((dsb2018 / "train" / "labels").glob("*.tif"))[:5]:
        labels = tifffile.imread(path)
        np.testing.assert_array_equal(geometry.star_dist(labels, 32),
                                      stardist_geometry.star_dist(labels, 32, mode="cpp"))


def test_star_dist_of_a_square():
    labels = np.zeros((11, 11), np.int32)
    labels[2:9, 2:9] = 7
    dist = geometry.star_dist(labels, 4)
    # from the centre (5, 5): 3.5 px to the boundary of the last pixel in each axis direction
    np.testing.assert_allclose(dist[5, 5], 3.5)
    assert (dist[labels == 0] == 0).all()


def test_star_dist_keeps_ids_beyond_uint16_apart():
    # stardist reads labels as uint16, which would merge ids 1 and 65537; we do not
    labels = np.zeros((9, 20), np.int64)
    labels[2:7, 2:10] = 1
    labels[2:7, 10:18] = 65537
    dist = geometry.star_dist(labels, 4)
    assert dist[4, 6, 0] == pytest.approx(3.5)      # ray 0 points along +x, stops at column 10


def test_star_dist_speed_budget():
    labels = np.tile(ellipse_labels(shape=(128, 128), n=30), (2, 2))
    import time
    start = time.perf_counter()
    geometry.star_dist(labels, 32)
    assert time.perf_counter() - start < 5      # about 0.02 s; generous for a loaded machine


@pytest.mark.parametrize("labels, message", [
    (np.zeros((4, 4), bool), "integer"),
    (np.zeros((4, 4), np.float32), "integer"),
    (np.zeros((2, 4, 4), np.int32), "2-D"),
    (np.zeros((0, 4), np.int32), "empty"),
])
def test_star_dist_refuses_bad_labels(labels, message):
    with pytest.raises(InputError, match=message):
        geometry.star_dist(labels)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_rays": 2}, "n_rays"), ({"n_rays": 8.0}, "n_rays"), ({"grid": (0, 1)}, "grid"),
    ({"grid": (1, 1, 1)}, "grid"), ({"grid": 2}, "grid"),
])
def test_star_dist_refuses_bad_parameters(kwargs, message):
    with pytest.raises(InputError, match=message):
        geometry.star_dist(np.ones((4, 4), np.int32), **kwargs)


@pytest.mark.parametrize("points_dtype", [np.int64, np.float32, np.float64])
def test_polygon_vertices_match_stardist(points_dtype):
    dist, points = random_polygons(1)
    points = points.astype(points_dtype) + (0.25 if points_dtype != np.int64 else 0)
    ours = geometry.polygon_vertices(dist, points)
    theirs = stardist_geometry.dist_to_coord(dist, points)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_polygon_vertices_are_y_then_x():
    coord = geometry.polygon_vertices(np.full((1, 4), 2.0), np.array([[10, 20]]))
    np.testing.assert_allclose(coord[0, 0], [10, 12, 10, 8], atol=1e-5)      # rows
    np.testing.assert_allclose(coord[0, 1], [22, 20, 18, 20], atol=1e-5)     # columns


def test_polygon_area_is_the_shoelace_area():
    dist, points = random_polygons(2, n_rays=17)
    coord = geometry.polygon_vertices(dist.astype(np.float64), np.zeros_like(points))
    y, x = coord[:, 0].astype(np.float64), coord[:, 1].astype(np.float64)
    shoelace = 0.5 * np.sum(x * np.roll(y, -1, 1) - y * np.roll(x, -1, 1), axis=1)
    np.testing.assert_allclose(geometry.polygon_area(dist), shoelace, rtol=1e-5)
    regular = geometry.polygon_area(np.full(6, 2.0))
    assert regular == pytest.approx(0.5 * 6 * 4 * np.sin(2 * np.pi / 6))
    assert geometry.polygon_area(np.zeros((3, 8))).tolist() == [0, 0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_polygons_to_label_matches_stardist(seed):
    dist, points = random_polygons(seed)
    rng = np.random.default_rng(seed)
    prob = rng.choice([0.2, 0.5, 0.7, 0.9], len(dist))          # with ties
    ours = geometry.polygons_to_label(dist, points, (80, 90), prob=prob)
    theirs = stardist_geometry.polygons_to_label(dist, points, (80, 90), prob=prob)
    assert ours.dtype == np.uint16
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(geometry.polygons_to_label(dist, points, (80, 90)),
                                  stardist_geometry.polygons_to_label(dist, points, (80, 90)))


@pytest.mark.parametrize("seed", range(6))
def test_compiled_rendering_draws_skimages_pixels_on_the_edge_cases(seed):
    """Pixel centres on edges and vertices (integer and half-integer vertices), polygons
    leaving the image on every side, slivers and single pixels, 8 to 64 rays: the same pixels
    as skimage.draw.polygon, which stardist renders with."""
    from skimage.draw import polygon as skimage_polygon

    rng = np.random.default_rng(seed)
    n_rays = [8, 16, 32, 64, 32, 32][seed]
    shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    n = 80
    points = rng.uniform(-15, max(shape) + 15, (n, 2))
    dist = rng.uniform(0, 20, (n, n_rays)).astype(np.float32)
    points[::3] = np.round(points[::3] * 2) / 2      # centres on pixel centres and halfway
    dist[::4] = np.round(dist[::4])                  # whole radii: vertices on rows/columns
    dist[5::7] *= 0.05                               # slivers and single pixels
    prob = rng.random(n)
    coord = geometry.polygon_vertices(dist, points)
    expected = np.zeros(shape, np.uint16)
    for i in np.argsort(prob, kind="stable"):
        rr, cc = skimage_polygon(coord[i, 0], coord[i, 1], shape)
        expected[rr, cc] = i + 1
    np.testing.assert_array_equal(geometry.polygons_to_label(dist, points, shape, prob=prob), expected)


def test_more_than_65535_polygons_get_uint32_labels():
    n = 70000
    points = np.stack(np.divmod(np.arange(n), 280), axis=1) * 1.0
    labels = geometry.polygons_to_label(np.full((n, 8), 0.3, np.float32), points, (250, 280))
    assert labels.dtype == np.uint32 and labels.max() == n and labels[0, 0] == 1


def test_polygons_to_label_higher_score_wins_contested_pixels():
    dist = np.full((2, 16), 6.0, np.float32)
    points = np.array([[10, 10], [10, 16]])
    low_first = geometry.polygons_to_label(dist, points, (21, 27), prob=[0.9, 0.6])
    assert low_first[10, 13] == 1
    high_second = geometry.polygons_to_label(dist, points, (21, 27), prob=[0.6, 0.9])
    assert high_second[10, 13] == 2
    assert set(np.unique(low_first)) == {0, 1, 2}


def test_polygons_to_label_empty_and_clipped():
    empty = geometry.polygons_to_label(np.zeros((0, 8)), np.zeros((0, 2)), (5, 6))
    assert empty.shape == (5, 6) and not empty.any()
    clipped = geometry.polygons_to_label(np.full((1, 8), 50.0), np.array([[2, 3]]), (5, 6))
    assert (clipped == 1).all()


@pytest.mark.parametrize("dist, points, message", [
    (np.full((2, 8), np.nan), np.zeros((2, 2)), "finite"),
    (np.full((2, 8), -1.0), np.zeros((2, 2)), "non-negative"),
    (np.ones((2, 8)), np.zeros((3, 2)), "points"),
    (np.ones((2, 2)), np.zeros((2, 2)), "n_rays"),
    (np.ones(8), np.zeros((1, 2)), "2-D"),
    (np.ones((2, 8), complex), np.zeros((2, 2)), "real"),
    (np.ones((2, 8)), np.full((2, 2), np.inf), "finite"),
])
def test_polygon_functions_refuse_bad_input(dist, points, message):
    with pytest.raises(InputError, match=message):
        geometry.polygon_vertices(dist, points)
    with pytest.raises(InputError, match=message):
        geometry.polygons_to_label(dist, points, (10, 10))


def test_polygons_to_label_refuses_bad_prob_and_shape():
    dist, points = random_polygons(0, n=3)
    with pytest.raises(InputError, match="prob"):
        geometry.polygons_to_label(dist, points, (10, 10), prob=[0.5, np.nan, 0.1])
    with pytest.raises(InputError, match="prob"):
        geometry.polygons_to_label(dist, points, (10, 10), prob=[0.5])
    with pytest.raises(InputError, match="shape"):
        geometry.polygons_to_label(dist, points, (10, 0))
