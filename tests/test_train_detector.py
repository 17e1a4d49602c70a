"""Training a star-convex detector end to end: the folder loads in stardist and predicts the same.

A tiny network (16 rays, U-Net depth 2, 8 filters) is trained for a few dozen steps on
synthetic blobs (tests/tiny_model.py): crude, but a real model folder, which is all the
compatibility checks need.
"""
import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import tifffile

from nucleai import metrics, models, predict
from nucleai.cli import main
from nucleai.errors import InputError
from nucleai.train import data, detector, loop
from tiny_model import synthetic_image

NETWORK = detector.NetworkSettings(n_rays=16, grid=(2, 2), unet_n_depth=2, unet_n_filter_base=8,
                                   net_conv_after_unet=16)


def tiny_settings(**changes):
    base = dict(patch_size=(64, 64), batch_size=4, steps_per_epoch=25, epochs=2, learning_rate=3e-3)
    base.update(changes)
    return loop.TrainSettings(**base)


def samples(n, seed):
    rng = np.random.default_rng(seed)
    return [data.Sample(f"blobs{seed}_{i}", *synthetic_image(rng, (128, 128), 12)) for i in range(n)]


def train_tiny(out, epochs=2, **kwargs):
    return detector.train_detector(
        samples(6, 0), samples(2, 1), out, n_channels=1, settings=tiny_settings(epochs=epochs),
        network=NETWORK, augmenter=None, progress=False, command="pytest", **kwargs,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train") / "tiny_detector"
    return folder, train_tiny(folder)


def test_folder_has_stardists_layout_and_our_card(trained):
    folder, result = trained
    for name in ("config.json", "weights_best.h5", "weights_last.h5", "thresholds.json", "nucleai.json",
                 "MODEL.md", "loss_curve.png", loop.STATE_FILE):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "thresholds.json").read_text()) == {
        "prob": result.prob_thresh, "nms": result.nms_thresh}
    diameter = json.loads((folder / "nucleai.json").read_text())["object_diameter"]
    assert 8 < diameter < 22  # blobs of radius 5-10
    card = (folder / "MODEL.md").read_text()
    assert "2 epochs (50 steps)" in card and "6 training images, 2 validation images" in card
    assert f"| DSB score (mean over IoU 0.50 ... 0.95) | **{result.validation.dsb_score:.4f}** |" in card
    assert "    pytest" in card
    assert result.training.epochs_done == 2 and result.validation.n_images == 2
    settings = tiny_settings()
    config = json.loads((folder / "config.json").read_text())
    assert config["train_patch_size"] == list(settings.patch_size)
    assert config["train_learning_rate"] == settings.learning_rate
    assert config["train_reduce_lr"] == {"factor": settings.lr_factor, "patience": settings.lr_patience,
                                         "min_delta": 0}


def test_folder_loads_in_stardist_and_predicts_the_same(trained):
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    folder, result = trained
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    ours = models.load(folder)
    assert (theirs.thresholds.prob, theirs.thresholds.nms) == (result.prob_thresh, result.nms_thresh)
    assert ours.spec.weights.name == "weights_best.h5"

    image, _ = synthetic_image(np.random.default_rng(99), (128, 128), 12)
    x = normalize(image, 1, 99.8)[..., np.newaxis].astype(np.float32)
    prob_theirs, dist_theirs = (out[0] for out in theirs.keras_model.predict(x[np.newaxis], verbose=0))
    prob_ours, dist_ours = ours.predict_maps(x)
    np.testing.assert_array_equal(prob_ours, prob_theirs[..., 0])
    np.testing.assert_array_equal(dist_ours, dist_theirs)

    # a threshold the crude model's probabilities reach away from the border (where stardist's
    # rule lets no candidate start), so that there are objects to compare
    prob_thresh = float(0.8 * prob_ours[2:-2, 2:-2].max())
    reference, _ = theirs.predict_instances(normalize(image, 1, 99.8), prob_thresh=prob_thresh, nms_thresh=0.4,
                                            show_tile_progress=False)
    found = predict.segment(image, ours, predict.SegmentOptions(prob_thresh=prob_thresh, nms_thresh=0.4))
    assert found.count >= 1 and reference.max() == found.count
    assert metrics.evaluate_image(reference, found.labels).dsb_score >= 0.99


def test_resume_continues_from_the_saved_epoch(trained, tmp_path):
    folder, first = trained
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    messages = []
    resumed = train_tiny(copy, epochs=3, log=messages.append)
    assert messages[0].startswith("resuming after epoch 2")
    assert resumed.training.epochs_done == 3 and len(resumed.training.history) == 3
    assert resumed.training.history[:2] == first.training.history
    assert "3 epochs (75 steps)" in (copy / "MODEL.md").read_text()


def test_an_existing_model_folder_is_not_overwritten(trained, tmp_path):
    folder, _ = trained
    foreign = tmp_path / "foreign"
    shutil.copytree(folder, foreign)
    (foreign / loop.STATE_FILE).unlink()
    with pytest.raises(InputError, match="already holds a model"):
        train_tiny(foreign)


def test_grey_base_widens_to_colour_and_colour_base_keeps_its_channels(trained, tmp_path):
    """A grey base becomes a colour network computing the same on grey images repeated into
    three channels (nucleAIzer's RGB input); a colour base cannot become grey."""
    folder, _ = trained
    result = detector.train_detector(samples(2, 0), samples(1, 1), tmp_path / "rgb", n_channels=3, base=folder,
                                     settings=tiny_settings(epochs=1, steps_per_epoch=1, learning_rate=1e-12),
                                     progress=False)
    widened = models.load(result.out_dir)
    assert widened.spec.n_channel_in == 3
    x = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    for a, b in zip(widened.predict_maps(np.repeat(x, 3, axis=2)), models.load(folder).predict_maps(x)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(InputError, match="input channels 3, but 1"):
        detector.train_detector(samples(2, 0), samples(1, 1), tmp_path / "grey", n_channels=1,
                                base=result.out_dir, settings=tiny_settings(), progress=False)
    assert not (tmp_path / "grey").exists()


def test_three_channel_model_from_grey_and_colour_images(tmp_path):
    from stardist.models import StarDist2D

    train = samples(2, 0)
    colour = train[1].image[..., None] * np.array([1.0, 0.5, 0.2], np.float32)
    train[1] = data.Sample("colour", colour, train[1].labels)
    result = detector.train_detector(
        train, samples(1, 1), tmp_path / "rgb", n_channels=3, network=NETWORK,
        settings=tiny_settings(epochs=1, steps_per_epoch=2), progress=False,
    )
    assert models.load(result.out_dir).spec.n_channel_in == 3
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = StarDist2D(None, name="rgb", basedir=str(tmp_path))
    assert theirs.config.n_channel_in == 3
    assert "3 input channel(s)" in (result.out_dir / "MODEL.md").read_text()


def write_dataset(root, n, seed, rgb=False):
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for sample in samples(n, seed):
        image = (np.clip(sample.image, 0, 1) * 255).astype(np.uint8)
        if rgb:
            image = np.stack([image, image // 2, image // 3], axis=-1)
        tifffile.imwrite(images / f"{sample.name}.tif", image)
        tifffile.imwrite(labels / f"{sample.name}.tif", sample.labels)
    return images, labels


def test_cli_fine_tunes_from_a_folder_and_writes_a_model(trained, tmp_path, capsys):
    folder, _ = trained
    images, labels = write_dataset(tmp_path / "data", 4, 5)
    out = tmp_path / "cli_model"
    # with a vanishing learning rate the fine-tuned weights stay the base's
    code = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out),
                 "--base", str(folder), "--val-fraction", "0.25", "--steps", "2", "--epochs", "1",
                 "--patch-size", "64", "--batch-size", "2", "--learning-rate", "1e-12"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "3 training and 1 validation images, 1 channel(s)" in printed
    assert "mean DSB score" in printed
    config = json.loads((out / "config.json").read_text())
    assert (config["n_rays"], config["unet_n_depth"], config["unet_n_filter_base"]) == (16, 2, 8)
    # the fine-tuning run's settings replace the base's record of its own training
    assert (config["train_learning_rate"], config["train_batch_size"], config["train_patch_size"]) == (
        1e-12, 2, [64, 64])
    assert config["train_reduce_lr"]["patience"] == loop.TrainSettings().lr_patience
    x = np.random.default_rng(0).random((64, 64, 1)).astype(np.float32)
    for a, b in zip(models.load(out).predict_maps(x), models.load(folder).predict_maps(x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert json.loads((out / "nucleai.json").read_text())["base_model"] == str(folder)
    card = (out / "MODEL.md").read_text()
    assert f"Started from: {folder}" in card
    assert f"nucleai train --images {images}" in card and "--val-fraction 0.25" in card


def test_cli_bad_input_names_the_file_or_option(trained, tmp_path, capsys):
    folder, _ = trained
    images, labels = write_dataset(tmp_path / "data", 3, 6, rgb=True)
    (labels / "blobs6_1.tif").unlink()
    code = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "m")])
    assert code == 2
    assert f"{images / 'blobs6_1.tif'} has no label image" in capsys.readouterr().err
    tifffile.imwrite(labels / "blobs6_1.tif", np.zeros((128, 128), np.uint16))
    code = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "m"),
                 "--val-images", str(images)])
    assert code == 2
    assert "--val-labels" in capsys.readouterr().err
    code = main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "m"),
                 "--patch-size", "60", "--steps", "1", "--epochs", "1"])
    assert code == 2
    assert "patch size (60, 60) must be a multiple of (16, 16)" in capsys.readouterr().err


def test_card_says_when_validation_images_were_trained_on(trained):
    from nucleai.train import card

    folder, result = trained
    config = json.loads((folder / "config.json").read_text())
    common = dict(config=config, settings=tiny_settings(), augmenter=None, n_train=6, n_val=2)
    assert "never trained on" in card.render_model_card(result, **common)
    text = card.render_model_card(result, **common, n_val_trained_on=2)
    assert "2 of the 2 validation images are also training images" in text and "never trained on" not in text
