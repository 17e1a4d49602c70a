"""Out-of-range refinement parameters are refused, naming the setting or field (issue 15, point 1).

CellProfiler's number settings keep their last valid value when a pipeline file holds one out of
range, so RefineContoursUNet used to refine with the published values and say nothing. The
module now builds the backend's :class:`~nucleai.refine.apply.RefineOptions` from the values as
typed, in ``validate_module`` and, since a headless run validates no module, in ``prepare_run``.
"""
import io
import re

import pytest

from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.utilities.core.modules import fill_modules
from cellprofiler_run import PipelineFailed, run_pipeline
from nucleai.errors import InputError
from nucleai.refine.apply import RefineOptions
from testdata import EXAMPLES, IMAGES

PIPELINE = EXAMPLES / "refine_nuclei.cppipe"
OWN_PARAMETERS = "Use the model's tuned parameters?:"
#: Each bad value, with the setting text it must be reported under.
BAD_VALUES = {
    "p1": ("Merge when a neighbour touches more than this share of the contour (p1)", "5", "0.17"),
    "p2": ("Minimum object size, pixels (p2)", "-3", "44"),
    "p3": ("Probability threshold of the contour move (p3)", "2", "0.9375"),
    "p4": ("Largest inward contour move, pixels (p4)", "-1", "1"),
    "p5": ("Largest outward contour move, pixels (p5)", "100", "1"),
    "p6": ("Minimum mean probability of an object (p6)", "-1", "0.8"),
}


def pipeline_text(name, value):
    """The example refinement pipeline with its own parameters and ``name`` set to ``value``."""
    text, _, published = BAD_VALUES[name]
    original = PIPELINE.read_text()
    for line in (f"{OWN_PARAMETERS}Yes", f"{text}:{published}"):
        assert original.count(line) == 1, line
    return original.replace(f"{OWN_PARAMETERS}Yes", f"{OWN_PARAMETERS}No").replace(
        f"{text}:{published}", f"{text}:{value}")


def refine_module(text):
    fill_modules()
    pipeline = Pipeline()
    pipeline.load(io.StringIO(text))
    (module,) = [m for m in pipeline.modules() if m.module_name == "RefineContoursUNet"]
    return pipeline, module


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_pipeline_with_an_out_of_range_parameter_fails_validation_naming_the_setting(name):
    text, value, published = BAD_VALUES[name]
    pipeline, module = refine_module(pipeline_text(name, value))
    setting = getattr(module, name)
    # what CellProfiler does with the number: the text as typed, the value the last valid one
    assert setting.value_text == value and setting.value == pytest.approx(float(published))
    with pytest.raises(ValidationError, match=rf"setting '{re.escape(text)}': {name} must be") as error:
        module.validate_module(pipeline)
    assert error.value.get_setting() is setting


def test_the_parameters_are_not_checked_while_the_models_are_used():
    pipeline, module = refine_module(pipeline_text("p5", "100").replace(
        f"{OWN_PARAMETERS}No", f"{OWN_PARAMETERS}Yes"))
    assert module.refine_options() == RefineOptions(channel=0)  # channel 1 of the settings


def test_a_headless_run_with_an_out_of_range_parameter_stops_naming_the_setting(tmp_path):
    broken = tmp_path / "bad_p2.cppipe"
    broken.write_text(pipeline_text("p2", "-3"))
    with pytest.raises(PipelineFailed, match="exit code 1") as failure:
        run_pipeline(broken, IMAGES, tmp_path / "out")
    log = str(failure.value)
    assert "RefineContoursUNet: setting 'Minimum object size, pixels (p2)'" in log
    assert not list((tmp_path / "out").glob("*.tiff"))  # stopped before the first image


@pytest.mark.parametrize("options, field", [
    ({"p1": 5}, "p1"), ({"p2": -3}, "p2"), ({"p3": 2}, "p3"), ({"p4": -1}, "p4"), ({"p5": 100}, "p5"),
    ({"p6": -1}, "p6"), ({"p4": 1.5}, "p4"), ({"p2": "many"}, "p2"), ({"tiles": (0, 2)}, "tiles"),
    ({"tiles": "2by2"}, "tiles"), ({"channel": -1}, "channel"), ({"channel": 0.5}, "channel"),
])
def test_the_options_name_the_field_at_fault(options, field):
    with pytest.raises(InputError) as error:
        RefineOptions(**options)
    assert error.value.field == field and str(error.value).startswith(field)


def test_the_options_normalise_what_they_accept():
    options = RefineOptions(p2=44.0, p1=1, tiles="2x3", channel=2.0)
    assert options.p2 == 44 and isinstance(options.p2, int) and options.p1 == 1.0
    assert options.tiles == (2, 3) and options.channel == 2 and isinstance(options.channel, int)
    assert options.given == {"p1": 1.0, "p2": 44}
    assert options.parameters({"p1": 0.5, "p2": 9, "p3": 0.7}) == {"p1": 1.0, "p2": 44, "p3": 0.7}
