"""Bad input on the command line: a message naming the flag or file, never a traceback (issue 15).

Read as the list of what is guarded, in the issue's order:

* point 5: ``tune-thresholds`` refuses label images of another shape than their images;
* point 7: outputs that cannot be written (a path inside a file, a folder named as a file, a
  read-only folder), corrupt label TIFFs, corrupt ``--base`` weights; one bad image does not
  stop the others, and a re-run does not leave an old label file looking current;
* point 8: ``evaluate`` warns about masks and intensity images scored as labels, a missing
  refinement model lists the refinement models, channel messages count from 0 only.

Every case runs ``nucleai.cli.main`` as the command does (exit status 2 and the message on
stderr). Root ignores permission bits, so the read-only folder is made immutable with
``chattr +i`` when the tests run as root (``chmod`` otherwise); where neither works the test is
skipped, saying why.
"""
import contextlib
import os
import shutil
import subprocess

import numpy as np
import pytest
import skimage.io
import tifffile

from nucleai import predict
from nucleai.cli import main
from nucleai.errors import InputError
from nucleai.labelio import read_labels
from tiny_model import synthetic_image, tiny_model_dir

#: A file that starts like a TIFF and then is garbage (a truncated or corrupted download).
CORRUPT_TIFF = b"II*\x00 this is not the rest of a TIFF file"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two 96 x 96 images with their labels, as TIFFs of the same stems."""
    root = tmp_path_factory.mktemp("data")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for stem in "ab":
        image, truth = synthetic_image(rng, (96, 96))
        tifffile.imwrite(images / f"{stem}.tif", image)
        tifffile.imwrite(labels / f"{stem}.tif", truth)
    return images, labels


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("a file, not a folder")
    return path


@contextlib.contextmanager
def read_only(path):
    """``path`` (a file or folder) refusing writes, for root too: ``chattr +i`` as root (root
    ignores permission bits), ``chmod`` otherwise; skips the test where that does not work."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                            capture_output=True).returncode:
            pytest.skip("running as root and chattr +i does not work here: nothing refuses root")
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield path
        finally:
            path.chmod(mode)


@pytest.fixture
def read_only_folder(tmp_path):
    """An existing folder that refuses new files."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    with read_only(folder):
        yield folder


def _labels_folder(root, name, files):
    """A folder of label files: stem -> array (written as TIFF) or bytes (written as is)."""
    folder = root / name
    folder.mkdir()
    for stem, content in files.items():
        if isinstance(content, bytes):
            (folder / f"{stem}.tif").write_bytes(content)
        else:
            tifffile.imwrite(folder / f"{stem}.tif", content)
    return folder


def _fails(argv, capsys, message):
    """The command exits 2 with ``message`` on stderr (and no traceback escapes); what it printed."""
    assert main([str(a) for a in argv]) == 2
    printed = capsys.readouterr()
    assert message in printed.err, printed.err
    return printed


# --------------------------------------------------------------------------------------------
# Point 5: tune-thresholds and label images of another shape


@pytest.mark.parametrize("reshape", [lambda a: a[:80, :80], lambda a: np.pad(a, ((0, 8), (0, 8)))],
                         ids=["cropped", "padded"])
def test_tune_thresholds_refuses_labels_of_another_shape_and_writes_nothing(data, tmp_path, capsys, reshape):
    images, labels = data
    model = shutil.copytree(tiny_model_dir(), tmp_path / "model")
    before = (model / "thresholds.json").read_text()
    other = _labels_folder(tmp_path, "other", {s: reshape(tifffile.imread(labels / f"{s}.tif")) for s in "ab"})
    _fails(["tune-thresholds", "--model", model, "--images", images, "--labels", other, "--write",
            "--prob", "0.5", "--nms", "0.4"], capsys, "a.tif: shape")
    assert (model / "thresholds.json").read_text() == before


# --------------------------------------------------------------------------------------------
# Point 7: outputs that cannot be written


def test_segment_output_inside_a_file_is_refused_before_any_image(data, a_file, capsys):
    _fails(["segment", "--model", "any", "--input", data[0], "--output", a_file / "out"], capsys,
           f"--output {a_file / 'out'}: is inside the file {a_file}")


def test_segment_output_in_a_read_only_folder_is_refused(data, read_only_folder, capsys):
    _fails(["segment", "--model", "any", "--input", data[0], "--output", read_only_folder / "out"], capsys,
           f"--output {read_only_folder / 'out'}: cannot write into {read_only_folder}")


def test_merge_output_inside_a_file_is_refused(data, a_file, tmp_path, capsys):
    copy = shutil.copytree(data[1], tmp_path / "copy")
    _fails(["merge", "--inputs", data[1], copy, "--output", a_file / "out"], capsys,
           f"--output {a_file / 'out'}: is inside the file {a_file}")


def test_train_out_inside_a_file_is_refused_before_training(data, a_file, capsys):
    _fails(["train", "--images", data[0], "--labels", data[1], "--out", a_file / "model"], capsys,
           f"--out {a_file / 'model'}: is inside the file {a_file}")


@pytest.mark.parametrize("command", ["segment", "merge", "train"])
def test_an_invalid_output_path_is_refused(data, tmp_path, capsys, command):
    invalid = tmp_path / ("x" * 300) / "out"  # a name longer than file systems allow
    argv = {"segment": ["segment", "--model", "any", "--input", data[0], "--output", invalid],
            "merge": ["merge", "--inputs", data[1], shutil.copytree(data[1], tmp_path / "copy"), "--output", invalid],
            "train": ["train", "--images", data[0], "--labels", data[1], "--out", invalid]}[command]
    _fails(argv, capsys, "not a usable path (File name too long)")


def test_segment_timings_naming_a_folder_is_refused_before_any_image(data, tmp_path, capsys):
    _fails(["segment", "--model", "any", "--input", data[0], "--output", tmp_path / "out",
            "--timings", tmp_path], capsys, f"--timings {tmp_path}: is a folder")
    assert not (tmp_path / "out").exists()


def test_evaluate_csv_naming_a_folder_is_refused(data, tmp_path, capsys):
    _fails(["evaluate", "--pred", data[1], "--truth", data[1], "--csv", tmp_path], capsys,
           f"--csv {tmp_path}: is a folder")


def test_evaluate_json_inside_a_file_is_refused(data, a_file, capsys):
    _fails(["evaluate", "--pred", data[1], "--truth", data[1], "--json", a_file / "scores.json"], capsys,
           f"{a_file} is a file, not a folder")


def test_evaluate_json_into_a_read_only_folder_is_refused(data, read_only_folder, capsys):
    _fails(["evaluate", "--pred", data[1], "--truth", data[1], "--json", read_only_folder / "scores.json"],
           capsys, f"cannot write into {read_only_folder}")


def test_tune_thresholds_write_to_a_read_only_thresholds_file_is_refused_before_the_search(
        data, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir(), tmp_path / "model")
    with read_only(model / "thresholds.json"):
        printed = _fails(["tune-thresholds", "--model", model, "--images", data[0], "--labels", data[1],
                          "--write"], capsys, f"--write {model / 'thresholds.json'}: the file is not writable")
    assert "DSB score" not in printed.out


# --------------------------------------------------------------------------------------------
# Point 7: corrupt label TIFFs, corrupt base weights


def test_a_corrupt_label_tiff_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(CORRUPT_TIFF)
    with pytest.raises(InputError, match=r"broken\.tif: cannot read the label image"):
        read_labels(path)
    png = tmp_path / "broken.png"
    png.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=r"broken\.png: cannot read the label image"):
        read_labels(png)


def test_evaluate_names_a_corrupt_label_tiff(data, tmp_path, capsys):
    truth = _labels_folder(tmp_path, "truth", {"a": CORRUPT_TIFF, "b": tifffile.imread(data[1] / "b.tif")})
    _fails(["evaluate", "--pred", data[1], "--truth", truth], capsys,
           f"{truth / 'a.tif'}: cannot read the label image")


def test_merge_leaves_out_a_corrupt_label_tiff_and_merges_the_other_images(data, tmp_path, capsys):
    other = _labels_folder(tmp_path, "other", {"a": CORRUPT_TIFF, "b": tifffile.imread(data[1] / "b.tif")})
    out = tmp_path / "merged"
    _fails(["merge", "--inputs", data[1], other, "--output", out], capsys,
           f"{other / 'a.tif'}: cannot read the label image")
    assert sorted(p.name for p in out.iterdir()) == ["b.tif"]


def test_refine_leaves_out_a_corrupt_label_tiff_and_refines_the_other_images(data, tmp_path, capsys):
    from tiny_unet import tiny_unet_dir

    objects = _labels_folder(tmp_path, "objects", {"a": CORRUPT_TIFF, "b": tifffile.imread(data[1] / "b.tif")})
    out = tmp_path / "refined"
    _fails(["refine", "--objects", objects, "--input", data[0], "--model", tiny_unet_dir(), "--output", out],
           capsys, f"{objects / 'a.tif'}: cannot read the label image")
    assert sorted(p.name for p in out.iterdir()) == ["b.tif"]


def test_train_names_a_corrupt_label_tiff(data, tmp_path, capsys):
    labels = _labels_folder(tmp_path, "labels", {"a": CORRUPT_TIFF, "b": tifffile.imread(data[1] / "b.tif")})
    _fails(["train", "--images", data[0], "--labels", labels, "--out", tmp_path / "model"], capsys,
           f"{labels / 'a.tif'}: cannot read the label image")


def test_tune_thresholds_names_a_corrupt_label_tiff(data, tmp_path, capsys):
    labels = _labels_folder(tmp_path, "labels", {"a": CORRUPT_TIFF, "b": tifffile.imread(data[1] / "b.tif")})
    _fails(["tune-thresholds", "--model", tiny_model_dir(), "--images", data[0], "--labels", labels], capsys,
           f"{labels / 'a.tif'}: cannot read the label image")


def test_train_names_corrupt_base_weights(data, tmp_path, capsys):
    base = shutil.copytree(tiny_model_dir(), tmp_path / "base")
    (base / "weights_best.h5").write_bytes(b"not an HDF5 file")
    _fails(["train", "--images", data[0], "--labels", data[1], "--out", tmp_path / "model", "--base", base,
            "--patch-size", "64", "--batch-size", "1", "--steps", "1", "--epochs", "1", "--val-fraction", "0.5"],
           capsys, f"--base: {base / 'weights_best.h5'}: does not load")


# --------------------------------------------------------------------------------------------
# Point 7: one bad image does not stop the others; a re-run leaves no stale label file


def test_segment_one_unwritable_output_file_does_not_stop_the_other_images(data, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "a.tif").mkdir(parents=True)  # a folder where a.tif goes: refused for root too
    _fails(["segment", "--model", tiny_model_dir(), "--input", data[0], "--output", out], capsys,
           f"{out / 'a.tif'}: cannot write the label image")
    assert tifffile.imread(out / "b.tif").max() > 0


def test_segment_rerun_removes_the_old_label_file_of_an_image_that_now_fails(data, tmp_path, capsys):
    images = shutil.copytree(data[0], tmp_path / "images")
    out = tmp_path / "out"
    assert main(["segment", "--model", str(tiny_model_dir()), "--input", str(images), "--output", str(out)]) == 0
    (images / "a.tif").write_bytes(CORRUPT_TIFF)
    _fails(["segment", "--model", tiny_model_dir(), "--input", images, "--output", out], capsys,
           f"removed {out / 'a.tif'} from an earlier run")
    assert sorted(p.name for p in out.iterdir()) == ["b.tif"]


def test_merge_rerun_removes_the_old_label_file_of_an_image_that_now_fails(data, tmp_path, capsys):
    other = shutil.copytree(data[1], tmp_path / "other")
    out = tmp_path / "merged"
    assert main(["merge", "--inputs", str(data[1]), str(other), "--output", str(out)]) == 0
    (other / "a.tif").write_bytes(CORRUPT_TIFF)
    _fails(["merge", "--inputs", data[1], other, "--output", out], capsys,
           f"removed {out / 'a.tif'} from an earlier run")
    assert sorted(p.name for p in out.iterdir()) == ["b.tif"]


# --------------------------------------------------------------------------------------------
# Point 8: smaller


@pytest.mark.parametrize("kind", ["mask", "intensity"])
def test_evaluate_warns_about_a_mask_or_an_intensity_image_scored_as_labels(data, tmp_path, capsys, kind):
    truth = tifffile.imread(data[1] / "a.tif")
    if kind == "mask":
        wrong = np.where(truth > 0, 255, 0).astype(np.uint8)
    else:
        wrong = np.round(tifffile.imread(data[0] / "a.tif").clip(0, 1) * 255).astype(np.uint8)
    pred = _labels_folder(tmp_path, "pred", {"a": wrong})
    truths = _labels_folder(tmp_path, "truth", {"a": truth})
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truths)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {pred / 'a.tif'}:" in err and "separate regions" in err
    assert main(["evaluate", "--pred", str(truths), "--truth", str(truths)]) == 0
    assert "warning" not in capsys.readouterr().err  # real label images: no warning


def test_a_missing_refinement_model_lists_the_refinement_models(data, tmp_path, capsys, monkeypatch):
    bundled = tmp_path / "bundled"
    for name, config in (("some_detector", "{}"), ("some_refiner", '{"kind": "unet"}')):
        (bundled / name).mkdir(parents=True)
        (bundled / name / "config.json").write_text(config)
    monkeypatch.setenv("NUCLEAI_MODELS_DIR", str(bundled))
    printed = _fails(["refine", "--objects", data[1], "--input", data[0], "--model", "no_such_refiner",
                      "--output", tmp_path / "out"], capsys, "contour-refinement U-Nets: some_refiner")
    assert "some_detector" not in printed.err


def test_channel_messages_count_from_0_only(data, tmp_path, capsys):
    with pytest.raises(InputError, match=r"its only channel is 0 \(channels are counted from 0\)") as error:
        predict.select_channels(np.zeros((8, 8)), 1, channel=1)
    assert "1 channel" not in str(error.value)
    images = tmp_path / "colour"
    images.mkdir()
    grey = np.round(tifffile.imread(data[0] / "a.tif").clip(0, 1) * 255).astype(np.uint8)
    skimage.io.imsave(images / "a.png", np.stack([grey, grey // 2, grey // 3], axis=-1), check_contrast=False)
    _fails(["segment", "--model", tiny_model_dir(), "--input", images, "--output", tmp_path / "out",
            "--channel", "3"], capsys, "channel 3 requested but the image has 3 channels, 0 to 2 (channels are "
            "counted from 0)")
