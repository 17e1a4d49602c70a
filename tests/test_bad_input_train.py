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
