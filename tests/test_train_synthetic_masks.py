"""Measured objects and the synthetic masks that follow them; the style grid picture."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.draw
from matplotlib.image import imread
from skimage.measure import regionprops

from nucleai.errors import InputError
from nucleai.train import synthetic_masks
from nucleai.train.style_grid import save_style_grid
from nucleai.train.synthetic_masks import ObjectStats, measure_objects, synthesise_masks

SHAPE = (128, 128)


def ellipses(rng, n=20, clustered=False, radii=(6.0, 4.0)):
    """Non-overlapping ellipses (semi-axes ``radii``), uniform or around two centres."""
    labels = np.zeros(SHAPE, np.uint16)
    centres = rng.uniform(25, 103, (2, 2))
    count = 0
    for _ in range(50 * n):
        if count == n:
            break
        if clustered:
            centre = centres[rng.integers(2)] + rng.normal(0, 9, 2)
        else:
            centre = rng.uniform(0, SHAPE[0], 2)
        rr, cc = skimage.draw.ellipse(*centre, *radii, shape=SHAPE, rotation=rng.uniform(0, np.pi))
        if rr.size == 0 or labels[rr, cc].any():
            continue
        count += 1
        labels[rr, cc] = count
    return labels


def rings(rng, n=12):
    """Annuli: real shapes with a hole, which simulated (star-convex) shapes never have."""
    labels = np.zeros(SHAPE, np.uint16)
    count = 0
    for _ in range(50 * n):
        if count == n:
            break
        cy, cx = rng.uniform(12, SHAPE[0] - 12, 2)
        outer = np.zeros(SHAPE, bool)
        outer[skimage.draw.disk((cy, cx), 9, shape=SHAPE)] = True
        outer[skimage.draw.disk((cy, cx), 4.5, shape=SHAPE)] = False
        if labels[outer].any():
            continue
        count += 1
        labels[outer] = count
    return labels


def holes_and_objects(labels):
    """(objects with a hole, objects) among those not cut by the border (a cut ring has none)."""
    inner = [i for i in range(1, labels.max() + 1) if not (
        (labels[0] == i).any() or (labels[-1] == i).any()
        or (labels[:, 0] == i).any() or (labels[:, -1] == i).any())]
    holes = sum(ndi.binary_fill_holes(labels == i).sum() > (labels == i).sum() for i in inner)
    return holes, len(inner)


def assert_consecutive_ids(labels):
    assert labels.dtype == np.uint16 and labels.shape == SHAPE
    present = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(present, np.arange(1, labels.max() + 1))


# ---------------------------------------------------------------------------------------------
# measure_objects


def test_measure_objects_reports_size_shape_and_density():
    rng = np.random.default_rng(0)
    label_images = [ellipses(rng) for _ in range(3)]
    stats = measure_objects(label_images)
    assert stats.n_images == 3 and stats.n_objects == 60
    assert stats.density == pytest.approx(60 / (3 * SHAPE[0] * SHAPE[1]))
    # objects cut by the border are left out of sizes and shapes
    assert len(stats.areas) < 60 and len(stats.shapes) == len(stats.areas)
    assert np.median(stats.diameters) == pytest.approx(2 * np.sqrt(6 * 4), rel=0.1)
    assert np.median(stats.axis_ratios) == pytest.approx(4 / 6, abs=0.08)
    assert np.all((stats.eccentricities > 0.6) & (stats.eccentricities < 0.85))
    assert all(s.dtype == bool and s.any() for s in stats.shapes)
    assert 0.9 < stats.nn_ratio < 1.6


def test_measure_objects_sees_clustering():
    rng = np.random.default_rng(1)
    uniform = measure_objects([ellipses(rng) for _ in range(3)])
    clustered = measure_objects([ellipses(rng, clustered=True) for _ in range(3)])
    assert clustered.nn_ratio < synthetic_masks.CLUSTERED_BELOW < uniform.nn_ratio


def test_measure_objects_samples_at_most_max_shapes():
    rng = np.random.default_rng(2)
    label_images = [ellipses(rng) for _ in range(3)]
    a = measure_objects(label_images, max_shapes=5, seed=4)
    b = measure_objects(label_images, max_shapes=5, seed=4)
    assert len(a.shapes) == 5
    assert all(np.array_equal(x, y) for x, y in zip(a.shapes, b.shapes))


def test_measure_objects_errors():
    with pytest.raises(InputError, match="no objects"):
        measure_objects([np.zeros(SHAPE, np.uint16)])
    with pytest.raises(InputError, match="empty"):
        measure_objects([])
    with pytest.raises(InputError, match=r"label_images\[1\]"):
        measure_objects([np.ones((8, 8), int), np.ones((8, 8), float)])


# ---------------------------------------------------------------------------------------------
# synthesise_masks


@pytest.fixture(scope="module")
def ellipse_stats():
    rng = np.random.default_rng(3)
    return measure_objects([ellipses(rng) for _ in range(4)])


def test_synthetic_masks_follow_count_and_size(ellipse_stats):
    masks = synthesise_masks(ellipse_stats, SHAPE, 8, seed=0)
    assert len(masks) == 8
    for labels in masks:
        assert_consecutive_ids(labels)
    expected = ellipse_stats.density * SHAPE[0] * SHAPE[1]
    assert np.mean([m.max() for m in masks]) == pytest.approx(expected, rel=0.2)
    measured = measure_objects(masks)
    assert np.median(measured.diameters) == pytest.approx(np.median(ellipse_stats.diameters), rel=0.3)
    assert np.median(measured.axis_ratios) == pytest.approx(np.median(ellipse_stats.axis_ratios),
                                                            abs=0.15)


def test_synthetic_objects_are_whole_and_single(ellipse_stats):
    # dense: three times the measured density, so that many placements collide
    dense = ObjectStats(**{**vars(ellipse_stats), "density": 3 * ellipse_stats.density})
    for labels in synthesise_masks(dense, SHAPE, 3, seed=1):
        assert_consecutive_ids(labels)
        for region in regionprops(labels):
            obj = region.image
            assert ndi.label(obj, structure=np.ones((3, 3)))[1] == 1
            # ellipses and smooth star-convex shapes are nearly convex: a bite taken by a later
            # object would show as a lower solidity
            assert region.solidity > 0.8


def test_placement_never_overlaps():
    square = np.ones((5, 5), bool)
    rng = np.random.default_rng(0)
    labels = synthetic_masks._place([square] * 200, (30, 30), lambda: rng.uniform(0, 30, 2), 20)
    n = labels.max()
    assert 10 < n < 200  # many were rejected, some placed
    for i in range(1, n + 1):
        ys, xs = np.nonzero(labels == i)
        # re-render the square where it lies: every one of its pixels still carries its id
        inside = (ys.min() > 0 and xs.min() > 0 and ys.max() < 29 and xs.max() < 29)
        if inside:
            assert ys.max() - ys.min() == 4 and xs.max() - xs.min() == 4 and len(ys) == 25
        else:
            assert 13 <= len(ys) <= 25


def test_real_share_is_respected():
    rng = np.random.default_rng(4)
    stats = measure_objects([rings(rng) for _ in range(2)])
    assert len(stats.shapes) > 0
    shares = {}
    for share in (0.0, 0.5, 1.0):
        masks = synthesise_masks(stats, SHAPE, 6, real_share=share, seed=2)
        holes, objects = np.sum([holes_and_objects(m) for m in masks], axis=0)
        shares[share] = holes / objects
    assert shares[0.0] == 0
    assert shares[0.5] == pytest.approx(0.5, abs=0.15)
    assert shares[1.0] == 1


def test_clustered_layout_is_reproduced():
    rng = np.random.default_rng(5)
    clustered = measure_objects([ellipses(rng, clustered=True) for _ in range(3)])
    uniform = measure_objects([ellipses(rng) for _ in range(3)])
    syn_clustered = measure_objects(synthesise_masks(clustered, SHAPE, 6, seed=0))
    syn_uniform = measure_objects(synthesise_masks(uniform, SHAPE, 6, seed=0))
    assert syn_clustered.nn_ratio < 0.95 < syn_uniform.nn_ratio


def test_synthesis_is_deterministic_by_seed(ellipse_stats):
    a = synthesise_masks(ellipse_stats, SHAPE, 2, seed=7)
    b = synthesise_masks(ellipse_stats, SHAPE, 2, seed=7)
    c = synthesise_masks(ellipse_stats, SHAPE, 2, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("args, kwargs, message", [
    (((64, 64), 0), {}, "n must be"),
    (((64,), 1), {}, "shape must be"),
    (((64, 0), 1), {}, "shape must be"),
    (((64, 64), 1), {"real_share": 1.5}, "real_share"),
    (((64, 64), 1), {"max_tries": 0}, "max_tries"),
])
def test_synthesis_errors(ellipse_stats, args, kwargs, message):
    with pytest.raises(InputError, match=message):
        synthesise_masks(ellipse_stats, *args, **kwargs)


def test_synthesis_needs_object_stats():
    with pytest.raises(InputError, match="ObjectStats"):
        synthesise_masks({"density": 0.01}, SHAPE, 1)


# ---------------------------------------------------------------------------------------------
# style grid


def test_style_grid_writes_a_png(tmp_path, ellipse_stats):
    rng = np.random.default_rng(6)
    real_masks = [ellipses(rng) for _ in range(3)]
    real_images = [(m > 0).astype(np.float32) * 0.8 for m in real_masks]  # grey float
    syn_masks = synthesise_masks(ellipse_stats, SHAPE, 5, seed=0)
    syn_images = [np.dstack([(m > 0) * 200] * 3).astype(np.uint8) for m in syn_masks]  # RGB
    path = tmp_path / "style.png"
    save_style_grid(path, real_images, real_masks, syn_images, syn_masks, title="style 0", n=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture = imread(path)
    assert picture.shape[1] > picture.shape[0] > 100  # 2 rows of 4
    assert picture.std() > 0.05


def test_style_grid_shows_what_there_is(tmp_path):
    labels = ellipses(np.random.default_rng(7))
    path = tmp_path / "one.png"
    save_style_grid(path, [], [], [labels.astype(float)], [labels])
    assert path.stat().st_size > 0


def test_style_grid_errors(tmp_path):
    labels = ellipses(np.random.default_rng(8))
    with pytest.raises(InputError, match="nothing to show"):
        save_style_grid(tmp_path / "x.png", [], [], [], [])
    with pytest.raises(InputError, match="1 real image"):
        save_style_grid(tmp_path / "x.png", [labels], [], [], [])
    with pytest.raises(InputError, match="mask shape"):
        save_style_grid(tmp_path / "x.png", [labels], [labels[:10]], [], [])
    with pytest.raises(InputError, match="does not exist"):
        save_style_grid(tmp_path / "missing" / "x.png", [labels], [labels], [], [])


def test_shapes_of_another_kind_take_the_style_sizes():
    """Real shapes pooled from other images are shown at the style's nucleus size."""
    small = np.zeros((64, 64), np.uint16)
    for i, (y, x) in enumerate([(10, 10), (10, 40), (40, 10), (40, 40)], start=1):
        small[y:y + 8, x:x + 8] = i  # 8 px squares: equivalent diameter ~9 px
    style_stats = synthetic_masks.measure_objects([small])
    pool = [np.ones((40, 20), bool), np.ones((30, 30), bool)]  # big shapes of another kind
    stats = synthetic_masks.with_shapes_of(style_stats, pool, seed=1)
    diameters = [2 * np.sqrt(shape.sum() / np.pi) for shape in stats.shapes]
    assert len(stats.shapes) == 2
    assert np.allclose(diameters, style_stats.diameters.mean(), rtol=0.2)
    assert stats.shapes[0].shape[0] > stats.shapes[0].shape[1]  # the outline is kept
    assert stats.density == style_stats.density and stats.n_objects == style_stats.n_objects
    with pytest.raises(InputError, match="non-empty"):
        synthetic_masks.with_shapes_of(style_stats, [np.zeros((3, 3), bool)])
