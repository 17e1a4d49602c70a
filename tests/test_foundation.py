"""The installable suite: the ``nucleai`` entry point and the install step's JDK check."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nucleai
from testdata import REPO

NUCLEAI = Path(sys.executable).with_name("nucleai")


def test_version_is_printed():
    result = subprocess.run([NUCLEAI, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"nucleai {nucleai.__version__}"


def test_help_describes_the_command():
    result = subprocess.run([NUCLEAI, "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: nucleai")
    assert "--version" in result.stdout


def test_install_stops_clearly_without_a_jdk(tmp_path):
    # A PATH with the few tools the script needs but no javac, and an empty JDK search folder.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "readlink", "cat", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bin_dir), "JVM_SEARCH_DIR": str(tmp_path / "no-jvm"),
           "NUCLEAI_VENV": str(tmp_path / "venv"), "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install_env.sh")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert "no JDK found" in result.stderr
    assert "apt-get install default-jdk-headless" in result.stderr
    assert not (tmp_path / "venv").exists()
