"""What every test gets: CellProfiler set up as a plugin user's would be, and the team data.

The pieces live in small modules the tests import, so each exists once:

* :mod:`testdata` names every data location (bundled example images and annotations, fixtures,
  the team's DSB 2018 copy);
* :mod:`cellprofiler_run` runs a pipeline headless (``python -m cellprofiler -c -r
  --plugins-directory plugins``) and reads its tables, or runs one module in a workspace in
  process;
* :mod:`tiny_model` and :mod:`tiny_unet` train the tiny detector and refinement U-Net, once per
  test process (``tiny_model_dir()``, ``tiny_unet_dir()``).

Here: ``plugins/`` and ``example_pipelines/`` become importable (the plugin modules, as
CellProfiler's plugin loader imports them, and ``make_pipelines``), CellProfiler runs headless with
this repository's plugins, and the ``dsb2018`` fixture is the one way to reach the team data.
"""
import sys

import cellprofiler_core.preferences
import pytest

import testdata

for folder in (testdata.PLUGINS, testdata.EXAMPLES):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
cellprofiler_core.preferences.set_headless()
cellprofiler_core.preferences.set_plugin_directory(str(testdata.PLUGINS), globally=False)

DSB2018_ABSENT = f"the team's DSB 2018 data is not at {testdata.DSB2018}"


@pytest.fixture(scope="session")
def dsb2018():
    """The team's DSB 2018 folder (``train/`` and ``val/``, each ``images/`` and ``labels/``).

    It lives outside the repository and may be missing: the test is then skipped, and the reason
    is printed at the end of the run.
    """
    if not (testdata.DSB2018 / "val").is_dir():
        pytest.skip(DSB2018_ABSENT)
    return testdata.DSB2018


def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped for missing team data (pytest lists reasons only with -rs)."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if DSB2018_ABSENT in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} test(s) skipped: {DSB2018_ABSENT}")
