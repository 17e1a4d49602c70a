"""``nucleai batch --scheduler slurm`` on a real one-node Slurm, compared with one full run.

The test starts Slurm itself (``scripts/start_local_slurm.sh``: munged, slurmctld and slurmd on
localhost), which needs root and Debian's slurm-wlm + munge; ``.ci/run`` installs them when it
runs as root. Elsewhere the test is skipped and says why.
"""
import os
import shutil
import subprocess

import pytest

from test_batch import IMAGES, PIPELINE, assert_same_results, full_run, run_cli  # noqa: F401
from testdata import REPO


@pytest.fixture(scope="module")
def local_slurm():
    """A running local Slurm, or a skip naming what is missing."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("Slurm is not installed (apt-get install -y slurm-wlm munge; .ci/run "
                    "installs them when run as root)")
    if os.geteuid() != 0:
        pytest.skip("starting a local Slurm (munged, slurmctld, slurmd) needs root")
    started = subprocess.run(["bash", str(REPO / "scripts" / "start_local_slurm.sh")],
                             capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr


def test_slurm_batch_equals_one_full_run(local_slurm, full_run, tmp_path):  # noqa: F811
    output = tmp_path / "screen"
    completed = run_cli("batch", "--pipeline", PIPELINE, "--images", IMAGES, "--output", output,
                        "--scheduler", "slurm", "--slices", 2, "--sbatch-arg=--cpus-per-task=1")
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Slurm job" in completed.stderr
    assert "2/2 slices done, 0 failed" in completed.stderr
    for index in (1, 2):  # Slurm's own output file of each array task
        assert (output / "slices" / f"slice_{index}" / "slurm.out").is_file()
    assert_same_results(output, full_run.output_dir)
