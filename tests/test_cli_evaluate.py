"""Tests of ``nucleai evaluate`` and of the label-image files it reads (nucleai.labelio)."""
import csv
import json

import numpy as np
import pytest
import skimage.io
import tifffile

from nucleai import labelio
from nucleai.cli import main
from nucleai.errors import InputError

from test_metrics import STRICT, hand_made_pair, random_rectangles

HAND_MADE_DSB = (6 * 0.2 + 2 / 11) / 10  # worked out in test_metrics.hand_made_pair


def save_png(path, labels):
    skimage.io.imsave(path, labels, check_contrast=False)


@pytest.fixture
def folders(tmp_path):
    """truth/ and pred/ with: a hand-made pair (TIFF, PNG prediction), a perfect pair, a pair
    empty on both sides, a ground truth without prediction and a prediction without truth."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    truth, pred = hand_made_pair()
    labelio.write_labels(truth_dir / "hand.tif", truth)
    save_png(pred_dir / "hand.png", pred.astype(np.uint16))
    labelio.write_labels(truth_dir / "perfect.tiff", truth)
    labelio.write_labels(pred_dir / "perfect.tif", truth)
    save_png(truth_dir / "empty.png", np.zeros((20, 30), np.uint8))
    labelio.write_labels(pred_dir / "empty.tif", np.zeros((20, 30), np.uint16))
    labelio.write_labels(truth_dir / "unpredicted.tif", truth)
    labelio.write_labels(pred_dir / "stray.tif", truth)
    (pred_dir / "notes.txt").write_text("not an image")
    return truth_dir, pred_dir


def test_evaluate_folders(folders, tmp_path, capsys):
    truth_dir, pred_dir = folders
    csv_path, json_path = tmp_path / "scores.csv", tmp_path / "scores.json"
    rc = main([
        "evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir),
        "--csv", str(csv_path), "--json", str(json_path),
    ])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "1 of 4 predictions missing, scored as empty: unpredicted" in err
    assert "1 predictions without ground truth, ignored: stray" in err
    expected = {"empty": 1.0, "hand": HAND_MADE_DSB, "perfect": 1.0, "unpredicted": 0.0}
    dataset = sum(expected.values()) / 4
    assert f"DSB score (mean over images and thresholds): {dataset:.4f}" in out
    assert "1 predictions missing" in out and "1 images empty on both sides" in out
    assert out.count("\n") > 10  # header, one row per threshold, mean row, notes

    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == sorted(expected)
    for row in rows:
        assert float(row["dsb_score"]) == pytest.approx(expected[row["image"]])
    by_image = {row["image"]: row for row in rows}
    assert by_image["unpredicted"]["prediction_missing"] == "True"
    assert by_image["unpredicted"]["pred_file"] == ""
    assert by_image["empty"]["mean_matched_iou"] == ""  # NaN: nothing matched
    assert by_image["hand"]["tp@0.5"] == "2" and by_image["hand"]["tp@0.95"] == "0"
    assert float(by_image["hand"]["score@0.8"]) == pytest.approx(1 / 11)
    assert by_image["hand"]["n_splits"] == "1" and by_image["hand"]["n_merges"] == "1"

    report = json.loads(json_path.read_text())
    assert report["missing_predictions"] == ["unpredicted"]
    assert report["predictions_without_truth"] == ["stray"]
    summary = report["summary"]
    assert summary["n_images"] == 4 and summary["n_empty_images"] == 1
    assert summary["dsb_score"] == pytest.approx(dataset)
    assert summary["mean_matched_iou"] == pytest.approx((0.85 + 1.0) / 2)
    assert summary["tp"][0] == 2 + 6
    assert [image["image"] for image in report["images"]] == sorted(expected)
    assert report["images"][0]["mean_matched_iou"] is None


def test_evaluate_against_stardist(tmp_path, capsys):
    """The CLI's dataset table equals stardist's per-image means (no image is empty)."""
    matching = pytest.importorskip("stardist.matching")
    rng = np.random.default_rng(5)
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    truths, preds = [], []
    for i in range(6):
        truth = random_rectangles(rng, (64, 80), 20, (4, 16))
        extra = random_rectangles(rng, (64, 80), 4, (4, 16)) * 50
        pred = np.maximum(np.roll(truth, i % 3, axis=1), extra)
        labelio.write_labels(tmp_path / "truth" / f"img{i}.tif", truth)
        labelio.write_labels(tmp_path / "pred" / f"img{i}.tif", pred)
        truths.append(truth)
        preds.append(pred)
    thresholds = [0.3, 0.5, 0.75]
    rc = main([
        "evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
        "--json", str(tmp_path / "r.json"), "--thresholds", *map(str, thresholds),
    ])
    assert rc == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    theirs = matching.matching_dataset(
        truths, preds, thresh=[t + STRICT for t in thresholds], by_image=True, show_progress=False
    )
    for i, stats in enumerate(theirs):
        assert [summary[k][i] for k in ("tp", "fp", "fn")] == [stats.tp, stats.fp, stats.fn]
        assert summary["score"][i] == pytest.approx(stats.accuracy)
        assert summary["precision"][i] == pytest.approx(stats.precision)
        assert summary["recall"][i] == pytest.approx(stats.recall)
        assert summary["f1"][i] == pytest.approx(stats.f1)


def test_evaluate_3d_stacks_and_float_tiff(tmp_path, capsys):
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    truth = np.zeros((4, 6, 6), np.uint16)
    truth[1:3, 1:3, 1:3] = 4
    pred = np.zeros((4, 6, 6), np.float32)  # as Fiji saves labels
    pred[1:3, 1:3, 1:4] = 2
    labelio.write_labels(tmp_path / "truth" / "stack.tif", truth)
    tifffile.imwrite(tmp_path / "pred" / "stack.tif", pred, photometric="minisblack")
    rc = main([
        "evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
        "--json", str(tmp_path / "r.json"),
    ])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["dsb_score"] == pytest.approx(0.4)  # IoU 8/12, see test_metrics


def run_cli(capsys, *argv):
    rc = main(["evaluate", *map(str, argv)])
    return rc, capsys.readouterr().err


def test_colour_png_is_refused_naming_the_file(folders, capsys):
    truth_dir, pred_dir = folders
    save_png(pred_dir / "hand.png", np.zeros((64, 40, 3), np.uint8))
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", truth_dir)
    assert rc == 2
    assert "hand.png" in err and "colour" in err and "Traceback" not in err


def test_shape_mismatch_names_both_files(folders, capsys):
    truth_dir, pred_dir = folders
    labelio.write_labels(pred_dir / "perfect.tif", np.zeros((5, 5), np.uint16))
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", truth_dir)
    assert rc == 2
    assert "perfect.tif" in err and "perfect.tiff" in err and "shape" in err


@pytest.mark.parametrize("thresholds", [["1.0"], ["0.5", "0.5"], ["-0.2"]])
def test_bad_thresholds(folders, capsys, thresholds):
    truth_dir, pred_dir = folders
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", truth_dir, "--thresholds", *thresholds)
    assert rc == 2 and "threshold" in err


def test_no_pairing_stems_is_an_error(tmp_path, capsys):
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    labelio.write_labels(tmp_path / "truth" / "img1.tif", np.ones((4, 4), np.uint16))
    labelio.write_labels(tmp_path / "pred" / "img1_labels.tif", np.ones((4, 4), np.uint16))
    rc, err = run_cli(capsys, "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    assert rc == 2 and "img1_labels.tif" in err and "img1.tif" in err


def test_missing_folders_and_outputs(folders, tmp_path, capsys):
    truth_dir, pred_dir = folders
    rc, err = run_cli(capsys, "--pred", tmp_path / "nowhere", "--truth", truth_dir)
    assert rc == 2 and "nowhere" in err
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", pred_dir / "empty.tif")
    assert rc == 2 and "not a folder" in err
    csv_path = tmp_path / "no" / "x.csv"
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", truth_dir, "--csv", csv_path)
    assert rc == 2 and "does not exist" in err
    (tmp_path / "blank").mkdir()
    rc, err = run_cli(capsys, "--pred", pred_dir, "--truth", tmp_path / "blank")
    assert rc == 2 and "no label images" in err


# labelio


def test_files_by_stem(tmp_path):
    for name in ("b.TIF", "a.png", "c.tiff", ".hidden.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.tif").mkdir()
    assert labelio.files_by_stem(tmp_path) == {
        "a": tmp_path / "a.png", "b": tmp_path / "b.TIF", "c": tmp_path / "c.tiff",
    }
    (tmp_path / "a.tif").write_bytes(b"")
    with pytest.raises(InputError, match="same stem"):
        labelio.files_by_stem(tmp_path)


@pytest.mark.parametrize(
    "labels, dtype",
    [
        (np.array([[0, 1], [65535, 3]], np.int64), np.uint16),
        (np.array([[0, 1], [65536, 3]], np.int64), np.uint32),
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.uint16),
    ],
)
def test_write_read_round_trip(tmp_path, labels, dtype):
    path = tmp_path / "labels.tif"
    labelio.write_labels(path, labels)
    back = labelio.read_labels(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, labels)


@pytest.mark.parametrize(
    "name, labels, message",
    [
        ("x.png", np.zeros((2, 2), np.uint16), "TIFF"),
        ("x.tif", np.full((2, 2), -1), "non-negative"),
        ("x.tif", np.zeros((2, 2), np.float32), "integers"),
        ("x.tif", np.zeros((2, 2, 2, 2), np.uint16), "2-D or 3-D"),
        ("x.tif", np.full((2, 2), 2**32), "uint32"),
    ],
)
def test_write_refuses(tmp_path, name, labels, message):
    with pytest.raises(InputError, match=message):
        labelio.write_labels(tmp_path / name, labels)


def test_read_refuses(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="rgb.tif.*colour/channel"):
        labelio.read_labels(tmp_path / "rgb.tif")
    four_d = np.zeros((2, 2, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "4d.tif", four_d, photometric="minisblack")
    with pytest.raises(InputError, match="4d.tif.*4-D"):
        labelio.read_labels(tmp_path / "4d.tif")
    tifffile.imwrite(tmp_path / "half.tif", np.full((4, 4), 0.5, np.float32))
    with pytest.raises(InputError, match="half.tif.*non-integer"):
        labelio.read_labels(tmp_path / "half.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.full((4, 4), -3, np.int16))
    with pytest.raises(InputError, match="neg.tif.*negative"):
        labelio.read_labels(tmp_path / "neg.tif")
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="x.jpg"):
        labelio.read_labels(tmp_path / "x.jpg")
