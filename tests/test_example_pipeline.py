"""The classical example pipeline, run headless through the shared harness.

Proves the harness end to end on a real CellProfiler run: object counts are plausible against
the bundled ground truth, downstream measurement columns exist for both object sets, and the
saved label images agree with the measured counts. Also proves that the harness reports a
broken pipeline instead of passing it.
"""

import numpy as np
import pytest
import tifffile

from cellprofiler_run import PipelineFailed, run_pipeline
from testdata import EXAMPLES, IMAGES, ground_truth_of

CLASSICAL = EXAMPLES / "classical_nuclei.cppipe"


@pytest.fixture(scope="module")
def classical_run(tmp_path_factory):
    return run_pipeline(CLASSICAL, IMAGES, tmp_path_factory.mktemp("classical"))


def test_every_image_is_segmented_with_a_plausible_count(classical_run):
    rows = classical_run.tables["Image"]
    assert sorted(row["FileName_DNA"] for row in rows) == sorted(p.name for p in IMAGES.glob("*.png"))
    for row in rows:
        truth = tifffile.imread(ground_truth_of(row["FileName_DNA"]))
        true_count = len(np.unique(truth)) - 1
        count = float(row["Count_Nuclei"])
        # A classical threshold + declumping over- or under-splits, but not by more than 2x here.
        assert true_count / 2 <= count <= true_count * 2, (row["FileName_DNA"], count, true_count)
        assert float(row["Count_Cells"]) == count


def test_downstream_measurements_exist_for_every_object(classical_run):
    counts = classical_run.column("Image", "Count_Nuclei")
    for objects in ("Nuclei", "Cells"):
        rows = classical_run.tables[objects]
        assert len(rows) == counts.sum()
        for column in ("Location_Center_X", "Location_Center_Y", "Number_Object_Number",
                       "Intensity_MeanIntensity_DNA", "Intensity_IntegratedIntensity_DNA"):
            values = classical_run.column(objects, column)
            assert np.isfinite(values).all(), (objects, column)
    assert (classical_run.column("Nuclei", "Intensity_MeanIntensity_DNA") > 0).all()
    assert (classical_run.column("Cells", "Parent_Nuclei") > 0).all()


def test_label_images_match_the_measured_counts(classical_run):
    labels = classical_run.files("*_nuclei_labels.tiff")
    assert len(labels) == len(classical_run.tables["Image"])
    counts = {row["FileName_DNA"]: float(row["Count_Nuclei"]) for row in classical_run.tables["Image"]}
    for path in labels:
        image = tifffile.imread(path)
        assert image.dtype == np.uint16
        ids = np.unique(image[image > 0])
        assert len(ids) == counts[path.name.replace("_nuclei_labels.tiff", ".png")]


def test_a_broken_pipeline_is_reported(tmp_path):
    broken = tmp_path / "broken.cppipe"
    text = CLASSICAL.read_text()
    # IdentifyPrimaryObjects now reads an image no module provides.
    assert "Select the input image:DNA" in text
    broken.write_text(text.replace("Select the input image:DNA", "Select the input image:NoSuchImage", 1))
    with pytest.raises(PipelineFailed):
        run_pipeline(broken, IMAGES, tmp_path / "out")
