"""nucleai.models as the one model-folder layer of every kind: finding a folder of a kind, one
cache for all kinds that a caller can release, one line logged per build, one div_by rule."""
import json
import logging
import shutil

import pytest

from nucleai import models
from nucleai.errors import InputError
from nucleai.refine import PUBLISHED
from tiny_model import tiny_model_dir
from tiny_unet import tiny_unet_dir


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    """A models folder holding a detector (fluo_nuclei) and a refinement U-Net (fluo_refine)."""
    folder = tmp_path / "bundled"
    folder.mkdir()
    shutil.copytree(tiny_model_dir(), folder / "fluo_nuclei")
    shutil.copytree(tiny_unet_dir(), folder / "fluo_refine")
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(folder))
    return folder


def test_bundled_models_are_listed_per_kind(bundled):
    assert models.bundled_models() == ["fluo_nuclei"]
    assert models.bundled_models("unet") == ["fluo_refine"]
    assert models.bundled_models("generator") == []
    with pytest.raises(ValueError, match="unknown model kind"):
        models.bundled_models("detector")


@pytest.mark.parametrize("locate", [models.locate, models.bundled_model_dir])
def test_a_missing_refinement_model_lists_only_refinement_models(bundled, locate):
    with pytest.raises(InputError, match="bundled contour-refinement U-Nets: fluo_refine\\)") as error:
        locate("fluo_refined", kind="unet")
    assert "fluo_nuclei" not in str(error.value)
    with pytest.raises(InputError, match="bundled star-convex models: fluo_nuclei\\)") as error:
        locate("fluo_nucleii", kind="starconvex")
    assert "fluo_refine" not in str(error.value)


def test_a_folder_of_another_kind_is_refused_saying_what_it_is(bundled):
    with pytest.raises(InputError, match="a contour-refinement U-Net, not a star-convex model"):
        models.read_spec("fluo_refine")
    with pytest.raises(InputError, match="a star-convex model, not a contour-refinement U-Net"):
        models.read_spec("fluo_nuclei", kind="unet")


def test_one_cache_loads_once_and_release_forces_a_rebuild(bundled):
    models.release()
    detector = models.load("fluo_nuclei")
    refiner = models.load("fluo_refine", kind="unet")
    assert models.load(bundled / "fluo_nuclei") is detector
    assert models.load("fluo_refine", kind="unet") is refiner
    assert models.release("fluo_refine", kind="unet") == 1
    assert models.release("fluo_refine", kind="unet") == 0
    assert models.load("fluo_nuclei") is detector  # only the one released
    rebuilt = models.load("fluo_refine", kind="unet")
    assert rebuilt is not refiner
    assert models.release() == 2
    assert models.load("fluo_nuclei") is not detector


def test_retuned_parameters_give_a_new_model_and_leave_the_old_one_alone(bundled):
    first = models.load("fluo_refine", kind="unet")
    assert first.spec.params == PUBLISHED
    (bundled / "fluo_refine" / "refine.json").write_text(json.dumps({"parameters": {"p2": 7}}))
    retuned = models.load("fluo_refine", kind="unet")
    assert retuned is not first and retuned.spec.params["p2"] == 7
    assert first.spec.params == PUBLISHED and first.spec.params_from == "published"
    assert models.load("fluo_refine", kind="unet") is retuned


def test_a_build_logs_one_line_and_a_cache_hit_none(bundled, caplog):
    models.release()
    with caplog.at_level(logging.INFO, logger="nucleai"):
        models.load("fluo_refine", kind="unet")
        models.load("fluo_refine", kind="unet")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("nucleai")]
    assert len(lines) == 1, lines
    assert "fluo_refine" in lines[0] and str(bundled / "fluo_refine") in lines[0]
    assert lines[0].endswith(" s, float32 (chosen)")


def test_every_spec_has_the_common_protocol(bundled):
    for name, kind, channels in (("fluo_nuclei", "starconvex", 1), ("fluo_refine", "unet", 1)):
        spec = models.read_spec(name, kind)
        assert spec.path == (bundled / name).resolve() and spec.name == name
        assert spec.kind == kind and spec.n_channel_in == channels
        assert spec.weights in spec.files() and spec.path / models.CONFIG_FILE in spec.files()
        assert spec.div_by == models.div_by(spec.config)


def test_div_by_is_stardists_rule_with_stardists_defaults():
    assert models.div_by({"unet_n_depth": 3, "unet_pool": [2, 2], "grid": [2, 2]}) == (16, 16)
    assert models.div_by({"unet_n_depth": 2, "unet_pool": [2, 2], "grid": [1, 2]}) == (4, 8)
    assert models.div_by({}) == (8, 8)  # Config2D: depth 3, pool 2, grid 1
    assert models.div_by({"kind": "unet", "unet_n_depth": 2}) == (4, 4)  # a refinement U-Net
