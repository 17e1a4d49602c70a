"""The automatic model choice (nucleai.modality): the kind of an image, the model, the warning.

The kind is decided on the bundled example images of each kind (fluorescence in ``images/``,
histology, brightfield) and on synthetic variants that must not fool it: a grey image stored as
RGB (or tinted) is not colour, an inverted fluorescence image is brightfield. The segmentation
tests run the bundled models.
"""
import json

import numpy as np
import pytest
import skimage.io
import tifffile

from nucleai import modality, models, predict, stain, tta
from nucleai.errors import InputError
from testdata import BLANK_FIELD, BRIGHTFIELD, HISTOLOGY, IMAGES

FLUORESCENCE_IMAGES = sorted(p for p in IMAGES.glob("*.png") if p.name != BLANK_FIELD)
HISTOLOGY_IMAGES = sorted(HISTOLOGY.glob("*.png"))
BRIGHTFIELD_IMAGES = sorted(BRIGHTFIELD.glob("*.png"))
ALL_BUNDLED = ("fluo_nuclei", "histo_nuclei", modality.VERSATILE_MODEL)


def read(path):
    return skimage.io.imread(path)


def kind(image, mask=None):
    return modality.image_kind(image, mask)[0]


@pytest.mark.parametrize("paths, expected", [
    (FLUORESCENCE_IMAGES, modality.FLUORESCENCE),
    (HISTOLOGY_IMAGES, modality.HISTOLOGY),
    (BRIGHTFIELD_IMAGES, modality.BRIGHTFIELD),
])
def test_the_bundled_example_images_get_their_kind(paths, expected):
    assert len(paths) >= 2
    for path in paths:
        image = read(path)
        assert kind(image) == expected, path.name
        # CellProfiler's copy (0-1 floats) decides the same: the statistics are ratios
        assert kind(image / 255.0) == expected, path.name


def test_the_evidence_explains_the_decision():
    fluorescence = modality.image_kind(read(FLUORESCENCE_IMAGES[0]))[1]
    histology = modality.image_kind(read(HISTOLOGY_IMAGES[0]))[1]
    brightfield = modality.image_kind(read(BRIGHTFIELD_IMAGES[0]))[1]
    assert fluorescence.background < 0.5 < brightfield.background
    assert fluorescence.skew > 0 > brightfield.skew
    assert fluorescence.colour_spread == brightfield.colour_spread == 0
    assert histology.colour_spread > modality.COLOUR_SPREAD and histology.channels == 3
    assert str(brightfield).startswith("colour spread 0.000, background at 0.")


def test_a_grey_image_stored_as_rgb_is_not_colour():
    for path, expected in ((BRIGHTFIELD_IMAGES[0], modality.BRIGHTFIELD),
                           (FLUORESCENCE_IMAGES[0], modality.FLUORESCENCE)):
        grey = read(path)
        rgb = np.stack([grey] * 3, axis=-1)
        rgba = np.concatenate([rgb, np.full(grey.shape + (1,), 255, np.uint8)], axis=-1)
        tinted = rgb.astype(np.int16) + np.array([12, 0, -9])  # a white balance, no stain
        for image in (rgb, rgba, tinted):
            found, evidence = modality.image_kind(image)
            assert found == expected and evidence.colour_spread < modality.COLOUR_SPREAD, path.name


def test_inverting_swaps_fluorescence_and_brightfield():
    for path in FLUORESCENCE_IMAGES:
        assert kind(255 - read(path)) == modality.BRIGHTFIELD, path.name
    for path in BRIGHTFIELD_IMAGES:
        assert kind(255 - read(path)) == modality.FLUORESCENCE, path.name


def test_a_colour_composite_on_a_dark_background_is_fluorescence():
    grey = read(FLUORESCENCE_IMAGES[0])
    composite = np.stack([np.zeros_like(grey), grey // 3, grey], axis=-1)  # nuclei in blue (and green)
    found, evidence = modality.image_kind(composite)
    assert found == modality.FLUORESCENCE and evidence.colour_spread > modality.COLOUR_SPREAD


def test_images_without_contrast_and_the_mask():
    assert kind(np.zeros((30, 40))) == kind(np.full((30, 40, 3), 7, np.uint8)) == modality.NO_CONTRAST
    image = read(BRIGHTFIELD_IMAGES[0])
    assert kind(image, np.zeros(image.shape, bool)) == modality.NO_CONTRAST
    # decided inside the mask: a bright image whose dark corner holds a bright spot
    bright = np.full((100, 100), 200, np.uint8)
    bright[:20, :20] = 10
    bright[5:10, 5:10] = 150
    mask = np.zeros(bright.shape, bool)
    mask[:20, :20] = True
    assert kind(bright) == modality.BRIGHTFIELD
    assert kind(bright, mask) == modality.FLUORESCENCE
    with pytest.raises(InputError, match="NaN or infinite"):
        modality.image_kind(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="2-D image"):
        modality.image_kind(np.zeros((2, 3, 4, 5)))


def test_the_table_chooses_the_first_bundled_model():
    bundled = models.bundled_models()
    assert {"fluo_nuclei", "histo_nuclei"} <= set(bundled)
    assert modality.choose_model(modality.FLUORESCENCE, bundled) == ("fluo_nuclei", modality.AS_IS)
    assert modality.choose_model(modality.HISTOLOGY, bundled) == ("histo_nuclei", modality.AS_IS)
    assert modality.choose_model(modality.BRIGHTFIELD, ALL_BUNDLED) == ("histo_nuclei", modality.HAEMATOXYLIN)
    assert modality.choose_model(modality.BRIGHTFIELD, ["fluo_nuclei", modality.VERSATILE_MODEL]) == (
        modality.VERSATILE_MODEL, modality.HAEMATOXYLIN)
    assert modality.choose_model(modality.BRIGHTFIELD, ["fluo_nuclei"]) == ("fluo_nuclei", modality.HAEMATOXYLIN)
    assert modality.choose_model(modality.NO_CONTRAST, ["fluo_nuclei"]) == ("fluo_nuclei", modality.AS_IS)
    with pytest.raises(InputError, match="no model for histology images: it needs histo_nuclei or versatile_nuclei"):
        modality.choose_model(modality.HISTOLOGY, ["fluo_nuclei"])
    assert modality.models_in_use(["fluo_nuclei", "histo_nuclei"]) == ["fluo_nuclei", "histo_nuclei"]
    assert modality.models_in_use(ALL_BUNDLED) == ["fluo_nuclei", "histo_nuclei"]
    assert modality.models_in_use(["fluo_nuclei", modality.VERSATILE_MODEL]) == ["fluo_nuclei", modality.VERSATILE_MODEL]
    with pytest.raises(InputError, match="histology"):
        modality.models_in_use(["fluo_nuclei"])
    assert "brightfield -> fluo_nuclei on the haematoxylin density" in modality.describe_choices(["fluo_nuclei"])


def test_prepare_gives_the_model_its_channels_and_the_haematoxylin_density():
    grey = read(BRIGHTFIELD_IMAGES[0])
    keep = modality.ModelDecision(modality.FLUORESCENCE, "fluo_nuclei", modality.AS_IS, None)
    density = modality.ModelDecision(modality.BRIGHTFIELD, "histo_nuclei", modality.HAEMATOXYLIN, None)
    np.testing.assert_array_equal(modality.prepare(grey, keep, 1), grey)
    rgb = np.stack([grey] * 3, axis=-1)
    np.testing.assert_array_equal(modality.prepare(rgb, keep, 1), grey)  # grey as RGB: the grey itself
    np.testing.assert_array_equal(modality.prepare(rgb, keep, 3), rgb)
    colour = read(HISTOLOGY_IMAGES[0])
    np.testing.assert_allclose(modality.prepare(colour, keep, 1), colour.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(modality.prepare(colour, keep, 1, channel=2), colour[..., 2])
    # the haematoxylin density, in colour for any model (of the chosen channel for a grey one)
    np.testing.assert_array_equal(modality.prepare(grey, density, 3), stain.haematoxylin(grey))
    np.testing.assert_array_equal(modality.prepare(colour, density, 1), stain.haematoxylin(colour))
    np.testing.assert_array_equal(modality.prepare(colour, density, 1, channel=2), stain.haematoxylin(colour[..., 2]))


def test_segment_auto_runs_the_chosen_model_as_segment_does():
    for path, model, seen in ((FLUORESCENCE_IMAGES[0], "fluo_nuclei", modality.AS_IS),
                              (HISTOLOGY_IMAGES[0], "histo_nuclei", modality.AS_IS),
                              (BRIGHTFIELD_IMAGES[0], "histo_nuclei", modality.HAEMATOXYLIN)):
        image = read(path)
        timings = {}
        result, decision = modality.segment_auto(image, timings=timings)
        assert (decision.model, decision.preparation) == (model, seen)
        assert decision.kind == kind(image) and str(decision).endswith(f"-> {model}{modality.seen_as(seen)}")
        given = stain.haematoxylin(image) if seen == modality.HAEMATOXYLIN else image
        expected = predict.segment(given, models.load(model))
        np.testing.assert_array_equal(result.labels, expected.labels)
        assert result.count > 5 and "choose" in timings and "network" in timings


def test_segment_auto_gives_fluo_nuclei_the_haematoxylin_density_without_a_brightfield_model():
    image = read(BRIGHTFIELD_IMAGES[0])
    result, decision = modality.segment_auto(image, available=["fluo_nuclei"])
    assert (decision.kind, decision.model, decision.preparation) == (
        modality.BRIGHTFIELD, "fluo_nuclei", modality.HAEMATOXYLIN)
    assert str(decision).endswith("-> fluo_nuclei on the haematoxylin density")
    expected = predict.segment(modality.prepare(image, decision, 1), models.load("fluo_nuclei"))
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert result.count > 5


def test_segment_auto_under_test_time_augmentation_and_with_a_mask():
    image = read(FLUORESCENCE_IMAGES[0])
    options = tta.TTAOptions(("identity", "flip_x"))
    result, decision = modality.segment_auto(image, tta=options)
    expected = tta.segment_tta(image, models.load("fluo_nuclei"), options)
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert decision.model == "fluo_nuclei" and result.transforms == ("identity", "flip_x")
    result, decision = modality.segment_auto(image, mask=np.zeros(image.shape, bool))
    assert decision.kind == modality.NO_CONTRAST and result.empty_reason == predict.ALL_MASKED


def test_no_objects_in_an_image_that_is_not_blank_names_the_likely_cause():
    brightfield, fluorescence = read(BRIGHTFIELD_IMAGES[0]), read(FLUORESCENCE_IMAGES[0])
    strict = predict.SegmentOptions(prob_thresh=0.999)
    found = predict.segment(brightfield, models.load("fluo_nuclei"), strict)
    assert found.count == 0 and found.empty_reason is None
    warning = modality.no_objects_warning(brightfield, found, "fluo_nuclei")
    assert warning.startswith("no objects found although the image is not blank (it looks like brightfield")
    assert "wrong polarity" in warning
    found = predict.segment(fluorescence, models.load("histo_nuclei"), strict)
    assert found.count == 0
    assert "wrong model: histo_nuclei is for histology images" in modality.no_objects_warning(
        fluorescence, found, "histo_nuclei")
    found = predict.segment(brightfield, models.load("histo_nuclei"), strict)
    assert found.count == 0
    assert "runs histo_nuclei on the haematoxylin density of brightfield images" in modality.no_objects_warning(
        brightfield, found, "histo_nuclei")
    assert "likely causes" in modality.no_objects_warning(fluorescence, found, "my_own_model")
    result, decision = modality.segment_auto(brightfield, strict, available=["fluo_nuclei"])
    assert result.count == 0
    assert "fluo_nuclei ran on the haematoxylin density" in modality.no_objects_warning(
        brightfield, result, decision.model, decision)
    # objects, or nothing to segment: no warning
    assert modality.no_objects_warning(fluorescence, predict.segment(fluorescence, models.load("fluo_nuclei")),
                                       "fluo_nuclei") is None
    blank = np.zeros((64, 64), np.uint8)
    assert modality.no_objects_warning(blank, predict.segment(blank, models.load("fluo_nuclei")), "fluo_nuclei") is None


def test_the_kinds_of_the_team_data(dsb2018):
    """Every DSB 2018 image of the team's copy gets the kind its index.json gives it."""
    names = {"fluo": modality.FLUORESCENCE, "histo": modality.HISTOLOGY, "brightfield": modality.BRIGHTFIELD}
    wrong = []
    for entry in json.loads((dsb2018 / "index.json").read_text()):
        image = read(dsb2018 / entry["split"] / "images" / f"{entry['id']}.png")
        if kind(image) != names[entry["kind"]]:
            wrong.append((entry["id"][:8], entry["kind"], kind(image)))
    assert wrong == []


def test_the_brightfield_examples_are_annotated_crops():
    for path in BRIGHTFIELD_IMAGES:
        image, truth = read(path), tifffile.imread(path.with_suffix(".tif"))
        assert image.shape == truth.shape == (384, 384) and image.dtype == np.uint8
        assert truth.dtype == np.uint16 and np.array_equal(np.unique(truth), np.arange(truth.max() + 1))
        assert truth.max() >= 10


def test_versatile_nuclei_serves_every_kind_where_a_specialist_is_missing():
    without_histo = ["fluo_nuclei", modality.VERSATILE_MODEL]
    assert models.load(modality.VERSATILE_MODEL).spec.n_channel_in == 3
    for path, seen in ((BRIGHTFIELD_IMAGES[0], modality.HAEMATOXYLIN), (HISTOLOGY_IMAGES[0], modality.AS_IS)):
        image = read(path)
        result, decision = modality.segment_auto(image, available=without_histo)
        assert (decision.model, decision.preparation) == (modality.VERSATILE_MODEL, seen)
        truth = tifffile.imread(path.with_suffix(".tif"))
        assert result.count > 0.3 * len(np.unique(truth[truth > 0]))
    result, decision = modality.segment_auto(read(FLUORESCENCE_IMAGES[0]), available=[modality.VERSATILE_MODEL])
    assert decision.model == modality.VERSATILE_MODEL and result.count > 5
