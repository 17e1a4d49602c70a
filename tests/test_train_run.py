"""One training run (nucleai.train.run), its options, its staging format, one intensity rule, and
random generators left as the caller had them."""
import random

import numpy as np
import pytest

from nucleai.errors import InputError
from nucleai.train import data, pix2pix, staging, style
from nucleai.train.options import TrainOptions
from nucleai.train.run import check_setup, run_training
from nucleai.train.seeding import seeded
from tiny_model import synthetic_image, tiny_model_dir


def scene(seed=0, shape=(64, 64)):
    image, labels = synthetic_image(np.random.default_rng(seed), shape, n_objects=5)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels


# ------------------------------------------------------------------------------------------------
# one intensity rule: a file's integers and CellProfiler's copy of them (divided by the file's
# range) train alike, so StyleAugmentTrain needs no conversion back to integers


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_file_and_cellprofilers_copy_of_it_are_one_training_input(dtype):
    top = np.iinfo(dtype).max
    image = (np.random.default_rng(1).random((40, 48, 3)) * top * 0.6).astype(dtype)  # not filling the range
    as_cellprofiler = (image / top).astype(np.float32)
    np.testing.assert_allclose(data.prepare(image, 3), data.prepare(as_cellprofiler, 3), atol=1e-5)
    np.testing.assert_allclose(pix2pix.image_to_unit(image, 0, 3), pix2pix.image_to_unit(as_cellprofiler, 0, 3),
                               atol=1e-5)
    np.testing.assert_allclose(style.style_features(image), style.style_features(as_cellprofiler), atol=1e-5)


def test_the_generator_sees_every_image_stretched_to_its_own_range():
    dim = np.array([[10, 60]], np.uint8)  # an 8-bit image using part of its range
    np.testing.assert_allclose(pix2pix.image_to_unit(dim, 0, 1)[..., 0], [[-1, 1]])


# ------------------------------------------------------------------------------------------------
# options


def test_options_defaults_are_the_command_lines():
    options = TrainOptions()
    assert (options.steps_per_epoch, options.epochs, options.patch_size, options.batch_size) == (100, 100, (256, 256), 4)
    assert TrainOptions(patch_size=64).patch_size == (64, 64)
    assert TrainOptions(patch_size=(32, 48)).patch_size == (32, 48)
    settings = TrainOptions(patch_size=64, minutes=2.0, seed=3).loop_settings()
    assert (settings.patch_size, settings.minutes, settings.seed) == ((64, 64), 2.0, 3)
    assert TrainOptions().style_settings() is None
    styled = TrainOptions(style=True, n_styles=2, synthetic_share=0.2, generator_size=64).style_settings()
    assert (styled.k, styled.share, styled.generator.size, styled.generator.depth) == (2, 0.2, 64, 4)
    assert TrainOptions(invert_prob=0.3).augmenter().invert_prob == 0.3


def test_style_fields_are_checked_only_with_style_augmentation():
    TrainOptions(synthetic_share=0.9)  # unused without styles
    with pytest.raises(InputError) as error:
        TrainOptions(style=True, synthetic_share=0.9)
    assert error.value.field == "synthetic_share"


# ------------------------------------------------------------------------------------------------
# staging


def test_staging_round_trip_and_only_its_own_folder_is_emptied(tmp_path):
    image, labels = scene()
    folder = tmp_path / "staging"
    staging.stage_image_set(folder, "00001_a", image.astype(float) / 255, labels)
    staging.stage_image_set(folder, "00002_b", np.stack([image] * 3, axis=-1), None)
    annotated, unlabeled = staging.read_staged(folder)
    assert [s.name for s in annotated] == ["00001_a"] and [s.name for s in unlabeled] == ["00002_b"]
    np.testing.assert_array_equal(annotated[0].image, (image / 255).astype(np.float32))
    np.testing.assert_array_equal(annotated[0].labels, labels)
    assert unlabeled[0].image.shape == (64, 64, 3) and unlabeled[0].labels is None
    staging.clear_staging(folder)
    assert not folder.exists()
    folder.mkdir()
    with pytest.raises(InputError, match="was not written by StyleAugmentTrain") as error:
        staging.clear_staging(folder)
    assert error.value.field == "out"
    with pytest.raises(InputError) as error:
        staging.read_staged(folder)
    assert error.value.field == "labels"


def test_check_setup_names_the_argument_at_fault(tmp_path):
    with pytest.raises(InputError) as error:
        check_setup(TrainOptions(style=True), tmp_path / "m")
    assert error.value.field == "first_pass"
    with pytest.raises(InputError) as error:
        check_setup(TrainOptions(), tmp_path / "m", base=tmp_path / "nowhere")
    assert error.value.field == "base"
    with pytest.raises(InputError, match=r"multiple of \(16, 16\)") as error:
        check_setup(TrainOptions(patch_size=72), tmp_path / "m")
    assert error.value.field == "patch_size"
    check_setup(TrainOptions(patch_size=72), tmp_path / "m", base=tiny_model_dir())  # its div_by is 8


# ------------------------------------------------------------------------------------------------
# the caller's random generators


def test_seeded_restores_python_and_numpy_random_states():
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    with seeded(0):
        random.random(), np.random.random()
    assert (random.random(), np.random.random()) == expected


def test_training_leaves_the_callers_random_sequences_unchanged(tmp_path):
    samples = [data.Sample(f"s{i}", *scene(i)) for i in range(3)]
    options = TrainOptions(steps_per_epoch=1, epochs=1, patch_size=32, batch_size=1, seed=4)

    def sequence():
        return [random.random() for _ in range(3)] + list(np.random.random(3))

    random.seed(11)
    np.random.seed(11)
    expected = sequence()
    random.seed(11)
    np.random.seed(11)
    run_training(samples, tmp_path / "model", options, base=tiny_model_dir())
    assert sequence() == expected
