"""Style-transfer augmentation end to end at a tiny budget, and ``nucleai train --unlabeled``.

Two image kinds of synthetic blobs: the annotated training images are bright blobs on dark
(fluorescence-like), the unannotated target images dark blobs on a bright, tinted background
(histology-like). The tiny test model (grey, bright blobs) makes the first pass, widened to
colour for a 3-channel detector.
"""
import json

import numpy as np
import pytest
import tifffile

from nucleai import models
from nucleai.cli import main
from nucleai.errors import InputError
from nucleai.train import loop, styletransfer
from nucleai.train.data import Sample
from nucleai.train.pix2pix import GeneratorSettings
from tiny_model import synthetic_image, tiny_model_dir

GENERATOR = GeneratorSettings(size=32, n_filters=4, depth=3, steps=3, minutes=1.0)
STYLE = styletransfer.StyleSettings(k=1, min_cluster_size=2, pairs_per_style=3, share=0.5, generator=GENERATOR)
SETTINGS = loop.TrainSettings(patch_size=(64, 64), batch_size=2, steps_per_epoch=2, epochs=1)


def fluorescence(n, seed):
    rng = np.random.default_rng(seed)
    return [Sample(f"fluo{seed}_{i}", *synthetic_image(rng, (96, 96), 8)) for i in range(n)]


def histology(n, seed):
    """Dark purple blobs on a bright pink background (RGB uint8), labels kept for checks."""
    samples = []
    for sample in fluorescence(n, seed):
        grey = np.clip(sample.image, 0, 1)
        rgb = 255 - grey[..., None] * np.array([120.0, 200.0, 90.0])
        samples.append(Sample(sample.name.replace("fluo", "histo"), rgb.astype(np.uint8), sample.labels))
    return samples


def test_dark_objects_detects_bright_backgrounds():
    assert styletransfer.dark_objects(histology(1, 0)[0].image)
    assert not styletransfer.dark_objects(fluorescence(1, 0)[0].image)


def test_first_pass_gives_a_grey_model_the_haematoxylin_density_of_dark_objects():
    model = models.load(tiny_model_dir())
    sample = histology(1, 3)[0]
    labels = styletransfer.first_pass_labels(model, [sample.image], log=lambda m: None)[0]
    assert labels.shape == sample.labels.shape and labels.max() >= 3


@pytest.fixture(scope="module")
def styled(tmp_path_factory):
    out = tmp_path_factory.mktemp("styled") / "model"
    unlabeled = [Sample(s.name, s.image, None) for s in histology(4, 1)]
    result = styletransfer.train_with_styles(
        fluorescence(3, 0), fluorescence(1, 2), out, n_channels=3, settings=SETTINGS, unlabeled=unlabeled,
        style=STYLE, base=tiny_model_dir(), progress=False,
    )
    return out, result


def test_styles_make_synthetic_pairs_and_a_grid_kept_in_the_model_folder(styled):
    out, result = styled
    report = result.styles
    assert report.k == 1 and len(report.kept) == 1 and report.dropped == []
    assert report.kept[0]["unlabeled"] == 4 and report.kept[0]["annotated"] == 0  # fluorescence is not this style
    assert len(report.synthetic) == 3
    for sample in report.synthetic:
        assert sample.image.shape == sample.labels.shape + (3,) and sample.image.dtype == np.uint8
        assert sample.labels.max() >= 1
    assert all(grid.is_file() and grid.stat().st_size > 1000 for grid in report.grids)
    styles = out / styletransfer.STYLES_DIR
    assert len(list((styles / "synthetic" / "images").glob("*.tif"))) == 3
    assert models.read_spec(styles / "style_0", kind="generator").n_channels == 3
    card = (out / "MODEL.md").read_text()
    assert "style clusters of the unannotated images: 1" in card and "synthetic pairs in training: 3" in card
    assert models.load(out).spec.n_channel_in == 3


def test_a_resumed_run_reuses_the_synthetic_pairs(styled, tmp_path):
    out, result = styled
    messages = []
    again = styletransfer.synthesise_styles([], [], out / styletransfer.STYLES_DIR, n_channels=3,
                                            settings=STYLE, log=messages.append)
    assert [s.name for s in again.synthetic] == [s.name for s in result.styles.synthetic]
    np.testing.assert_array_equal(again.synthetic[0].labels, result.styles.synthetic[0].labels)
    assert "reusing" in messages[0]


def test_a_stop_during_the_generators_stops_the_run(tmp_path):
    unlabeled = [Sample(s.name, s.image, None) for s in histology(4, 1)]
    slow = styletransfer.StyleSettings(k=1, min_cluster_size=2, pairs_per_style=3, share=0.5,
                                       generator=GeneratorSettings(size=32, n_filters=4, depth=3, steps=10_000,
                                                                   minutes=None))
    asked = []
    with pytest.raises(loop.TrainingStopped, match="style generator"):
        styletransfer.train_with_styles(
            fluorescence(3, 0), fluorescence(1, 2), tmp_path / "model", n_channels=3, settings=SETTINGS,
            unlabeled=unlabeled, style=slow, base=tiny_model_dir(), progress=False,
            style_should_stop=lambda: asked.append(True) or len(asked) > 2)
    assert len(asked) == 3  # polled every step: the third answer stopped it


def test_bad_style_input_is_named(tmp_path):
    with pytest.raises(InputError, match="unannotated images"):
        styletransfer.synthesise_styles(fluorescence(2, 0), [], tmp_path / "a", n_channels=1, settings=STYLE)
    unlabeled = [Sample(s.name, s.image, None) for s in histology(2, 1)]
    with pytest.raises(InputError, match="first-pass model"):
        styletransfer.synthesise_styles([], unlabeled, tmp_path / "b", n_channels=3, settings=STYLE)
    with pytest.raises(InputError, match="synthetic share"):
        styletransfer.StyleSettings(share=0.6).check()


def write_folder(folder, samples, labels=True):
    (folder / "images").mkdir(parents=True)
    if labels:
        (folder / "labels").mkdir()
    for sample in samples:
        tifffile.imwrite(folder / "images" / f"{sample.name}.tif", sample.image)
        if labels:
            tifffile.imwrite(folder / "labels" / f"{sample.name}.tif", sample.labels)


def test_cli_trains_with_unlabeled_images(tmp_path, capsys):
    write_folder(tmp_path / "train", [Sample(s.name, (np.clip(s.image, 0, 1) * 255).astype(np.uint8), s.labels)
                                      for s in fluorescence(3, 0)])
    write_folder(tmp_path / "target", histology(4, 1), labels=False)
    out = tmp_path / "model"
    common = ["train", "--images", str(tmp_path / "train" / "images"), "--labels", str(tmp_path / "train" / "labels"),
              "--out", str(out), "--base", str(tiny_model_dir()), "--channels", "3", "--val-fraction", "0.34",
              "--steps", "2", "--epochs", "1", "--patch-size", "64", "--batch-size", "2"]
    style = ["--styles", "1", "--min-style-images", "2", "--synthetic-per-style", "2", "--synthetic-share", "0.5",
             "--generator-minutes", "0.02", "--generator-size", "32"]
    assert main(common + ["--unlabeled", str(tmp_path / "target" / "images")] + style) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert "styles: style clusters of the unannotated images: 1" in printed
    card = (out / "MODEL.md").read_text()
    assert "--unlabeled" in card and "--synthetic-share 0.5" in card
    assert json.loads((out / styletransfer.STYLES_DIR / styletransfer.STYLES_FILE).read_text())["k"] == 1
    assert main(common + ["--style"] + style) == 2
    assert "--unlabeled" in capsys.readouterr().err
