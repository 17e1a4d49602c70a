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


# ------------------------------------------------------------------------------------------------
# blank images, image counts, model names, and which run a folder holds


def test_a_blank_image_is_not_staged_and_is_left_out_of_training(tmp_path):
    image, labels = scene()
    blank = np.full_like(image, 17)
    assert data.is_blank(blank) and data.is_blank(np.zeros((8, 8, 3))) and not data.is_blank(image)
    assert staging.stage_image_set(tmp_path / "s", "00001", blank.astype(float) / 255, labels) is None
    assert not (tmp_path / "s").exists()
    said = []
    kept = data.drop_blank([data.Sample("a", image, labels), data.Sample("b", blank, labels)], "annotated",
                           said.append)
    assert [s.name for s in kept] == ["a"] and said == ["warning: annotated image b is blank (no contrast): "
                                                        "left out of training"]


def test_the_image_count_a_run_needs_is_checked_before_it():
    from nucleai.train.run import check_image_count

    check_image_count(TrainOptions(), 2)
    check_image_count(TrainOptions(style=True), 3)
    for options, count, field in ((TrainOptions(), 1, "labels"), (TrainOptions(style=True), 2, "style")):
        with pytest.raises(InputError) as error:
            check_image_count(options, count)
        assert error.value.field == field


@pytest.mark.parametrize("name", ["", "  ", ".", "..", "../x", "a/b", "a\\b"])
def test_a_model_name_must_be_one_folder_name(tmp_path, name):
    from nucleai.train.run import model_folder

    with pytest.raises(InputError) as error:
        model_folder(tmp_path, name)
    assert error.value.field == "model_name"
    assert model_folder(tmp_path, " my model ") == tmp_path / "my model"


def test_a_checkpoint_is_resumed_only_by_the_run_it_records(tmp_path):
    from nucleai.train import loop, record

    options = TrainOptions(patch_size=32, seed=1)
    settings = record.run_settings(options, base="fluo_nuclei")
    samples = [data.Sample(f"s{i}", *scene(i)) for i in range(3)]
    fingerprint = record.data_fingerprint(samples[:2], samples[2:], [])
    record.write_record(tmp_path, settings, fingerprint)
    record.check_settings(tmp_path, {**settings, "seed": 9})  # no checkpoint yet: nothing to resume
    (tmp_path / loop.STATE_FILE).write_text("{}")
    # the budget of each call and the maximum epochs may change; style-only fields unused without styles
    same = TrainOptions(patch_size=32, seed=1, epochs=7, minutes=2.0, synthetic_share=0.4)
    record.check_settings(tmp_path, record.run_settings(same, base="fluo_nuclei"))
    record.check_data(tmp_path, record.data_fingerprint(samples[:2], samples[2:], []))
    with pytest.raises(InputError, match=r"settings differ: base fluo_nuclei -> none, batch_size 4 -> 2") as error:
        record.check_settings(tmp_path, record.run_settings(TrainOptions(patch_size=32, seed=1, batch_size=2)))
    assert error.value.field == "resume"
    changed = data.Sample("s1", samples[0].image, samples[1].labels)
    with pytest.raises(InputError, match="training images changed: s1; validation images added: s9"):
        record.check_data(tmp_path, record.data_fingerprint(
            [samples[0], changed], samples[2:] + [data.Sample("s9", *scene(9))], []))
    (tmp_path / record.RECORD_FILE).unlink()
    with pytest.raises(InputError, match="no training_run.json"):
        record.check_settings(tmp_path, settings)
    (tmp_path / "styles").mkdir()
    (tmp_path / "mine.txt").write_text("kept")
    record.clear_run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


# ------------------------------------------------------------------------------------------------
# stopping on request (CellProfiler's Stop Analysis): a complete model, or nothing


def test_a_run_stopped_after_an_epoch_is_a_complete_model_that_says_so(tmp_path):
    from nucleai import models
    from nucleai.predict import SegmentOptions, segment
    from nucleai.train import card, loop, record

    samples = [data.Sample(f"s{i}", *scene(i)) for i in range(3)]
    options = TrainOptions(steps_per_epoch=2, epochs=3, patch_size=32, batch_size=1, seed=4)
    out = tmp_path / "model"
    seen = []
    run = run_training(samples, out, options, base=tiny_model_dir(), on_progress=seen.append,
                       should_stop=lambda: bool(seen) and seen[-1].epoch == 2)
    training = run.detector.training
    assert training.stopped == "stopped" and training.epochs_done == 1 and training.best_epoch == 1
    assert [(p.epoch, p.step) for p in seen] == [(1, 1), (1, 2), (2, 1)]
    assert dict(run.summary())["Epochs"] == "1 (stopped on request; best epoch so far kept, run again to continue)"
    assert "stopped on request" in (out / card.CARD_FILE).read_text()
    spec = models.read_spec(out)
    assert (spec.prob_thresh, spec.nms_thresh) == (run.detector.prob_thresh, run.detector.nms_thresh)
    assert segment(samples[0].image, models.load(out), SegmentOptions()).labels.shape == samples[0].labels.shape
    # a stop before the next call's first epoch ends leaves the folder as it was
    kept = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert {loop.STATE_FILE, loop.BEST_WEIGHTS, "thresholds.json", "nucleai.json", card.CARD_FILE,
            record.RECORD_FILE} <= set(kept)
    with pytest.raises(loop.TrainingStopped):
        run_training(samples, out, options, base=tiny_model_dir(), should_stop=lambda: True)
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == kept
    # and the run continues where it was stopped
    again = run_training(samples, out, options, base=tiny_model_dir())
    assert again.detector.training.epochs_done == 3 and again.detector.training.stopped == "epochs"


def test_a_run_stopped_before_its_first_epoch_ends_leaves_nothing(tmp_path):
    from nucleai.train.loop import TrainingStopped

    samples = [data.Sample(f"s{i}", *scene(i)) for i in range(3)]
    options = TrainOptions(steps_per_epoch=2, epochs=3, patch_size=32, batch_size=1, seed=4)
    said = []
    for should_stop in (lambda: True, lambda: bool(said) and said[-1].step == 1):
        out = tmp_path / f"model{len(said)}"
        with pytest.raises(TrainingStopped):
            run_training(samples, out, options, base=tiny_model_dir(), should_stop=should_stop,
                         on_progress=said.append)
        assert list(out.iterdir()) == [], "nothing of the run is left"
