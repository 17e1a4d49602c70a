"""Where the tests find their data: every test-data location is named here, nowhere else.

Bundled with the repository, so always present:

``EXAMPLES``
    ``example_pipelines/``: the example pipelines, ``images/`` (four DSB 2018 fluorescence
    images and ``BLANK_FIELD``, an all-zero field without nuclei) with their annotations in
    ``ground_truth/`` (same stem, ``.tif``),
    ``histology/`` (two H&E-like ``.png`` images, each with its ``.tif`` annotation), and
    ``brightfield/`` (two grey brightfield ``.png`` images, dark nuclei on a bright background:
    384 x 384 top-left crops of the annotated DSB 2018 training images 4e07a653 and 54793624,
    each with its ``.tif`` annotation, cropped and renumbered likewise).
``FIXTURES``
    ``tests/fixtures/``: recorded inputs and reference outputs (see each folder's script).

Outside the repository, possibly absent: ``DSB2018``, the team's copy of the DSB 2018 data
(``../shared/data/dsb2018``, with ``train/`` and ``val/`` holding ``images/`` and ``labels/``).
Tests reach it only through the ``dsb2018`` fixture of ``conftest.py``, which skips the test,
saying why, where the folder is missing; scripts that regenerate fixtures read ``DSB2018``.
"""
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PLUGINS = REPO / "plugins"
EXAMPLES = REPO / "example_pipelines"
IMAGES = EXAMPLES / "images"
GROUND_TRUTH = EXAMPLES / "ground_truth"
HISTOLOGY = EXAMPLES / "histology"
BRIGHTFIELD = EXAMPLES / "brightfield"
FIXTURES = TESTS / "fixtures"
DSB2018 = REPO.parent / "shared" / "data" / "dsb2018"
#: The demo images' blank field (all 0): every module gives it no objects and the status "blank".
BLANK_FIELD = "nuclei_blank.png"
#: The precision the modules ("Automatic") and the command line run networks in by default; a
#: reference segmentation loads its model with it (``nucleai.models.load``'s own default is float32).
DEFAULT_PRECISION = "auto"


def ground_truth_of(image_name):
    """The bundled annotation of ``example_pipelines/images/<image_name>`` (any suffix)."""
    return GROUND_TRUTH / (Path(image_name).stem + ".tif")
