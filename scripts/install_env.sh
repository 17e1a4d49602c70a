#!/usr/bin/env bash
# Build the project's virtual environment (.venv) from nothing, idempotently.
#
# Why a script and not just `pip install -e .`: CellProfiler 4.2.8.1 pins packages that have no
# Python 3.11 wheels and its Java bridge only builds against NumPy 1.x, so the order below
# (recipe in the team's environment notes) matters. Versions that were tested live in
# constraints.txt, which every pip call obeys.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${NUCLEAI_VENV:-.venv}"
python="${PYTHON:-python3}"
# Extra `python -m venv` options: the GUI environment (scripts/install_gui_env.sh) passes
# --system-site-packages so the venv sees Debian's wxPython.
read -r -a venv_options <<<"${NUCLEAI_VENV_OPTIONS:-}"
stamp="$venv/.nucleai-installed"
# TensorFlow build: "cpu" (tensorflow-cpu, the default) or "gpu" (`make install GPU=1`:
# TensorFlow's CUDA build with NVIDIA's pip-packaged CUDA libraries, `tensorflow[and-cuda]`, same
# version; needs an NVIDIA driver on the machine, ~3 GB). A rebuild keeps the build it was made with.
installed_build="$(cat "$stamp" 2>/dev/null || true)"
if [ -n "${NUCLEAI_GPU:-}" ] && [ "${NUCLEAI_GPU}" != 0 ]; then
    build=gpu
elif [ -n "${NUCLEAI_GPU:-}" ]; then
    build=cpu
else
    build="${installed_build:-cpu}"
fi
[ "$build" = gpu ] || [ "$build" = cpu ] || build=cpu

if ! JAVA_HOME="$(bash scripts/find_java_home.sh)"; then
    cat >&2 <<'MSG'
error: no JDK found (CellProfiler's python-javabridge needs javac and the JNI headers).
  Install one, for example on Debian/Ubuntu:  apt-get install default-jdk-headless
  or set JAVA_HOME to an existing JDK, then run this again.
MSG
    exit 1
fi
export JAVA_HOME
# The CUDA build is installed at the version constraints.txt pins for tensorflow-cpu.
tf_version="$(grep '^tensorflow_cpu==' constraints.txt | cut -d= -f3)"

"$python" - <<'PY' || { echo "error: Python 3.11 is required (found $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

if [ -f "$stamp" ] && [ "$stamp" -nt constraints.txt ] && [ "$stamp" -nt setup.py ] \
        && [ "$installed_build" = "$build" ]; then
    echo "nucleai: $venv is up to date ($build TensorFlow; delete it to rebuild)"
    exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "${venv_options[@]}" "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -c constraints.txt)

"${pip[@]}" "numpy<2" "cython<3" setuptools wheel
"${pip[@]}" --no-build-isolation python-javabridge
if [ "$build" = gpu ]; then
    # The two builds install the same `tensorflow` package: never both in one environment.
    "$venv/bin/python" -m pip uninstall -y -q tensorflow-cpu || true
    tensorflow=("tensorflow[and-cuda]==$tf_version")
else
    "$venv/bin/python" -m pip uninstall -y -q tensorflow || true
    tensorflow=(tensorflow-cpu)
fi
"${pip[@]}" "${tensorflow[@]}" stardist centrosome scikit-image tifffile boto3 docutils \
    prokaryote psutil pyzmq python-bioformats mahotas scikit-learn inflect Jinja2 joblib \
    sentry-sdk h5py imageio matplotlib pytest tqdm
"${pip[@]}" --no-deps cellprofiler-core==4.2.8.1 cellprofiler==4.2.8.1
"${pip[@]}" --no-build-isolation --no-deps -e .

echo "$build" > "$stamp"
echo "nucleai: environment ready in $venv ($build TensorFlow, JAVA_HOME=$JAVA_HOME)"
