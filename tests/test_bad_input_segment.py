"""Bad input: out-of-range numbers in a pipeline file fail validation, naming the setting (issue 15).

CellProfiler's number settings keep their last valid value when a pipeline file holds one out of
their range, so RunStarConvex once ran a probability threshold of 1.5 at 0.5, tiles 0 x 0 as
2 x 2, and TTAMerge accepted 0 votes, headless and with exit status 0. Each case here edits the
example pipeline's text, loads it into a real CellProfiler ``Pipeline`` and checks the module's
own validation (from the numbers as typed), the GUI's (``test_valid``) and the check a headless
run makes (``prepare_run``); two cases run the pipeline headless and demand a non-zero exit with
the setting named in the log.
"""
import io
import re

import pytest

from cellprofiler_core.image import ImageSetList
from cellprofiler_core.measurement import Measurements
from cellprofiler_core.pipeline import Pipeline, PrepareRunError
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_core.workspace import Workspace
from cellprofiler_run import PipelineFailed, run_pipeline
from testdata import EXAMPLES, IMAGES

STARCONVEX = EXAMPLES / "starconvex_nuclei.cppipe"
TTAMERGE = EXAMPLES / "ttamerge_nuclei.cppipe"
OWN_THRESHOLDS = {"Use the model's tuned thresholds?": "No"}

CASES = {
    "probability 1.5": (STARCONVEX, 5, {**OWN_THRESHOLDS, "Probability threshold": "1.5"},
                        "Probability threshold"),
    "overlap -0.2": (STARCONVEX, 5, {**OWN_THRESHOLDS, "Overlap threshold": "-0.2"}, "Overlap threshold"),
    "tiles 0x0": (STARCONVEX, 5, {"Tiling": "Fixed number of tiles", "Tiles along Y": "0", "Tiles along X": "0"},
                  "Tiles along Y"),
    "nucleus diameter 0": (STARCONVEX, 5, {"Rescale images to the model's nucleus size?": "Yes, nucleus diameter given",
                                           "Typical nucleus diameter (pixels)": "0"},
                           "Typical nucleus diameter (pixels)"),
    "colour channel 0": (STARCONVEX, 5, {"Channel to use for colour images": "0"}, "Channel to use for colour images"),
    "TTAMerge 0 votes": (TTAMERGE, 7, {"Keep objects found by": "A given number of versions",
                                       "Number of versions": "0"}, "Number of versions"),
}


def edited(path, module_num, values):
    """The pipeline text with ``values`` (setting text -> value) set in module ``module_num``."""
    blocks = path.read_text().split("\n\n")
    for index, block in enumerate(blocks):
        if f"[module_num:{module_num}|" in block:
            for text, value in values.items():
                block, count = re.subn(rf"^(    {re.escape(text)}):.*$", lambda m: f"{m.group(1)}:{value}",
                                       block, flags=re.M)
                assert count == 1, text
            blocks[index] = block
    return "\n\n".join(blocks)


def loaded_module(text, module_num):
    fill_modules()  # so that Pipeline.load finds the plugins
    pipeline = Pipeline()
    pipeline.load(io.StringIO(text))
    return pipeline, pipeline.modules()[module_num - 1]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_number_fails_validation_naming_its_setting(case):
    path, module_num, values, setting_text = CASES[case]
    pipeline, module = loaded_module(edited(path, module_num, values), module_num)
    setting = next(s for s in module.visible_settings() if s.text == setting_text)
    assert setting.value_text == values[setting_text]  # held as typed, though .value falls back
    # the module's own check, from the number as typed
    with pytest.raises(ValidationError, match=f"setting '{re.escape(setting_text)}'") as error:
        module.validate_module(pipeline)
    assert error.value.get_setting() is setting
    # the GUI's check
    with pytest.raises(ValidationError) as error:
        module.test_valid(pipeline)
    assert error.value.get_setting() is setting
    # what a headless run checks before the first image set
    reported = []
    pipeline.add_listener(lambda _, event: reported.append(event) if isinstance(event, PrepareRunError) else None)
    workspace = Workspace(pipeline, module, None, None, Measurements(), ImageSetList())
    assert module.prepare_run(workspace) is False
    assert [event.module for event in reported] == [module]
    assert re.match(f"^{module.module_name}: setting '{re.escape(setting_text)}'", reported[0].message)


def test_the_example_pipelines_pass_the_same_checks():
    for path, module_nums in ((STARCONVEX, (5,)), (TTAMERGE, (7, 8))):
        for module_num in module_nums:
            pipeline, module = loaded_module(path.read_text(), module_num)
            module.test_valid(pipeline)
            assert module.prepare_run(Workspace(pipeline, module, None, None, Measurements(), ImageSetList())) is True


@pytest.mark.parametrize("case", ["probability 1.5", "TTAMerge 0 votes"])
def test_a_headless_run_stops_with_a_non_zero_exit_naming_the_setting(case, tmp_path):
    path, module_num, values, setting_text = CASES[case]
    pipeline_file = tmp_path / "bad.cppipe"
    pipeline_file.write_text(edited(path, module_num, values))
    with pytest.raises(PipelineFailed, match="exit code 1") as error:
        run_pipeline(pipeline_file, IMAGES, tmp_path / "out")
    module_name = "RunStarConvex" if path == STARCONVEX else "TTAMerge"
    assert f"{module_name}: setting '{setting_text}': Must be at " in str(error.value)
    assert not list((tmp_path / "out").glob("*.csv"))  # stopped before the first image set
