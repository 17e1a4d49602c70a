"""Model folders: finding them, clear errors for broken ones, loading once, stardist's network."""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import nucleai
from nucleai import models
from nucleai.errors import InputError
from tiny_model import NMS_THRESH, PROB_THRESH, tiny_model_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture
def copy_of(model_dir, tmp_path):
    """A fresh copy of the tiny model folder, to break in a test."""
    def make(name="model"):
        target = tmp_path / name
        shutil.copytree(model_dir, target)
        return target
    return make


def test_models_dir_is_the_repos_models_folder_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(models.MODELS_DIR_ENV, raising=False)
    assert models.models_dir() == REPO / "models"
    assert models.models_dir() == Path(nucleai.__file__).resolve().parents[2] / "models"
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path))
    assert models.models_dir() == tmp_path


def test_a_bundled_model_is_found_by_name_and_a_folder_by_path(model_dir, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    assert models.bundled_models() == ["fluo_nuclei"]
    assert models.locate("fluo_nuclei") == model_dir.resolve()
    assert models.locate(str(model_dir)) == model_dir.resolve()
    assert models.locate(model_dir) == model_dir.resolve()


def test_a_bundled_name_wins_over_a_local_folder_unless_written_as_a_path(
        model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fluo_nuclei").mkdir()
    (tmp_path / "mine").mkdir()
    assert models.locate("fluo_nuclei") == model_dir.resolve()
    assert models.locate("./fluo_nuclei") == (tmp_path / "fluo_nuclei").resolve()
    assert models.locate("mine") == (tmp_path / "mine").resolve()
    assert models.bundled_model_dir("fluo_nuclei") == model_dir.resolve()
    with pytest.raises(InputError, match="no bundled model 'mine'"):
        models.bundled_model_dir("mine")


def test_without_a_models_folder_the_error_says_how_to_point_at_one(monkeypatch, tmp_path):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(InputError, match="set NUCLEAI_MODELS_DIR"):
        models.locate("fluo_nuclei")


def test_an_unknown_model_names_what_exists(model_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    with pytest.raises(InputError, match="no bundled model 'fluo_nucleii'.*bundled star-convex models: fluo_nuclei"):
        models.locate("fluo_nucleii")
    with pytest.raises(InputError, match="does not exist"):
        models.locate(str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        models.locate(str(tmp_path / "file"))


def test_the_spec_reads_config_thresholds_weights_and_diameter(model_dir):
    spec = models.read_spec(model_dir)
    assert (spec.prob_thresh, spec.nms_thresh) == (PROB_THRESH, NMS_THRESH)
    assert spec.thresholds_from == "thresholds.json"
    assert spec.weights.name == "weights_best.h5"
    assert spec.n_rays == 16 and spec.grid == (2, 2) and spec.n_channel_in == 1
    assert spec.div_by == (8, 8) == models.div_by(spec.config)  # unet_pool 2 ** depth 2 * grid 2
    assert spec.object_diameter > 0


def test_without_thresholds_json_stardists_defaults_apply(copy_of):
    folder = copy_of()
    (folder / "thresholds.json").unlink()
    spec = models.read_spec(folder)
    assert (spec.prob_thresh, spec.nms_thresh, spec.thresholds_from) == (0.5, 0.4, "default")


def test_weights_last_is_used_without_weights_best(copy_of):
    folder = copy_of()
    (folder / "weights_best.h5").unlink()
    assert models.read_spec(folder).weights.name == "weights_last.h5"


@pytest.mark.parametrize("breakage, message", [
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (lambda f: (f / "config.json").write_text("{not json"), r"config.json: not valid JSON"),
    (lambda f: (f / "config.json").write_text("[1, 2]"), r"config.json: a JSON object"),
    (lambda f: (f / "config.json").write_text('{"n_dim": 2}'), r"config.json: missing axes"),
    (lambda f: _edit_config(f, n_dim=3), r"a 3-D model"),
    (lambda f: _edit_config(f, backbone="resnet"), r"only 'unet'"),
    (lambda f: [(f / n).unlink() for n in ("weights_best.h5", "weights_last.h5")],
     r"has no weights_best.h5 or weights_last.h5"),
    (lambda f: (f / "thresholds.json").write_text('{"prob": 1.5, "nms": 0.3}'),
     r"thresholds.json: 'prob' must be a number between 0 and 1"),
    (lambda f: (f / "nucleai.json").write_text('{"object_diameter": -3}'),
     r"nucleai.json: 'object_diameter' must be a positive number"),
])
def test_a_broken_folder_is_reported_naming_the_file(copy_of, breakage, message):
    folder = copy_of()
    breakage(folder)
    with pytest.raises(InputError, match=message) as error:
        models.read_spec(folder)
    assert str(folder) in str(error.value)


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_only_checkpoints_named_otherwise_are_listed(copy_of):
    folder = copy_of()
    (folder / "weights_best.h5").rename(folder / "weights_now.h5")
    (folder / "weights_last.h5").unlink()
    with pytest.raises(InputError, match=r"found only weights_now.h5"):
        models.read_spec(folder)


def test_truncated_weights_are_reported(copy_of):
    folder = copy_of()
    weights = folder / "weights_best.h5"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(InputError, match=r"weights_best.h5: the weights do not load"):
        models.load(folder)


def test_weights_of_another_architecture_are_reported(copy_of):
    folder = copy_of()
    _edit_config(folder, unet_n_filter_base=16)
    with pytest.raises(InputError, match=r"weights_best.h5: the weights do not load"):
        models.load(folder)


def test_a_config_stardist_cannot_build_is_reported(copy_of):
    folder = copy_of()
    _edit_config(folder, unet_n_depth=-1)
    with pytest.raises(InputError, match=r"config.json"):
        models.load(folder)


def test_an_install_without_tensorflow_says_what_to_install(copy_of, monkeypatch):
    # TensorFlow is an extra of the distribution; stardist's model module cannot import without it.
    monkeypatch.setitem(sys.modules, "stardist.models", None)
    with pytest.raises(InputError, match=r"needs TensorFlow and stardist.*pip install tensorflow-cpu"):
        models.load(copy_of())


def test_the_model_is_loaded_once_and_reloaded_when_its_files_change(copy_of):
    folder = copy_of()
    first = models.load(folder)
    assert models.load(str(folder)) is first
    weights = folder / "weights_best.h5"
    stamp = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(stamp, stamp))
    second = models.load(folder)
    assert second is not first
    assert models.load(folder) is second
    assert models.release() >= 1
    assert models.load(folder) is not second


def test_the_network_gives_stardists_outputs_exactly(model_dir):
    from stardist.models import StarDist2D

    model = models.load(model_dir)
    reference = StarDist2D(None, name=model_dir.name, basedir=str(model_dir.parent))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 72, 1)).astype(np.float32)
    prob, dist = model.predict_maps(x)
    ref_prob, ref_dist = reference.keras_model.predict(x[np.newaxis], verbose=0)
    np.testing.assert_array_equal(prob, ref_prob[0, ..., 0])
    np.testing.assert_array_equal(dist, ref_dist[0])
    assert prob.shape == (48, 36) and dist.shape == (48, 36, 16)


def test_the_tile_overlap_is_the_receptive_field(model_dir):
    model = models.load(model_dir)
    overlap = model.tile_overlap
    assert len(overlap) == 2 and all(0 < o < 128 for o in overlap)
