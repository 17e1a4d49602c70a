"""Issues 15.2 and 16.2: one image that cannot be processed does not lose the run.

Every nucleai module has *When an image cannot be processed* (default: give no objects and flag
the image) and records ``<Category>_Status_<objects>``. In process: each module flags an image it
cannot process (count 0, a status naming the error, a warning naming the file) or, set to stop,
raises naming the file; a blank image is never an error. Headless: the demo pipeline runs on the
demo images plus a blank, a constant and a NaN image to the end, and every image set has its row.

A corrupt (unreadable) file is not in the headless folder: CellProfiler's NamesAndTypes fails to
load it (``OSError: Could not load the file as an image``) before any nucleai module runs, and
the run stops there; no plugin setting can change that.
"""
import logging

import numpy as np
import pytest
import skimage.io
import tifffile

import evaluatesegmentation
import refinecontoursunet
import runstarconvex
import ttamerge
from _failure_policy import ON_FAILURE_FLAG, ON_FAILURE_STOP
from cellprofiler_core.measurement import Measurements
from cellprofiler_run import PipelineFailed, run_module, run_pipeline
from nucleai.errors import InputError
from testdata import EXAMPLES, IMAGES
from tiny_model import synthetic_image, tiny_model_dir
from tiny_unet import tiny_unet_dir

#: The demo images' nucleus counts with the bundled model (unchanged by the bad images beside them).
DEMO_COUNTS = {"nuclei_05040e2e.png": 23, "nuclei_0bda515e.png": 42, "nuclei_0c6507d4.png": 23,
               "nuclei_1b6044e4.png": 38}


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir()


@pytest.fixture(scope="module")
def image():
    pixels = synthetic_image(np.random.default_rng(5), (96, 112), n_objects=10)[0]
    return (pixels - pixels.min()) / np.ptp(pixels)


def with_nan(image):
    bad = image.copy()
    bad[3, 4] = np.nan
    return bad


def from_file(name):
    """Measurements of an image set whose DNA image came from the file ``name``."""
    measurements = Measurements()
    measurements.add_image_measurement("FileName_DNA", name)
    return measurements


def star_convex(model_dir, **values):
    module = runstarconvex.RunStarConvex()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    module.model_source.value = runstarconvex.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{model_dir}"
    for name, value in values.items():
        getattr(module, name).value = value
    return module


def test_the_default_is_to_flag_the_image(model_dir):
    for module in (star_convex(model_dir), ttamerge.TTAMerge(), refinecontoursunet.RefineContoursUNet(),
                   evaluatesegmentation.EvaluateSegmentation()):
        assert module.on_failure.value == ON_FAILURE_FLAG
        assert module.on_failure in module.settings() and module.on_failure in module.visible_settings()


def test_runstarconvex_flags_a_nan_image_and_carries_on(model_dir, image, caplog):
    caplog.set_level(logging.WARNING)
    workspace = run_module(star_convex(model_dir, save_probability=True), {"DNA": with_nan(image)},
                           measurements=from_file("bad.tif"))
    m = workspace.measurements
    assert workspace.object_set.get_objects("Nuclei").count == 0
    assert m["Image", "Count_Nuclei"] == 0
    assert m["Image", "StarConvex_Status_Nuclei"] == "error: image has NaN or infinite pixels"
    assert len(m.get_current_measurement("Nuclei", "StarConvex_Probability")) == 0
    assert not workspace.image_set.get_image("NucleiProbability").pixel_data.any()  # later modules find it
    assert "RunStarConvex: image 'DNA' (bad.tif): image has NaN or infinite pixels" in caplog.text
    good = run_module(star_convex(model_dir), {"DNA": image})
    assert good.measurements["Image", "StarConvex_Status_Nuclei"] == "ok"
    assert good.measurements["Image", "Count_Nuclei"] > 0


def test_runstarconvex_set_to_stop_raises_naming_the_file(model_dir, image):
    with pytest.raises(InputError, match=r"RunStarConvex: image 'DNA' \(bad.tif\): image has NaN"):
        run_module(star_convex(model_dir, on_failure=ON_FAILURE_STOP), {"DNA": with_nan(image)},
                   measurements=from_file("bad.tif"))


def test_a_blank_image_is_never_an_error_and_is_logged(model_dir, caplog):
    caplog.set_level(logging.WARNING)
    workspace = run_module(star_convex(model_dir, on_failure=ON_FAILURE_STOP), {"DNA": np.full((40, 50), 0.3)},
                           measurements=from_file("flat.png"))
    assert workspace.measurements["Image", "Count_Nuclei"] == 0
    assert workspace.measurements["Image", "StarConvex_Status_Nuclei"] == "constant"
    assert "image 'DNA' (flat.png) is constant: nothing to segment" in caplog.text


def test_ttamerge_flags_a_nan_image_and_a_mismatched_merge(model_dir, image):
    module = ttamerge.TTAMerge()
    module.set_module_num(1)
    module.x_name.value = "DNA"
    module.model_source.value = ttamerge.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{model_dir}"
    module.transforms.value = ["identity", "flip_x"]
    module.save_probability.value = True
    workspace = run_module(module, {"DNA": with_nan(image)})
    m = workspace.measurements
    assert m["Image", "Count_Nuclei"] == 0 and m["Image", "TTAMerge_Status_Nuclei"].startswith("error: ")
    assert workspace.image_set.get_image("NucleiTTAProbability").pixel_data.shape == image.shape
    blank = run_module(module, {"DNA": np.zeros(image.shape)})
    assert blank.measurements["Image", "TTAMerge_Status_Nuclei"] == "blank"

    merge = ttamerge.TTAMerge()
    merge.set_module_num(2)
    merge.mode.value = ttamerge.MODE_MERGE
    merge.object_names.value = "A, B"
    merge.y_name.value = "Merged"
    objects = {"A": np.zeros((30, 40), np.int32), "B": np.zeros((30, 35), np.int32)}
    objects["A"][2:8, 2:8] = 1
    workspace = run_module(merge, objects=objects)
    m = workspace.measurements
    assert m["Image", "Count_Merged"] == 0
    assert m["Image", "TTAMerge_Status_Merged"].startswith("error: the object sets to merge differ in size")
    assert list(m.get_current_measurement("A", "Children_Merged_Count")) == [0]


def test_refinecontoursunet_flags_mismatched_objects_and_gives_none_on_a_blank_image(image):
    module = refinecontoursunet.RefineContoursUNet()
    module.set_module_num(2)
    module.x_name.value = "Detected"
    module.image_name.value = "DNA"
    module.model_source.value = refinecontoursunet.MODEL_CUSTOM
    module.model_folder.value = f"Elsewhere...|{tiny_unet_dir()}"
    detected = np.zeros(image.shape, np.int32)
    detected[10:20, 10:20] = 1
    workspace = run_module(module, {"DNA": image[:, :-1]}, {"Detected": detected})
    m = workspace.measurements
    assert m["Image", "Count_RefinedNuclei"] == 0
    assert m["Image", "RefineContoursUNet_Status_RefinedNuclei"].startswith("error: objects 'Detected' are")
    blank = run_module(module, {"DNA": np.zeros(image.shape)}, {"Detected": detected})
    m = blank.measurements
    assert m["Image", "Count_RefinedNuclei"] == 0
    assert m["Image", "RefineContoursUNet_Status_RefinedNuclei"] == "blank"
    module.on_failure.value = ON_FAILURE_STOP
    with pytest.raises(InputError, match=r"RefineContoursUNet: image 'DNA' \(image set 1\): objects 'Detected'"):
        run_module(module, {"DNA": image[:, :-1]}, {"Detected": detected})


def test_evaluatesegmentation_flags_objects_of_different_sizes_with_nan_scores():
    module = evaluatesegmentation.EvaluateSegmentation()
    module.set_module_num(3)
    module.truth_objects.value = "Truth"
    module.predicted_objects.value = "Found"
    module.wants_summary.value = False
    truth, found = np.zeros((20, 20), np.int32), np.zeros((20, 24), np.int32)
    truth[2:6, 2:6] = 1
    workspace = run_module(module, objects={"Truth": truth, "Found": found})
    m = workspace.measurements
    assert m["Image", "Evaluation_Status_Truth_Found"].startswith("error: 'Truth'")
    assert np.isnan(m["Image", "Evaluation_DSBScore_Truth_Found"])
    assert np.isnan(m.get_current_measurement("Truth", "Evaluation_BestIoU_Found")).all()
    module.on_failure.value = ON_FAILURE_STOP
    with pytest.raises(InputError, match="EvaluateSegmentation: .*come from images of different sizes"):
        run_module(module, objects={"Truth": truth, "Found": found})


def test_status_measurements_are_declared(model_dir):
    from cellprofiler_core.pipeline import Pipeline

    module = star_convex(model_dir)
    assert ("Image", "StarConvex_Status_Nuclei", "varchar(255)") in module.get_measurement_columns(Pipeline())
    evaluate = evaluatesegmentation.EvaluateSegmentation()
    evaluate.truth_objects.value, evaluate.predicted_objects.value = "Truth", "Found"
    assert ("Image", "Evaluation_Status_Truth_Found", "varchar(255)") in evaluate.get_measurement_columns(Pipeline())
    assert "Status" in evaluate.get_measurements(Pipeline(), "Image", "Evaluation")


# ------------------------------------------------------------------------------------------------
# Headless: the demo pipeline on the demo images plus bad ones

BAD = {"nuclei_blank.png": "blank", "nuclei_constant.png": "constant",
       "nuclei_nan.tif": "error: image has NaN or infinite pixels"}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_images")
    for name in DEMO_COUNTS:
        (folder / name).write_bytes((IMAGES / name).read_bytes())
    skimage.io.imsave(folder / "nuclei_blank.png", np.zeros((64, 80), np.uint8), check_contrast=False)
    skimage.io.imsave(folder / "nuclei_constant.png", np.full((64, 80), 120, np.uint8), check_contrast=False)
    nan = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(folder / "nuclei_nan.tif", nan)
    return folder


def demo_pipeline(tmp_path, on_failure=None):
    """The demo pipeline, reading .tif files too, with RunStarConvex's failure setting."""
    text = (EXAMPLES / "starconvex_nuclei.cppipe").read_text()
    png_only = '(file does endwith ".png")'
    assert png_only in text and f"When an image cannot be processed:{ON_FAILURE_FLAG}" in text
    text = text.replace(png_only, '(file does endwith "")')
    if on_failure is not None:
        text = text.replace(f"When an image cannot be processed:{ON_FAILURE_FLAG}",
                            f"When an image cannot be processed:{on_failure}")
    path = tmp_path / "demo.cppipe"
    path.write_text(text)
    return path


def test_the_run_goes_on_past_bad_images_and_exports_every_row(bad_folder, tmp_path):
    run = run_pipeline(demo_pipeline(tmp_path), bad_folder, tmp_path / "out")
    rows = {row["FileName_DNA"]: row for row in run.tables["Image"]}
    assert sorted(rows) == sorted([*DEMO_COUNTS, *BAD])
    for name, count in DEMO_COUNTS.items():
        assert float(rows[name]["Count_Nuclei"]) == count, name
        assert rows[name]["StarConvex_Status_Nuclei"] == "ok"
    for name, status in BAD.items():
        assert float(rows[name]["Count_Nuclei"]) == 0, name
        assert rows[name]["StarConvex_Status_Nuclei"] == status, name
    assert len(run.tables["Nuclei"]) == sum(DEMO_COUNTS.values())
    assert len(run.files("*_nuclei_labels.tiff")) == len(rows)
    assert "(nuclei_nan.tif): image has NaN or infinite pixels; no objects, image flagged" in run.log
    assert "(nuclei_blank.png) is blank: nothing to segment" in run.log


def test_set_to_stop_the_run_fails_naming_the_file(bad_folder, tmp_path):
    nan_only = tmp_path / "in"
    nan_only.mkdir()
    for name in ("nuclei_05040e2e.png", "nuclei_nan.tif"):
        (nan_only / name).write_bytes((bad_folder / name).read_bytes())
    with pytest.raises(PipelineFailed, match=r"exit code 1") as failed:
        run_pipeline(demo_pipeline(tmp_path, ON_FAILURE_STOP), nan_only, tmp_path / "out")
    assert "RunStarConvex: image 'DNA' (nuclei_nan.tif): image has NaN or infinite pixels" in str(failed.value)
