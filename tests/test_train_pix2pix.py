"""nucleai.train.pix2pix: mask-to-image generators for style augmentation (tiny networks on 32 x 32
crops, a few dozen steps; never the 256-pixel defaults)."""
import json

import numpy as np
import pytest

from nucleai import models
from nucleai.errors import InputError
from nucleai.train import pix2pix

TINY = pix2pix.GeneratorSettings(size=32, n_filters=4, depth=3, steps=4, minutes=None)
DARK, BRIGHT = 20, 220


def disks(rng, shape=(48, 48), n=4):
    """Labels of non-overlapping-ish disks and a grey uint8 image: bright disks on a dark field."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(6, shape[0] - 6), rng.integers(6, shape[1] - 6)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(9, 26)] = k
    image = np.where(labels > 0, BRIGHT, DARK) + rng.integers(-10, 11, shape)
    return labels, image.astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A grey generator trained on bright disks, saved to a folder; (generator, folder)."""
    rng = np.random.default_rng(0)
    pairs = [disks(rng) for _ in range(4)]
    folder = tmp_path_factory.mktemp("generator")
    settings = pix2pix.GeneratorSettings(size=32, n_filters=8, depth=3, steps=150, minutes=None, seed=1)
    generator = pix2pix.train_generator(
        [p[0] for p in pairs], [p[1] for p in pairs], n_channels=1, settings=settings,
        out_dir=folder, progress=False,
    )
    return generator, folder


def test_mask_channels_mark_foreground_and_the_line_between_touching_objects():
    labels = np.zeros((8, 10), np.int32)
    labels[1:6, 1:5] = 1
    labels[1:6, 5:9] = 2
    x = pix2pix.mask_channels(labels)
    assert x.shape == (8, 10, 2) and x.dtype == np.float32
    assert set(np.unique(x)) == {-1.0, 1.0}
    np.testing.assert_array_equal(x[..., 0] > 0, labels > 0)
    assert (x[1:6, 4, 1] > 0).all() and (x[1:6, 5, 1] > 0).all()  # where 1 meets 2
    assert (x[2:5, 2:4, 1] < 0).all()  # interior
    assert (x[labels == 0, 1] < 0).all()


def test_images_are_scaled_to_minus_one_one_and_converted_to_the_channel_count():
    grey = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(pix2pix.image_to_unit(grey, 0, 1)[..., 0], [[-1, 1]])
    rgb = pix2pix.image_to_unit(grey, 0, 3)
    assert rgb.shape == (1, 2, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    deep = np.array([[100, 4100]], np.uint16)  # 12 bits used of 16: stretched, not dark
    np.testing.assert_allclose(pix2pix.image_to_unit(deep, 0, 1)[..., 0], [[-1, 1]])
    np.testing.assert_allclose(pix2pix.image_to_unit(deep / 65535, 0, 1), pix2pix.image_to_unit(deep, 0, 1))
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, 1, :3] = 255
    np.testing.assert_allclose(pix2pix.image_to_unit(rgba, 0, 3), [[[-1] * 3, [1] * 3]])
    np.testing.assert_allclose(pix2pix.image_to_unit(rgba, 0, 1)[..., 0], [[-1, 1]])


@pytest.mark.parametrize("n_channels", [1, 3])
def test_render_images_gives_uint8_images_of_any_size(n_channels):
    import keras

    keras.utils.set_random_seed(0)
    generator = pix2pix.build_generator(n_channels, TINY)
    rng = np.random.default_rng(2)
    label_images = [disks(rng, shape)[0] for shape in [(32, 32), (13, 21), (40, 33), (13, 21)]]
    rendered = pix2pix.render_images(generator, label_images, n_channels=n_channels)
    assert len(rendered) == len(label_images)
    for labels, image in zip(label_images, rendered):
        assert image.dtype == np.uint8
        assert image.shape == (labels.shape if n_channels == 1 else labels.shape + (3,))


def test_odd_sizes_are_reflection_padded_and_cropped_back():
    import keras

    keras.utils.set_random_seed(0)
    generator = pix2pix.build_generator(1, TINY)
    labels = np.zeros((13, 21), np.int32)
    labels[3:8, 4:10] = 1
    labels[4:9, 12:17] = 2
    padded = np.pad(labels, [(0, 3), (0, 3)], mode="reflect")  # to 16 x 24
    odd, whole = pix2pix.render_images(generator, [labels, padded], n_channels=1)
    np.testing.assert_array_equal(odd, whole[:13, :21])


def test_training_learns_bright_disks_on_a_dark_field(trained):
    generator, folder = trained
    labels, _ = disks(np.random.default_rng(7), (40, 56), n=5)
    image = pix2pix.render_images(generator, [labels], n_channels=1)[0].astype(float)
    inside, outside = image[labels > 0].mean(), image[labels == 0].mean()
    assert inside > outside + 0.3 * (BRIGHT - DARK), (inside, outside)  # untrained: about equal
    history = json.loads((folder / models.CONFIG_FILE).read_text())["history"]
    assert history[-1]["l1"] < 0.5 * history[0]["l1"]


def test_saved_generator_loads_through_the_model_layer_and_renders_identically(trained):
    generator, folder = trained
    info = json.loads((folder / models.CONFIG_FILE).read_text())
    assert info["kind"] == "generator" and info["n_channels"] == 1 and info["steps"] == 150
    assert info["settings"]["n_filters"] == 8 and info["minutes"] > 0
    assert models.model_kind(folder) == "generator"
    loaded = models.load(folder, kind="generator")
    assert models.load(folder, kind="generator") is loaded
    assert loaded.spec.weights.name == "weights_last.h5" and loaded.spec.div_by == (8, 8)
    labels = [disks(np.random.default_rng(3), (37, 29))[0]]
    np.testing.assert_array_equal(
        pix2pix.render_images(generator, labels, n_channels=1)[0],
        pix2pix.render_images(loaded.keras_model, labels, n_channels=1)[0],
    )


def test_training_is_deterministic_with_a_seed():
    labels, image = disks(np.random.default_rng(5))
    settings = pix2pix.GeneratorSettings(size=32, n_filters=4, depth=3, steps=3, minutes=None, seed=9)
    rendered = [
        pix2pix.render_images(
            pix2pix.train_generator([labels], [image], n_channels=1, settings=settings, progress=False),
            [labels], n_channels=1,
        )[0]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(rendered[0], rendered[1])


def test_the_minutes_budget_stops_training(tmp_path):
    rng = np.random.default_rng(4)
    labels, image = disks(rng, (20, 20))  # smaller than the crop: padded
    deep = image.astype(np.uint16) * 16  # grey 16-bit into a colour generator
    settings = pix2pix.GeneratorSettings(size=32, n_filters=4, depth=3, steps=None, minutes=0.001)
    lines = []
    generator = pix2pix.train_generator([labels], [deep], n_channels=3, settings=settings,
                                        out_dir=tmp_path, progress=False, log=lines.append)
    assert json.loads((tmp_path / models.CONFIG_FILE).read_text())["steps"] < 5
    assert "time budget" in lines[-1]
    assert pix2pix.render_images(generator, [labels], n_channels=3)[0].shape == (20, 20, 3)


def test_a_stop_request_ends_training_within_one_step(tmp_path):
    from nucleai.train.loop import TrainingStopped

    labels, image = disks(np.random.default_rng(6))
    settings = pix2pix.GeneratorSettings(size=32, n_filters=4, depth=3, steps=1000, minutes=None)
    asked = []

    def should_stop():
        asked.append(True)
        return len(asked) > 3  # three steps, then stop

    with pytest.raises(TrainingStopped, match="after 3 steps"):
        pix2pix.train_generator([labels], [image], n_channels=1, settings=settings, out_dir=tmp_path / "g",
                                progress=False, should_stop=should_stop)
    assert len(asked) == 4 and not (tmp_path / "g").exists()


@pytest.mark.parametrize("changes, words", [
    ({"size": 40}, r"multiple of 2\*\*depth"),
    ({"n_filters": 0}, "n filters"),
    ({"depth": 1.5}, "depth"),
    ({"batch_size": True}, "batch size"),
    ({"learning_rate": 0}, "learning rate"),
    ({"l1_weight": -1.0}, "l1 weight"),
    ({"steps": 0}, "steps"),
    ({"minutes": -1.0}, "minutes"),
    ({"steps": None, "minutes": None}, "never stop"),
    ({"seed": -1}, "seed"),
])
def test_bad_settings_are_named(changes, words):
    settings = pix2pix.GeneratorSettings(**changes)
    with pytest.raises(InputError, match=words):
        settings.check()
    labels, image = disks(np.random.default_rng(0))
    with pytest.raises(InputError, match=words):
        pix2pix.train_generator([labels], [image], n_channels=1, settings=settings, progress=False)


def test_bad_training_data_is_refused():
    labels, image = disks(np.random.default_rng(0))

    def train(label_images, images, n_channels=1):
        pix2pix.train_generator(label_images, images, n_channels=n_channels, settings=TINY, progress=False)

    with pytest.raises(InputError, match="2 label images but 1 images"):
        train([labels, labels], [image])
    with pytest.raises(InputError, match="no training images"):
        train([], [])
    with pytest.raises(InputError, match="image 1 is"):
        train([labels, labels], [image, image[:-1]])
    with pytest.raises(InputError, match="no objects"):
        train([np.zeros_like(labels)], [image])
    with pytest.raises(InputError, match="label image 0 must be a label image of integers"):
        train([labels.astype(float)], [image])
    with pytest.raises(InputError, match="grey, RGB or RGBA"):
        train([labels], [np.dstack([image, image])])
    with pytest.raises(InputError, match="n_channels"):
        train([labels], [image], n_channels=2)


def test_render_refuses_a_wrong_channel_count():
    generator = pix2pix.build_generator(3, TINY)
    with pytest.raises(InputError, match="3-channel"):
        pix2pix.render_images(generator, [np.ones((8, 8), np.int32)], n_channels=1)


def test_loading_names_the_folder_when_files_are_missing_or_broken(tmp_path, trained):
    _, folder = trained
    def load(path):
        return models.load(path, kind="generator")

    with pytest.raises(InputError, match="does not exist"):
        load(tmp_path / "nowhere")
    with pytest.raises(InputError, match="has no config.json"):
        load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((folder / models.CONFIG_FILE).read_text())
    (broken / models.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="has no weights_best.h5 or weights_last.h5"):
        load(broken)
    (broken / pix2pix.WEIGHTS_FILE).write_bytes((folder / pix2pix.WEIGHTS_FILE).read_bytes()[:500])
    with pytest.raises(InputError, match=f"{broken}.*do not load into the generator"):
        load(broken)
    (broken / models.CONFIG_FILE).write_text(json.dumps({**config, "n_channels": 2}))
    with pytest.raises(InputError, match=f"{broken}.*config.json is broken"):
        load(broken)
    (broken / models.CONFIG_FILE).write_text("{not json")
    with pytest.raises(InputError, match=f"{broken}.*not valid JSON"):
        load(broken)
    with pytest.raises(InputError, match="a pix2pix generator, not a star-convex model"):
        models.load(folder)
