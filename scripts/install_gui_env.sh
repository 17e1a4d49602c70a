#!/usr/bin/env bash
# Build the GUI environment (.venv-gui) once: CellProfiler's GUI with wxPython, beside .venv.
#
# Which wx, and why: wxPython has no Linux wheels on the package index (only a source build of
# an hour or more, with GTK's development headers), while Debian ships wxPython 4.2.0, the
# version CellProfiler 4.2.8 pins, built for the system Python 3.11. So the GUI environment is a
# venv on /usr/bin/python3 with --system-site-packages (it sees Debian's wx; everything else is
# installed into the venv by the same steps and constraints as .venv, so the venv's packages
# come first). A .pth file then installs nucleai.gui_compat, our start-up fix for CellProfiler
# 4.2.8's float-to-wx bugs, in every python of this venv (a venv's sitecustomize.py would be
# shadowed by Debian's own). Xvfb gives the GUI tests a screen.
# ImageMagick's `import` takes their screenshots (wx's ScreenDC gives stale ones on GTK 3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${NUCLEAI_GUI_VENV:-.venv-gui}"
system_python=/usr/bin/python3
apt_packages=(python3-wxgtk4.0 xvfb imagemagick)

missing=()
for package in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        cat >&2 <<MSG
error: the GUI environment needs Debian packages that are not installed: ${missing[*]}
  Install them (as root), then run this again:
    sudo apt-get update && sudo apt-get install -y ${missing[*]}
MSG
        exit 1
    fi
fi

"$system_python" -c "import wx" 2>/dev/null || {
    echo "error: $system_python cannot import wx (python3-wxgtk4.0 is for Debian's Python 3.11)" >&2
    exit 1
}

NUCLEAI_VENV="$venv" PYTHON="$system_python" NUCLEAI_VENV_OPTIONS=--system-site-packages \
    bash scripts/install_env.sh

site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# Named to sort after easy-install.pth, which puts shared/ (the nucleai package) on the path.
echo "import nucleai.gui_compat; nucleai.gui_compat.install()" >"$site/nucleai-gui-compat.pth"
touch "$venv/.nucleai-gui-installed"
echo "nucleai: GUI environment ready in $venv (wx $("$venv/bin/python" -c 'import wx; print(wx.__version__)'))"
