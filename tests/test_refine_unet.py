"""nucleai.refine.unet and .training: network, targets, model folders, tiled prediction, and
training through the shared trainer (a tiny U-Net trained in seconds, never the bundled model)."""
import json
import shutil

import numpy as np
import pytest

from nucleai import models
from nucleai.errors import InputError
from nucleai.refine import PUBLISHED, apply, training, unet
from tiny_model import synthetic_image, tiny_model_dir
from tiny_unet import synthetic_pairs, tiny_unet_dir


@pytest.fixture(scope="module")
def model_dir():
    return tiny_unet_dir()


def test_targets_mark_interior_and_boundary_between_touching_objects():
    labels = np.zeros((8, 10), np.int32)
    labels[1:6, 1:5] = 1
    labels[1:6, 5:9] = 2
    target = unet.target_classes(labels)
    assert target.shape == (8, 10, 3) and target.dtype == np.float32
    classes = target.argmax(axis=-1)
    np.testing.assert_array_equal(target.sum(axis=-1), 1)
    assert (classes[labels == 0] == 0).all()
    assert (classes[1:6, 4] == 2).all() and (classes[1:6, 5] == 2).all()  # where 1 meets 2
    assert (classes[2:5, 2:4] == 1).all() and (classes[2:5, 6:8] == 1).all()


def test_the_receptive_radius_bounds_the_networks_reach():
    import keras

    config = unet.unet_config(depth=2, filter_base=4)
    keras.utils.set_random_seed(1)
    network = unet.build_unet(config)
    size, centre = 96, 48
    base = np.zeros((1, size, size, 1), np.float32)
    impulse = base.copy()
    impulse[0, centre, centre, 0] = 10.0
    change = np.abs(network(impulse).numpy() - network(base).numpy()).max(axis=(0, 3))
    reach = np.argwhere(change > 0)
    radius = unet.receptive_radius(config)
    assert np.abs(reach - centre).max() <= radius
    assert np.abs(reach - centre).max() >= radius // 2  # the bound is not loose by much


def test_tiled_prediction_equals_the_whole_image(model_dir):
    model = models.load(model_dir, kind="unet")
    image, _ = synthetic_image(np.random.default_rng(2), (203, 171), n_objects=15)
    whole = unet.predict_classes(image, model, tiles=(1, 1))
    tiled = unet.predict_classes(image, model, tiles="3x2")
    assert whole.shape == (203, 171, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    np.testing.assert_allclose(whole.sum(axis=-1), 1, atol=1e-5)


def test_the_trained_network_finds_the_blobs(model_dir):
    model = models.load(model_dir, kind="unet")
    image, labels = synthetic_image(np.random.default_rng(4), (128, 160), n_objects=12)
    prob = unet.predict_probability(image, model)
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    assert ((prob > 0.5) == (labels > 0)).mean() > 0.9


def test_auto_tiles_cover_large_images(model_dir, monkeypatch):
    model = models.load(model_dir, kind="unet")
    image, _ = synthetic_image(np.random.default_rng(5), (90, 140), n_objects=8)
    whole = unet.predict_classes(image, model, tiles=(1, 1))
    monkeypatch.setattr(unet, "TILE_SIDE", 48)
    np.testing.assert_allclose(unet.predict_classes(image, model), whole, atol=1e-5)


def test_the_model_folder_is_checked(model_dir, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        models.read_spec(tmp_path / "nowhere", kind="unet")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no config.json"):
        models.read_spec(empty, kind="unet")
    with pytest.raises(InputError, match="a star-convex model, not a contour-refinement U-Net"):
        models.read_spec(tiny_model_dir(), kind="unet")
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    spec = models.read_spec(folder, kind="unet")
    assert spec.params_from == "published" and spec.weights.name == "weights_best.h5"
    (folder / "refine.json").write_text(json.dumps({"parameters": {"p4": -1}}))
    with pytest.raises(InputError, match=r"refine.json: p4 must be in \[0, 10\], got -1"):
        models.read_spec(folder, kind="unet")
    (folder / "refine.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="'parameters' object"):
        models.read_spec(folder, kind="unet")
    (folder / "refine.json").unlink()
    for name in ("weights_best.h5", "weights_last.h5"):
        (folder / name).unlink()
    with pytest.raises(InputError, match="has no weights_best.h5 or weights_last.h5"):
        models.read_spec(folder, kind="unet")
    config = json.loads((model_dir / "config.json").read_text())
    for change, message in (({"n_classes": 2}, "n_classes must be 3"), ({"unet_n_depth": 0}, "unet_n_depth"),
                            ({"percentiles": [5, 1]}, "percentiles")):
        with pytest.raises(InputError, match=message):
            unet.check_config({**config, **change})


def test_broken_weights_are_reported_with_the_file(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "weights_best.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="weights_best.h5: the weights do not load"):
        models.load(folder, kind="unet")


def test_a_model_is_loaded_once_and_retuned_parameters_are_seen(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    first = models.load(folder, kind="unet")
    assert models.load(folder, kind="unet") is first and first.spec.params_from == "published"
    (folder / "refine.json").write_text(json.dumps({"parameters": {"p2": 7}}))
    again = models.load(folder, kind="unet")
    assert again is not first and again.spec.params["p2"] == 7
    assert first.spec.params == PUBLISHED and first.spec.params_from == "published"  # untouched
    assert models.load(folder, kind="unet") is again


def test_star_convex_and_refinement_folders_are_told_apart(model_dir):
    assert models.model_kind(model_dir) == "unet"
    assert models.model_kind(tiny_model_dir()) == "starconvex"
    with pytest.raises(InputError, match="a contour-refinement U-Net, not a star-convex model"):
        models.read_spec(model_dir)


def test_refine_image_checks_sizes_before_predicting(model_dir):
    model = models.load(model_dir, kind="unet")
    with pytest.raises(InputError, match="objects are 10x12 but the image is 10x13"):
        apply.refine_image(np.zeros((10, 13)), np.zeros((10, 12), int), model)
    image, labels = synthetic_image(np.random.default_rng(6), (80, 90), n_objects=6)
    timings = {}
    result = apply.refine_image(image, labels, model, apply.RefineOptions(p6=0.0, p2=0), timings=timings)
    assert result.refinement.params["p6"] == 0.0 and result.refinement.params["p1"] == 0.17
    assert result.prob.shape == (80, 90) and {"normalize", "network", "refine"} <= set(timings)


def test_training_uses_the_shared_loop_and_resumes(tmp_path):
    from nucleai.train.augment import Augmenter

    pairs = synthetic_pairs(3, 3, shape=(64, 64), n_objects=4)
    settings = training.default_settings(patch_size=(32, 32), batch_size=2, steps_per_epoch=2, epochs=1)
    config = unet.unet_config(depth=2, filter_base=4)
    folder = tmp_path / "unet"
    augmenter = Augmenter(rotate_prob=0.0)
    result = training.train_unet(pairs[:2], pairs[2:], folder, config=config, settings=settings,
                                 augmenter=augmenter, progress=False)
    assert result.epochs_done == 1 and (folder / "weights_best.h5").is_file()
    assert json.loads((folder / "config.json").read_text()) == config
    models.load(folder, kind="unet")  # a usable model folder
    more = training.default_settings(patch_size=(32, 32), batch_size=2, steps_per_epoch=2, epochs=2)
    assert training.train_unet(pairs[:2], pairs[2:], folder, config=config, settings=more,
                               augmenter=augmenter, progress=False).epochs_done == 2
    with pytest.raises(InputError, match="another network"):
        training.train_unet(pairs[:2], pairs[2:], folder, config=unet.unet_config(depth=2, filter_base=8),
                            settings=more, progress=False)
    with pytest.raises(InputError, match="multiple of 4"):
        training.train_unet(pairs[:2], pairs[2:], tmp_path / "other", config=config,
                            settings=training.default_settings(patch_size=(30, 32)), progress=False)
