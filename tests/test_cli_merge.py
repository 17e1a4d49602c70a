"""``nucleai merge``: label images of several folders merged per stem; clear errors."""
import csv

import numpy as np
import pytest
import tifffile

from nucleai import tta
from nucleai.cli import main


def box(labels, value, rows, cols):
    labels[rows[0] : rows[1], cols[0] : cols[1]] = value
    return labels


@pytest.fixture
def folders(tmp_path):
    """Three folders with images 'a' (three versions of two objects) and 'b'."""
    versions = []
    for shift in (0, 1, 2):
        a = box(np.zeros((20, 30), np.uint16), 1, (2, 10), (2 + shift, 10 + shift))
        if shift < 2:  # the second object is in two of the three folders
            box(a, 2, (12, 18), (15, 25))
        versions.append(a)
    paths = []
    for i, a in enumerate(versions):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        tifffile.imwrite(folder / "a.tif", a)
        tifffile.imwrite(folder / "b.tif", box(np.zeros((8, 8), np.uint8), 3, (1, 5), (1, 5)))
        paths.append(folder)
    return paths, versions


def test_each_stem_is_merged_across_the_folders(folders, tmp_path, capsys):
    paths, versions = folders
    out, table = tmp_path / "merged", tmp_path / "objects.csv"
    assert main(["merge", "--inputs", *map(str, paths), "--output", str(out),
                 "--table", str(table)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif"]
    expected = tta.merge_instances(versions)
    merged = tifffile.imread(out / "a.tif")
    assert merged.dtype == np.uint16
    np.testing.assert_array_equal(merged, expected.labels)
    assert expected.votes.tolist() == [3, 2]
    rows = list(csv.DictReader(open(table)))
    assert [(r["image"], r["object"], r["votes"]) for r in rows] == [
        ("a", "1", "3"), ("a", "2", "2"), ("b", "1", "3")]
    np.testing.assert_allclose(float(rows[0]["mean_iou"]), expected.mean_iou[0])
    assert "2 of 2 images, 3 objects (kept when found in at least 2 of 3 folders" in (
        capsys.readouterr().out)


def test_min_votes_and_the_iou_threshold_reach_the_merge(folders, tmp_path):
    paths, versions = folders
    out = tmp_path / "merged"
    assert main(["merge", "--inputs", *map(str, paths), "--output", str(out),
                 "--min-votes", "3", "--iou-threshold", "0.8"]) == 0
    expected = tta.merge_instances(versions, tta.MergeOptions(min_votes=3, iou_threshold=0.8))
    np.testing.assert_array_equal(tifffile.imread(out / "a.tif"), expected.labels)
    assert expected.count == 0  # the shifted boxes overlap by IoU 0.78 and 0.6 only


def test_a_missing_file_or_a_shape_mismatch_fails_that_image_only(folders, tmp_path, capsys):
    paths, _ = folders
    (paths[1] / "b.tif").unlink()
    tifffile.imwrite(paths[2] / "a.tif", np.zeros((21, 30), np.uint16))
    out = tmp_path / "merged"
    assert main(["merge", "--inputs", *map(str, paths), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"b: no b.* in {paths[1]}" in err
    assert f"a: label images of different shapes: {paths[0] / 'a.tif'} (20, 30)" in err
    assert f"{paths[2] / 'a.tif'} (21, 30)" in err
    assert "2 images failed" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--min-votes", "4"], "--min-votes: min_votes must be from 1 to 3"),
    (["--min-votes", "0"], "--min-votes: min_votes must be at least 1"),
    (["--iou-threshold", "0"], "--iou-threshold: iou_threshold must be in (0, 1]"),
])
def test_bad_arguments_stop_before_any_image_is_read(folders, tmp_path, capsys, extra, message):
    paths, _ = folders
    out = tmp_path / "merged"
    assert main(["merge", "--inputs", *map(str, paths), "--output", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_folders_that_cannot_be_merged_are_refused(folders, tmp_path, capsys):
    paths, _ = folders
    cases = [
        ([paths[0]], "--inputs needs at least two folders"),
        ([paths[0], paths[0]], "names the same folder twice"),
        ([paths[0], tmp_path / "nowhere"], "nowhere is not a folder"),
    ]
    for inputs, message in cases:
        assert main(["merge", "--inputs", *map(str, inputs), "--output", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    assert main(["merge", "--inputs", *map(str, paths), "--output", str(paths[1])]) == 2
    assert "--output must differ from every --inputs folder" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "z.tif", np.zeros((4, 4), np.uint16))
    assert main(["merge", "--inputs", str(paths[0]), str(other), "--output", str(tmp_path / "o")]) == 2
    assert "no file stem is present in every --inputs folder" in capsys.readouterr().err
