"""``nucleai refine`` (refine and --tune) and ``nucleai segment --refine``, with the tiny U-Net."""
import json
import shutil

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.io
import tifffile

from nucleai import labelio, metrics, models, predict
from nucleai.cli import main
from nucleai.refine import apply, read_parameters
from testdata import DEFAULT_PRECISION
from tiny_model import synthetic_image, tiny_model_dir
from tiny_unet import tiny_unet_dir

LENIENT = {"p1": 0.3, "p2": 10, "p3": 0.5, "p4": 1, "p5": 1, "p6": 0.3}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A copy of the tiny U-Net with lenient parameters in refine.json (tests may re-tune it)."""
    folder = tmp_path_factory.mktemp("unet") / "refine_model"
    shutil.copytree(tiny_unet_dir(), folder)
    (folder / "refine.json").write_text(json.dumps({"parameters": LENIENT}))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Images (PNG), ground truth and detections grown by 2 px (TIFF), same stems."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(21)
    for sub in ("images", "truth", "objects"):
        (root / sub).mkdir()
    for stem in ("a", "b", "c"):
        image, truth = synthetic_image(rng, (112, 128), n_objects=9)
        image = np.round((image - image.min()) / np.ptp(image) * 255).astype(np.uint8)
        skimage.io.imsave(root / "images" / f"{stem}.png", image, check_contrast=False)
        tifffile.imwrite(root / "truth" / f"{stem}.tif", truth)
        distance, (iy, ix) = ndi.distance_transform_edt(truth == 0, return_indices=True)
        tifffile.imwrite(root / "objects" / f"{stem}.tif", np.where(distance <= 2, truth[iy, ix], 0).astype(np.uint16))
    return root


def dsb(pred_dir, truth_dir):
    scores = [metrics.evaluate_image(labelio.read_labels(truth_dir / p.name), labelio.read_labels(p)).dsb_score
              for p in sorted(pred_dir.glob("*.tif"))]
    return float(np.mean(scores))


def test_refined_label_images_equal_the_backends_with_a_report(model_dir, data, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["refine", "--objects", str(data / "objects"), "--input", str(data / "images"),
                 "--model", str(model_dir), "--output", str(out), "--report", str(report)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif", "c.tif"]
    model = models.load(model_dir, kind="unet", precision=DEFAULT_PRECISION)
    for stem in "abc":
        image = skimage.io.imread(data / "images" / f"{stem}.png")
        objects = labelio.read_labels(data / "objects" / f"{stem}.tif")
        expected = apply.refine_image(image, objects, model).refinement
        np.testing.assert_array_equal(tifffile.imread(out / f"{stem}.tif"), expected.labels)
    assert dsb(out, data / "truth") > dsb(data / "objects", data / "truth") + 0.1
    written = json.loads(report.read_text())
    assert written["params"] == LENIENT
    entry = written["images"]["a"]
    assert entry["counts"]["input"] == 9 and len(entry["sources"]) == entry["counts"]["output"]
    assert all(len(ids) >= 1 for ids in entry["sources"].values())
    assert "3 of 3 images" in capsys.readouterr().out


def test_options_override_the_models_parameters(model_dir, data, tmp_path):
    out = tmp_path / "out"
    assert main(["refine", "--objects", str(data / "objects"), "--input", str(data / "images"),
                 "--model", str(model_dir), "--output", str(out), "--p2", "100000"]) == 0
    assert all(tifffile.imread(p).max() == 0 for p in out.glob("*.tif"))  # everything is "small"


def test_one_bad_image_does_not_stop_the_others(model_dir, data, tmp_path, capsys):
    objects = tmp_path / "objects"
    shutil.copytree(data / "objects", objects)
    tifffile.imwrite(objects / "b.tif", np.zeros((10, 10), np.uint16))  # wrong size
    tifffile.imwrite(objects / "z.tif", np.zeros((10, 10), np.uint16))  # no image
    out = tmp_path / "out"
    assert main(["refine", "--objects", str(objects), "--input", str(data / "images"),
                 "--model", str(model_dir), "--output", str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "c.tif"]
    err = capsys.readouterr().err
    assert "b.png: the objects are 10x10 but the image is 112x128" in err
    assert "z: no image of that stem" in err and "2 images failed" in err


@pytest.mark.parametrize("extra, message", [
    (["--p1", "1.5"], r"--p1: p1 must be in \[0.0, 1.0\], got 1.5"),
    (["--p4", "0.5"], "--p4: p4 must be a whole number"),
    (["--p2", "-3"], "--p2: p2 must be at least 0, got -3"),
    (["--tiles", "0x2"], "--tiles: tiles must be"),
    (["--channel", "-1"], "--channel: channel must be at least 0, got -1"),
    ([], "--output is needed"),
])
def test_bad_options_stop_before_any_image(model_dir, data, extra, message, capsys):
    argv = ["refine", "--objects", str(data / "objects"), "--input", str(data / "images"),
            "--model", str(model_dir)] + extra
    if extra:
        argv += ["--output", "/nonexistent/never/created"]
    assert main(argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_a_missing_or_wrong_model_is_reported(data, tmp_path, capsys):
    for model, message in ((tmp_path / "nowhere", "does not exist"), (tiny_model_dir(), "not a contour-refinement U-Net")):
        assert main(["refine", "--objects", str(data / "objects"), "--input", str(data / "images"),
                     "--model", str(model), "--output", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err


def test_tuning_writes_refine_json_and_improves_the_score(model_dir, data, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "refine.json").unlink()  # start from the published values
    argv = ["refine", "--tune", "--objects", str(data / "objects"), str(data / "objects"),
            "--input", str(data / "images"), "--truth", str(data / "truth"), "--model", str(folder),
            "--maxiter", "2", "--popsize", "2"]
    assert main(argv + ["--dry-run"]) == 0
    assert not (folder / "refine.json").exists()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6 images (2 object folders)" in out and "written to" in out
    params, source = read_parameters(folder)
    stored = json.loads((folder / "refine.json").read_text())["tuning"]
    assert source == "refine.json" and stored["images"] == 6 and stored["score"] >= stored["start_score"]
    refined = tmp_path / "refined"
    assert main(["refine", "--objects", str(data / "objects"), "--input", str(data / "images"),
                 "--model", str(folder), "--output", str(refined)]) == 0
    assert dsb(refined, data / "truth") == pytest.approx(stored["score"], abs=1e-4)


def test_tuning_needs_truth_for_every_image_and_no_fixed_parameters(model_dir, data, tmp_path, capsys):
    truth = tmp_path / "truth"
    shutil.copytree(data / "truth", truth)
    (truth / "c.tif").unlink()
    base = ["refine", "--tune", "--objects", str(data / "objects"), "--input", str(data / "images"),
            "--model", str(model_dir)]
    assert main(base) == 2 and "--tune needs --truth" in capsys.readouterr().err
    assert main(base + ["--truth", str(truth)]) == 2 and "no ground truth" in capsys.readouterr().err
    assert main(base + ["--truth", str(data / "truth"), "--p1", "0.2"]) == 2
    assert "cannot be combined with --tune" in capsys.readouterr().err


def test_segment_with_refine_equals_segment_then_refine(model_dir, data, tmp_path):
    detector = tiny_model_dir()
    direct, refined = tmp_path / "direct", tmp_path / "refined"
    assert main(["segment", "--model", str(detector), "--input", str(data / "images"),
                 "--output", str(direct)]) == 0
    assert main(["segment", "--model", str(detector), "--input", str(data / "images"),
                 "--output", str(refined), "--refine", str(model_dir)]) == 0
    model = models.load(model_dir, kind="unet", precision=DEFAULT_PRECISION)
    for stem in "abc":
        image = skimage.io.imread(data / "images" / f"{stem}.png")
        detected = predict.segment(image, models.load(detector, precision=DEFAULT_PRECISION)).labels
        np.testing.assert_array_equal(tifffile.imread(direct / f"{stem}.tif"), detected)
        expected = apply.refine_image(image, detected, model).refinement.labels
        np.testing.assert_array_equal(tifffile.imread(refined / f"{stem}.tif"), expected)


def test_segment_refuses_a_missing_refinement_model_before_any_image(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", "--model", str(tiny_model_dir()), "--input", str(data / "images"),
                 "--output", str(out), "--refine", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
