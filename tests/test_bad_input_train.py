"""Bad training input is refused with the setting, flag or field named (issue 15 point 1).

CellProfiler's number settings keep their last valid value when a pipeline file holds one out of
range, so a module reading ``setting.value`` trained silently with another value. StyleAugmentTrain
passes the numbers as typed into :class:`nucleai.train.options.TrainOptions`, whose checks are
the only ones: an out-of-range number fails validation naming its setting, in process and in a
headless run; the command line names the flag.
"""
import re

import pytest

import styleaugmenttrain
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_run import PipelineFailed, run_pipeline
from nucleai.cli import main
from nucleai.errors import InputError
from nucleai.train.options import TrainOptions
from tiny_model import tiny_model_dir


def module_with(folder, **typed):
    """A valid StyleAugmentTrain (style augmentation fine-tuning the tiny model), then each
    setting's text set as a pipeline file would hold it."""
    module = styleaugmenttrain.StyleAugmentTrain()
    module.set_module_num(1)
    module.image_name.value, module.truth_objects.value = "DNA", "Truth"
    module.output_folder.value = f"Elsewhere...|{folder}"
    module.base_source.value = styleaugmenttrain.MODEL_CUSTOM
    module.base_folder.value = f"Elsewhere...|{tiny_model_dir()}"
    module.generator_size.value = 64
    for name, text in typed.items():
        getattr(module, name).value_text = text
    return module


# each: a value the setting's own range refuses, which its ``value`` then hides
OUT_OF_RANGE = [
    ("val_fraction", "1.5"), ("invert_prob", "2"), ("patch_size", "12"), ("steps_per_epoch", "0"),
    ("epochs", "0"), ("batch_size", "0"), ("seed", "-1"), ("minutes", "-1"), ("n_styles", "-1"),
    ("min_per_style", "0"), ("pairs_per_style", "0"), ("share_percent", "60"), ("generator_minutes", "-2"),
    ("generator_size", "97"), ("epochs", "2.5"), ("batch_size", "many"),
]


@pytest.mark.parametrize("name, text", OUT_OF_RANGE)
def test_an_out_of_range_number_fails_validation_naming_its_setting(tmp_path, name, text):
    module = module_with(tmp_path, **{name: text})
    with pytest.raises(ValidationError, match=re.escape(f"setting '{getattr(module, name).text}'")) as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is getattr(module, name)


def test_the_typed_numbers_reach_the_options(tmp_path):
    options, base, first_pass = module_with(tmp_path, val_fraction="0.3", minutes="0", n_styles="2")._inputs()
    assert (options.val_fraction, options.minutes, options.n_styles) == (0.3, None, 2)
    assert base == tiny_model_dir() and first_pass is None


def test_a_headless_run_with_an_out_of_range_number_stops_naming_the_setting(tmp_path):
    import make_pipelines as mp

    mp.load_cellprofiler()
    train = mp.module("StyleAugmentTrain", image_name="DNA", truth_objects="GroundTruth", use_style=False,
                      model_name="bad")
    train.val_fraction.value_text = "1.5"
    pipeline = tmp_path / "bad.cppipe"
    mp.write([*mp.image_and_truth_input(), train, mp.export()], pipeline)
    (tmp_path / "images").mkdir()
    with pytest.raises(PipelineFailed, match="Validation fraction"):
        run_pipeline(pipeline, tmp_path / "images", tmp_path / "out", timeout=300)
    assert not (tmp_path / "out" / "bad" / "config.json").exists()


@pytest.mark.parametrize("flags, named", [
    (["--invert-prob", "2"], "--invert-prob: invert_prob must be in [0, 1]"),
    (["--patch-size", "64", "64", "64"], "--patch-size: patch_size takes one or two numbers"),
    (["--steps", "0"], "--steps: steps_per_epoch must be at least 1"),
    (["--val-fraction", "1"], "--val-fraction: val_fraction must be in (0, 1)"),
    (["--unlabeled", "x", "--synthetic-share", "0.6"], "--synthetic-share: synthetic_share must be in [0.1, 0.5]"),
    (["--style"], "--first-pass: style augmentation segments the unannotated images"),
])
def test_the_command_line_names_the_flag(tmp_path, capsys, flags, named):
    code = main(["train", "--images", str(tmp_path), "--labels", str(tmp_path), "--out", str(tmp_path / "m"),
                 *flags])
    assert code == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [
    ("learning_rate", 0), ("patience", -1), ("channels", 2), ("patch_size", "big"), ("minutes", float("nan")),
])
def test_every_option_error_carries_its_field(field, value):
    with pytest.raises(InputError) as error:
        TrainOptions(**{field: value})
    assert error.value.field == field


# ------------------------------------------------------------------------------------------------
# Issue 15 points 2-4: what is known before a run is checked before it; a failure at the end of
# a headless run is a non-zero exit with the other modules' spreadsheets written; blank images
# are left out; only the same run is resumed.


def write_image_sets(folder, n_annotated, n_empty=0, n_blank=0, shape=(64, 64)):
    """``<stem>.png`` 8-bit images with ``<stem>.tif`` label images: annotated ones, then ones
    with empty label images, then blank (constant) annotated ones. Returns the stems in order."""
    import numpy as np
    import skimage.io

    from nucleai.labelio import write_labels
    from tiny_model import synthetic_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    stems = []
    for index in range(n_annotated + n_empty + n_blank):
        image, labels = synthetic_image(rng, shape, n_objects=5)
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        if index >= n_annotated + n_empty:
            image[:] = 40
        if n_annotated <= index < n_annotated + n_empty:
            labels = np.zeros_like(labels)
        stem = f"set{index}"
        skimage.io.imsave(folder / f"{stem}.png", image, check_contrast=False)
        write_labels(folder / f"{stem}.tif", labels)
        stems.append(stem)
    return stems


def headless_train(tmp_path, images, **settings):
    """A headless run of images + ground truth -> StyleAugmentTrain (tiny budget, a new network,
    no styles unless set) -> ExportToSpreadsheet: (PipelineRun or None, exit log or None, output folder)."""
    import make_pipelines as mp

    mp.load_cellprofiler()
    values = dict(image_name="DNA", truth_objects="GroundTruth", use_style=False, model_name="m",
                  steps_per_epoch=1, epochs=1, patch_size=32, batch_size=1, val_fraction=0.3)
    values.update(settings)
    train = mp.module("StyleAugmentTrain", **{k: v for k, v in values.items() if k != "model_name"})
    train.model_name.value = values["model_name"]
    pipeline = tmp_path / "train.cppipe"
    mp.write([*mp.image_and_truth_input(), train, mp.export()], pipeline)
    out = tmp_path / "out"
    try:
        return run_pipeline(pipeline, images, out, timeout=600), None, out
    except PipelineFailed as failed:
        return None, str(failed), out


def image_table(out):
    import csv

    with open(out / "Image.csv", newline="") as handle:
        return {row["FileName_DNA"]: row for row in csv.DictReader(handle)}


def test_a_headless_run_where_no_image_set_has_objects_fails_at_the_end_with_the_spreadsheets(tmp_path):
    write_image_sets(tmp_path / "images", 0, n_empty=3)
    _, failure, out = headless_train(tmp_path, tmp_path / "images")
    assert failure is not None and "exit code 1" in failure
    assert "no image set had ground-truth objects" in failure and "'Select the ground-truth objects'" in failure
    assert "Failed to complete post_run" not in failure  # one line, not CellProfiler's traceback
    rows = image_table(out)  # ExportToSpreadsheet, after StyleAugmentTrain, still wrote its tables
    assert sorted(rows) == ["set0.png", "set1.png", "set2.png"]
    assert {row["StyleAugmentTrain_Annotated"] for row in rows.values()} == {"0"}
    assert not (out / "m" / "config.json").exists()


def test_a_blank_training_image_is_left_out_with_a_warning_and_a_flag(tmp_path):
    stems = write_image_sets(tmp_path / "images", 3, n_blank=1)
    run, failure, out = headless_train(tmp_path, tmp_path / "images")
    assert failure is None, failure
    blank = f"{stems[-1]}.png"
    assert f"({blank}): 'DNA' is blank (no contrast); left out of training" in run.log
    rows = image_table(out)
    assert {name: row["StyleAugmentTrain_Blank"] for name, row in rows.items()} == {
        f"{stem}.png": str(int(stem == stems[-1])) for stem in stems}
    assert (out / "m" / "weights_best.h5").is_file()
    assert len(list((out / "m" / "training_data" / "images").glob("*.tif"))) == 3


@pytest.mark.parametrize("name", ["../../x", "", "a/b", ".."])
def test_a_model_name_that_is_not_one_folder_name_fails_validation(tmp_path, name):
    module = module_with(tmp_path)
    module.model_name.value = name
    with pytest.raises(ValidationError, match="the model name must be one folder name") as error:
        module.validate_module(Pipeline())
    assert error.value.get_setting() is module.model_name


def test_a_headless_run_with_a_model_name_leaving_the_output_folder_stops_before_the_run(tmp_path):
    write_image_sets(tmp_path / "images", 2)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    _, failure, out = headless_train(tmp_path / "deep" / "er", tmp_path / "images", model_name="../../x")
    assert failure is not None and "'Model name'" in failure and "one folder name" in failure
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "er" / "out" / "Image.csv").exists()


def test_a_headless_run_into_a_folder_holding_another_model_stops_before_the_run(tmp_path):
    import shutil

    write_image_sets(tmp_path / "images", 2)
    (tmp_path / "out").mkdir()
    shutil.copytree(tiny_model_dir(), tmp_path / "out" / "m")
    _, failure, out = headless_train(tmp_path, tmp_path / "images")
    assert failure is not None and "already holds a model" in failure and "'Model name'" in failure
    assert not (out / "Image.csv").exists() and not (out / "m" / "training_data").exists()


def test_style_augmentation_with_too_few_image_sets_stops_before_the_run(tmp_path):
    write_image_sets(tmp_path / "images", 2)
    _, failure, out = headless_train(tmp_path, tmp_path / "images", use_style=True, generator_size=64,
                                     base_source=styleaugmenttrain.MODEL_CUSTOM,
                                     base_folder=f"Elsewhere...|{tiny_model_dir()}")
    assert failure is not None and "exit code 1" in failure
    assert "style augmentation needs unannotated image sets besides at least 2 annotated ones; the run has " \
           "only 2 (setting 'Use style augmentation?')" in failure
    assert not (out / "Image.csv").exists()


def train_args(data, out, *flags):
    return ["train", "--images", str(data), "--labels", str(data), "--out", str(out), "--steps", "1",
            "--epochs", "1", "--patch-size", "32", "--batch-size", "1", "--val-fraction", "0.3", *flags]


def cli_data(folder, **counts):
    """Images and label images in one folder for ``nucleai train`` (label images: ``<stem>.tif``
    beside ``<stem>.png``; --images reads the PNGs, --labels pairs the TIFFs by stem)."""
    write_image_sets(folder, **counts)
    (folder / "labels").mkdir()
    for path in folder.glob("*.tif"):
        path.rename(folder / "labels" / path.name)
    return folder


def test_training_on_empty_label_images_fails_before_training_leaving_no_folder(tmp_path, capsys):
    data = cli_data(tmp_path / "d", n_annotated=0, n_empty=3)
    args = train_args(data, tmp_path / "m")
    args[args.index("--labels") + 1] = str(data / "labels")
    assert main(args) == 2
    assert "--labels: every label image is empty (3 annotated images, no object in any)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_out_equal_to_images_is_refused(tmp_path, capsys):
    data = cli_data(tmp_path / "d", n_annotated=2)
    assert main(["train", "--images", str(data), "--labels", str(data / "labels"), "--out", str(data)]) == 2
    assert "--out must differ from --images" in capsys.readouterr().err
    assert not (data / "config.json").exists()


def test_only_the_same_run_is_resumed_and_restart_starts_afresh(tmp_path, capsys):
    import json

    data = cli_data(tmp_path / "d", n_annotated=3, n_blank=1)
    out = tmp_path / "m"

    def train(*flags):
        args = train_args(data, out, *flags)
        args[args.index("--labels") + 1] = str(data / "labels")
        code = main(args)
        return code, capsys.readouterr()

    code, printed = train()
    assert code == 0, printed.err
    assert "warning: annotated image set3 is blank (no contrast): left out of training" in printed.out
    code, printed = train("--seed", "4", "--patch-size", "16")
    assert code == 2
    assert ("another training run (settings differ: patch_size [32, 32] -> [16, 16], seed 0 -> 4)"
            in printed.err and "--restart starts afresh" in printed.err)
    assert json.loads((out / "train_state.json").read_text())["epochs_done"] == 1  # untouched
    code, printed = train("--epochs", "2", "--minutes", "5")  # the same run, continued
    assert code == 0 and "resuming after epoch 1" in printed.out
    assert json.loads((out / "train_state.json").read_text())["epochs_done"] == 2
    code, printed = train("--seed", "4", "--restart")
    assert code == 0 and "resuming" not in printed.out
    assert json.loads((out / "train_state.json").read_text())["epochs_done"] == 1
    assert json.loads((out / "training_run.json").read_text())["settings"]["seed"] == 4
    (data / "set0.png").unlink()  # other images: refused, naming them
    (data / "labels" / "set0.tif").unlink()
    code, printed = train("--seed", "4")
    assert code == 2 and "images removed: set0" in printed.err


def test_ctrl_c_stops_with_a_resumable_checkpoint_and_one_line(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    data = cli_data(tmp_path / "d", n_annotated=3)
    out = tmp_path / "m"
    args = train_args(data, out)
    args[args.index("--labels") + 1] = str(data / "labels")
    args[args.index("--epochs") + 1] = "1000"
    args += ["--patience", "0"]  # never stops by itself
    command = [sys.executable, "-m", "nucleai.cli", *args]
    # Shells start background jobs (a CI script run with &) with SIGINT ignored, and Python then
    # installs no Ctrl-C handler: give the run the default disposition a terminal would.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (out / "train_state.json").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    line = [text for text in stderr.splitlines() if "interrupted" in text]
    assert len(line) == 1 and "Traceback" not in stderr
    epochs = json.loads((out / "train_state.json").read_text())["epochs_done"]
    assert line[0] == (f"nucleai train: interrupted; {out} holds the checkpoint after epoch {epochs}: "
                       "run the same command again to continue")
    args[args.index("--epochs") + 1] = str(epochs + 1)
    resumed = subprocess.run([*command[:3], *args], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {epochs}" in resumed.stdout
