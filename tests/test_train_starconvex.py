"""Our star-convex network, targets and losses equal stardist's (the reference implementation)."""
import contextlib
import io

import numpy as np
import pytest

from nucleai import models
from nucleai.errors import InputError
from nucleai.geometry import star_dist
from nucleai.train import loop, starconvex
from nucleai.train.data import split_validation, to_channels
from tiny_model import synthetic_image


def stardist_model(config):
    from stardist.models import Config2D, StarDist2D

    with contextlib.redirect_stdout(io.StringIO()):
        return StarDist2D(Config2D(**Config2D.update_loaded_config(dict(config))), basedir=None)


@pytest.mark.parametrize("grid, n_channel_in, depth", [((2, 2), 1, 2), ((1, 2), 3, 1)])
def test_network_is_stardists_layer_for_layer(tmp_path, grid, n_channel_in, depth):
    config = starconvex.stardist_config(n_rays=8, grid=grid, n_channel_in=n_channel_in, unet_n_depth=depth,
                                        unet_n_filter_base=4, net_conv_after_unet=8)
    theirs = stardist_model(config).keras_model
    ours = starconvex.build_network(config)
    assert [layer.name for layer in ours.layers if layer.weights][-3:] == ["features", "prob", "dist"]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    x = np.random.default_rng(0).random((2, 32, 32, n_channel_in)).astype(np.float32)
    # our weights -> stardist's network, via the HDF5 file we write
    loop.save_weights(ours, tmp_path / "ours.h5")
    theirs.load_weights(str(tmp_path / "ours.h5"))
    for a, b in zip(theirs([x]), ours(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and back: stardist-written weights (randomised first) -> our network
    theirs.set_weights([np.random.default_rng(1).normal(0, 0.1, w.shape) for w in theirs.get_weights()])
    theirs.save_weights(str(tmp_path / "theirs.h5"))
    fresh = starconvex.build_network(config)
    fresh.load_weights(str(tmp_path / "theirs.h5"))
    for a, b in zip(theirs([x]), fresh(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(fresh(x)[1]).shape == (2, 32 // grid[0], 32 // grid[1], 8)


def test_config_is_stardists_format():
    from stardist.models import Config2D

    config = starconvex.stardist_config(n_rays=16, grid=(2, 2), n_channel_in=3)
    assert set(config) == set(vars(Config2D(n_channel_in=3)))
    assert Config2D(**config).is_valid()
    assert models.div_by(config) == (16, 16)
    with pytest.raises(InputError, match="grid"):
        starconvex.stardist_config(grid=(3, 2))


def test_object_probability_equals_stardists_edt_prob():
    from stardist.utils import edt_prob

    rng = np.random.default_rng(0)
    for _ in range(3):
        _, labels = synthetic_image(rng, (80, 96), n_objects=25)
        labels[:10, :30] = labels.max() + 1  # an object cut by the border
        np.testing.assert_allclose(starconvex.object_probability(labels), edt_prob(labels), atol=1e-6)


def test_targets():
    _, labels = synthetic_image(np.random.default_rng(1), (64, 64), n_objects=8)
    prob, dist_mask = starconvex.targets(labels, 16, (2, 2))
    assert prob.shape == (32, 32, 1) and dist_mask.shape == (32, 32, 17)
    np.testing.assert_array_equal(dist_mask[..., :16], star_dist(labels, 16, (2, 2)))
    np.testing.assert_array_equal(dist_mask[..., 16], prob[..., 0])
    assert ((prob[..., 0] > 0) == (labels[::2, ::2] > 0)).all()
    assert prob.max() == pytest.approx(1.0)


def test_losses_equal_stardists():
    import keras
    from stardist.models.base import masked_loss_mae

    rng = np.random.default_rng(0)
    d_true = rng.random((2, 8, 8, 4)).astype(np.float32) * 5
    mask = (rng.random((2, 8, 8, 1)) > 0.5).astype(np.float32) * rng.random((2, 8, 8, 1)).astype(np.float32)
    d_pred = rng.random((2, 8, 8, 4)).astype(np.float32) * 5
    ours = starconvex.dist_loss(4, 1e-4)(np.concatenate([d_true, mask], -1), d_pred)
    theirs = masked_loss_mae(mask, reg_weight=1e-4)(d_true, d_pred)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), rtol=1e-6)
    p_true = mask
    p_pred = rng.uniform(0.01, 0.99, (2, 8, 8, 1)).astype(np.float32)
    bce = keras.ops.convert_to_numpy(starconvex.prob_loss(p_true, p_pred))
    expected = -(p_true * np.log(p_pred) + (1 - p_true) * np.log(1 - p_pred))[..., 0]
    np.testing.assert_allclose(bce, expected, rtol=1e-4)


def test_to_channels():
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (3, 4, 3) and (rgb == grey[..., None]).all()
    colour = np.stack([grey, 2 * grey, 3 * grey], axis=-1)
    np.testing.assert_allclose(to_channels(colour, 1)[..., 0], 2 * grey)
    rgba = np.concatenate([colour, np.full((3, 4, 1), 255, np.uint16)], axis=-1)
    np.testing.assert_array_equal(to_channels(rgba, 3), colour)
    with pytest.raises(InputError, match="shape"):
        to_channels(np.zeros((3, 4, 2)), 1)


def test_check_compatible_names_the_mismatch():
    config = starconvex.stardist_config(n_rays=16, n_channel_in=1)
    starconvex.check_compatible(config, n_channel_in=1, n_rays=16, grid=(2, 2))
    with pytest.raises(InputError, match="input channels 1, but 3"):
        starconvex.check_compatible(config, n_channel_in=3)


def test_split_validation():
    samples = list(range(10))
    train, val = split_validation(samples, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == samples
    assert split_validation(samples, 0.2, seed=3) == (train, val)
    assert len(split_validation(samples[:2], 0.01, 0)[1]) == 1
    with pytest.raises(InputError, match="at least 2"):
        split_validation(samples[:1], 0.5, 0)


def test_targets_and_total_loss_equal_stardists_training_data_and_loss():
    from stardist.models.model2d import StarDistData2D

    image, labels = synthetic_image(np.random.default_rng(2), (64, 64), n_objects=10)
    generator = StarDistData2D([image], [labels], batch_size=1, n_rays=16, length=1, patch_size=(64, 64),
                               grid=(2, 2))
    (x,), (prob_theirs, dist_theirs) = generator[0]
    prob, dist_mask = starconvex.targets(labels, 16, (2, 2))
    np.testing.assert_allclose(prob, prob_theirs[0], atol=1e-6)
    np.testing.assert_allclose(dist_mask, dist_theirs[0], atol=1e-6)

    config = starconvex.stardist_config(n_rays=16, grid=(2, 2), unet_n_depth=2, unet_n_filter_base=4,
                                        net_conv_after_unet=8)
    theirs = stardist_model(config)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs.prepare_for_training()
    ours = starconvex.build_network(config)
    ours.set_weights(theirs.keras_model.get_weights())
    reference = theirs.keras_model.test_on_batch(x, [prob[None], dist_mask[None]], return_dict=True)["loss"]
    _, val_step = loop._step_functions(
        ours, [starconvex.prob_loss, starconvex.dist_loss(16)], starconvex.LOSS_WEIGHTS, None)
    total = float(val_step(x, [prob[None], dist_mask[None]]))
    assert total == pytest.approx(float(reference), rel=1e-5)
