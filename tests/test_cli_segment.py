"""``nucleai segment``: one label TIFF per image, same stem; clear errors; the model loaded once."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import tifffile

from nucleai import modality, models, predict
from nucleai.cli import main
from testdata import BRIGHTFIELD, DEFAULT_PRECISION, HISTOLOGY, IMAGES
from tiny_model import synthetic_image, tiny_model_dir

NUCLEAI = Path(sys.executable).with_name("nucleai")


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Two PNGs (8 and 16 bit), a float TIFF and an RGB PNG with grey content."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    images = [synthetic_image(rng, shape)[0] for shape in ((128, 128), (100, 150), (120, 90), (96, 96))]

    def scaled(image, top, dtype):
        return np.round((image - image.min()) / np.ptp(image) * top).astype(dtype)

    skimage.io.imsave(folder / "a.png", scaled(images[0], 255, np.uint8), check_contrast=False)
    skimage.io.imsave(folder / "b.png", scaled(images[1], 65535, np.uint16), check_contrast=False)
    tifffile.imwrite(folder / "c.tif", images[2])
    grey = scaled(images[3], 255, np.uint8)
    skimage.io.imsave(folder / "d.png", np.stack([grey] * 3, axis=-1), check_contrast=False)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_one_uint16_label_tiff_per_image_with_the_same_stem(model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "out" / "labels"  # created, parents included
    assert main(["segment", "--model", str(model_dir), "--input", str(image_dir),
                 "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif", "c.tif", "d.tif"]
    model = models.load(model_dir, precision=DEFAULT_PRECISION)
    for stem in "abcd":
        labels = tifffile.imread(out / f"{stem}.tif")
        assert labels.dtype == np.uint16
        source = next(image_dir.glob(f"{stem}.*"))
        image = tifffile.imread(source) if source.suffix == ".tif" else skimage.io.imread(source)
        if image.ndim == 3:
            image = image[..., 0]
        np.testing.assert_array_equal(labels, predict.segment(image, model).labels)
        assert labels.max() > 3
    assert "4 of 4 images" in capsys.readouterr().out


def test_options_reach_the_segmentation(model_dir, image_dir, tmp_path):
    out = tmp_path / "out"
    timings = tmp_path / "timings.json"
    assert main(["segment", "--model", str(model_dir), "--input", str(image_dir),
                 "--output", str(out), "--prob-thresh", "0.7", "--nms-thresh", "0.3",
                 "--tiles", "2x2", "--scale", "1.25", "--timings", str(timings)]) == 0
    model = models.load(model_dir, precision=DEFAULT_PRECISION)
    image = skimage.io.imread(image_dir / "a.png")
    expected = predict.segment(image, model, predict.SegmentOptions(prob_thresh=0.7, nms_thresh=0.3, tiles=(2, 2),
                                                                    scale=1.25))
    np.testing.assert_array_equal(tifffile.imread(out / "a.tif"), expected.labels)
    report = json.loads(timings.read_text())
    assert report["model_load_seconds"] >= 0 and report["failed"] == []
    assert [r["image"] for r in report["images"]] == ["a.png", "b.png", "c.tif", "d.png"]
    first = report["images"][0]
    assert first["tiles"] == [2, 2] and first["objects"] == expected.count
    assert set(first["stages"]) == {"read", "normalize", "network", "candidates", "nms",
                                    "render", "write"}


def test_a_bundled_model_is_found_by_name(model_dir, image_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(model_dir.parent))
    assert main(["segment", "--model", "fluo_nuclei", "--input", str(image_dir),
                 "--output", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.tif"))) == 4


def test_a_bad_image_is_reported_and_the_others_are_written(model_dir, image_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        (inputs / name).write_bytes((image_dir / name).read_bytes())
    skimage.io.imsave(inputs / "blank.png", np.full((64, 64), 9, np.uint8), check_contrast=False)
    (inputs / "broken.png").write_bytes(b"\x89PNG garbage")
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    skimage.io.imsave(inputs / "colour.png", rgb, check_contrast=False)
    out = tmp_path / "out"
    assert main(["segment", "--model", str(model_dir), "--input", str(inputs),
                 "--output", str(out)]) == 2
    # a constant image is no failure: an empty label image, a warning naming the file
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif", "blank.tif"]
    assert not tifffile.imread(out / "blank.tif").any()
    err = capsys.readouterr().err
    assert f"warning: {inputs / 'blank.png'}: the image is constant, nothing to segment" in err
    assert f"{inputs / 'broken.png'}: cannot read the image" in err
    assert f"{inputs / 'colour.png'}: the model takes 1 channel but the image has 3" in err
    assert "2 images failed" in err


@pytest.mark.parametrize("arguments, message", [
    (["--model", "no_such_model"], "no bundled model 'no_such_model'"),
    (["--tiles", "two"], "--tiles: tiles must be 'auto' or YxX"),
    (["--tiles", "0x0"], "--tiles: tiles must be 'auto' or YxX"),
    (["--prob-thresh", "1.5"], "--prob-thresh: prob_thresh must be in (0, 1), got 1.5"),
    (["--nms-thresh", "0"], "--nms-thresh: nms_thresh must be in (0, 1), got 0"),
    (["--scale", "0"], "--scale: scale must be above 0"),
    (["--channel", "-1"], "--channel: channel must be at least 0"),
])
def test_bad_arguments_stop_before_any_image(model_dir, image_dir, tmp_path, capsys,
                                             arguments, message):
    options = {"--model": str(model_dir), "--input": str(image_dir),
               "--output": str(tmp_path / "out")}
    options.update(zip(arguments[::2], arguments[1::2]))
    command = ["segment"] + [part for item in options.items() for part in item]
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_folder_problems_are_reported(model_dir, image_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["segment", "--model", str(model_dir), "--input", str(empty),
                 "--output", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["segment", "--model", str(model_dir), "--input", str(image_dir),
                 "--output", str(image_dir)]) == 2
    assert "--output must differ from --input" in capsys.readouterr().err
    assert main(["segment", "--model", str(tmp_path), "--input", str(image_dir),
                 "--output", str(tmp_path / "o")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_the_installed_command_runs(model_dir, image_dir, tmp_path):
    result = subprocess.run(
        [NUCLEAI, "segment", "--model", str(model_dir), "--input", str(image_dir),
         "--output", str(tmp_path)], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "4 of 4 images" in result.stdout
    assert len(list(tmp_path.glob("*.tif"))) == 4
    help_text = subprocess.run([NUCLEAI, "segment", "--help"], capture_output=True, text=True)
    for option in ("--model", "--input", "--output", "--prob-thresh", "--nms-thresh", "--tiles",
                   "--scale"):
        assert option in help_text.stdout


# ------------------------------------------------------------------------------------------------
# --model auto (nucleai.modality) and the warning for no objects in an image that is not blank


@pytest.fixture(scope="module")
def kinds_dir(tmp_path_factory):
    """One bundled example image of each kind."""
    folder = tmp_path_factory.mktemp("kinds")
    for source in (IMAGES / "nuclei_05040e2e.png", sorted(HISTOLOGY.glob("*.png"))[0],
                   sorted(BRIGHTFIELD.glob("*.png"))[0]):
        (folder / source.name).write_bytes(source.read_bytes())
    return folder


def test_model_auto_chooses_per_image_and_records_the_decision(kinds_dir, tmp_path, capsys):
    out, timings = tmp_path / "out", tmp_path / "timings.json"
    assert main(["segment", "--model", "auto", "--input", str(kinds_dir), "--output", str(out),
                 "--timings", str(timings)]) == 0
    printed = capsys.readouterr().out
    records = {r["image"]: r for r in json.loads(timings.read_text())["images"]}
    assert json.loads(timings.read_text())["model"] == "auto"
    expected_kinds = {"nuclei_05040e2e.png": "fluorescence", "histo_6d327ab4.png": "histology",
                      "brightfield_4e07a653.png": "brightfield"}
    for path in sorted(kinds_dir.iterdir()):
        image = skimage.io.imread(path)
        result, decision = modality.segment_auto(image, precision=DEFAULT_PRECISION)
        assert decision.kind == expected_kinds[path.name]
        np.testing.assert_array_equal(tifffile.imread(out / f"{path.stem}.tif"), result.labels)
        assert f"nucleai segment: {path.name}: {decision}" in printed
        record = records[path.name]
        assert (record["kind"], record["model"], record["preparation"]) == (
            decision.kind, decision.model, decision.preparation)
        assert record["evidence"]["background"] == pytest.approx(decision.evidence.background)
        assert record["objects"] == result.count > 5 and "choose" in record["stages"]
    assert "model auto: fluo_nuclei 1, histo_nuclei 2" in printed


def test_model_auto_stops_before_any_image_without_a_model_for_every_kind(kinds_dir, tmp_path, capsys,
                                                                          monkeypatch):
    only_fluo = tmp_path / "models"
    only_fluo.mkdir()
    (only_fluo / "fluo_nuclei").symlink_to(models.bundled_model_dir("fluo_nuclei"))
    monkeypatch.setenv(models.MODELS_DIR_ENV, str(only_fluo))
    assert main(["segment", "--model", "auto", "--input", str(kinds_dir), "--output", str(tmp_path / "o")]) == 2
    assert "no model for histology images: it needs histo_nuclei or versatile_nuclei" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_objects_in_an_image_that_is_not_blank_is_a_warning(kinds_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    brightfield = next(kinds_dir.glob("brightfield_*.png"))
    (inputs / brightfield.name).write_bytes(brightfield.read_bytes())
    assert main(["segment", "--model", "fluo_nuclei", "--prob-thresh", "0.999", "--input", str(inputs),
                 "--output", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {inputs / brightfield.name}: no objects found although the image is not blank (it looks "
            "like brightfield") in err
    assert "wrong polarity" in err
    assert not tifffile.imread(tmp_path / "out" / f"{brightfield.stem}.tif").any()
