"""The bundled colour model ``histo_nuclei`` in a real pipeline: RunStarConvex on H&E-like images.

``example_pipelines/histology_nuclei.cppipe`` runs headless on the two annotated histology
images in ``example_pipelines/histology`` (never trained on: held out in the model's training,
see ``models/histo_nuclei/MODEL.md``), and EvaluateSegmentation scores RunStarConvex's objects
against the annotations; the scores must equal the backend's on the same images.
"""
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import tifffile

from cellprofiler_run import run_pipeline
from nucleai import metrics, models, predict
from testdata import DEFAULT_PRECISION, EXAMPLES, HISTOLOGY

MODEL = "histo_nuclei"


@pytest.fixture(scope="module")
def histology_run(tmp_path_factory):
    return run_pipeline(EXAMPLES / "histology_nuclei.cppipe", HISTOLOGY, tmp_path_factory.mktemp("histology"))


def test_the_bundled_colour_model_is_a_three_channel_detector():
    assert MODEL in models.bundled_models()
    assert models.read_spec(models.bundled_model_dir(MODEL)).n_channel_in == 3


def test_runstarconvex_segments_histology_as_the_backend_does(histology_run):
    rows = histology_run.tables["Image"]
    assert sorted(row["FileName_HE"] for row in rows) == sorted(p.name for p in HISTOLOGY.glob("*.png"))
    model = models.load(MODEL, precision=DEFAULT_PRECISION)
    for row in rows:
        stem = Path(row["FileName_HE"]).stem
        truth = tifffile.imread(HISTOLOGY / f"{stem}.tif")
        image = skimage.io.imread(HISTOLOGY / f"{stem}.png")[..., :3]
        # the same code path on the same pixels (CellProfiler's are the PNG's divided by 255,
        # which the percentile normalisation undoes): the same objects, the same score
        result = predict.segment(image, model)
        ours = metrics.evaluate_image(truth, result.labels)
        assert float(row["Count_Nuclei"]) == result.count > 0.5 * truth.max()
        dsb = float(row["Evaluation_DSBScore_GroundTruth_Nuclei"])
        assert dsb == pytest.approx(ours.dsb_score, abs=1e-9)
        assert dsb > 0.1  # a colour model that finds the nuclei (an untrained one scores ~0)
    assert np.isfinite(histology_run.column("Nuclei", "StarConvex_Probability")).all()
