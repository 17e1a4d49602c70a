"""A private Xvfb screen and one run of the GUI driver, shared by every GUI test.

These tests need the GUI environment (``make gui-test`` builds it and runs them); ``make test``
leaves this folder out. They skip, saying why, only where wx is missing or no X server starts.
The driver's screenshots, report and CellProfiler's log go to ``gui-output/`` (or
``$NUCLEAI_GUI_OUTPUT``).
"""
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")
DRIVER_TIMEOUT_S = 900
SCREEN = "1600x1000x24"


@pytest.fixture(scope="session")
def display():
    """``DISPLAY`` value of a fresh Xvfb, stopped after the session."""
    pytest.importorskip("wx", reason="wx is missing: run the GUI tests with `make gui-test`")
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; `make gui-test` does it as root)")
    # -displayfd: Xvfb picks a free display and writes its number once it accepts clients;
    # -noreset: without it Xvfb resets whenever its last client leaves, and a GTK client that
    # connects during the reset fails ("unable to initialize wxWidgets").
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", SCREEN, "-nolisten", "tcp", "-noreset"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(write_end,),
    )
    # The read end stays open while Xvfb runs: it writes the number and the newline separately,
    # and dies ("Cannot write display number") if the pipe is closed in between.
    os.close(write_end)
    number = read_line(read_end, timeout_s=30)
    if not number:
        server.kill()
        os.close(read_end)
        reason = server.stderr.read().decode(errors="replace")[-500:]
        pytest.skip(f"Xvfb did not start: {reason or 'no display number within 30 s'}")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)
    os.close(read_end)


def read_line(fd, timeout_s):
    """The first line written to ``fd`` within ``timeout_s`` (stripped; empty when none came)."""
    text = b""
    deadline = time.monotonic() + timeout_s
    while not text.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 16) if ready else b""
        if not chunk:
            break
        text += chunk
    return text.decode().strip()


@pytest.fixture(scope="session")
def gui_env(display, tmp_path_factory):
    """Environment for a CellProfiler GUI process: the private screen, a fresh config folder."""
    env = dict(os.environ, DISPLAY=display, XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("config")))
    env.pop("WAYLAND_DISPLAY", None)
    return env


@pytest.fixture(scope="session")
def gui_output():
    out = Path(os.environ.get("NUCLEAI_GUI_OUTPUT", REPO / "gui-output"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


@pytest.fixture(scope="session")
def gui_run(gui_env, gui_output):
    """Run tests/gui/driver.py once; returns (report dict, CellProfiler's log text, output folder)."""
    log_path = gui_output / "cellprofiler.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            code = subprocess.run(
                [sys.executable, str(DRIVER), str(gui_output)], cwd=REPO, env=gui_env,
                stdout=log, stderr=subprocess.STDOUT, timeout=DRIVER_TIMEOUT_S,
            ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    seconds = time.monotonic() - started
    print(f"GUI driver: exit {code} after {seconds:.0f} s; log {log_path}")
    log_text = log_path.read_text(errors="replace")
    report_path = gui_output / "report.json"
    assert report_path.exists(), f"the GUI driver wrote no report (exit {code}); end of log:\n{log_text[-3000:]}"
    return json.loads(report_path.read_text()), log_text, gui_output
