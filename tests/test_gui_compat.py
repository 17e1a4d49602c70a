"""nucleai.gui_compat in the headless environment: it must never import wx, nor change anything.

The GUI side (the patch really fixes wx calls from CellProfiler and only those) is in
tests/gui/test_gui_compat_wx.py, which needs the GUI environment.
"""
import subprocess
import sys
import types

import pytest

from nucleai import gui_compat


def run_python(code):
    """``code`` in a fresh interpreter of this environment; returns its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_importing_and_installing_does_not_import_wx():
    out = run_python(
        "import sys, nucleai.gui_compat as g; g.install(); g.install(); "
        "print('wx' in sys.modules, sum(type(f).__name__ == '_PatchAfterImport' for f in sys.meta_path))"
    )
    assert out.split() == ["False", "1"]


def test_headless_cellprofiler_with_the_hook_does_not_import_wx():
    out = run_python(
        "import sys, nucleai.gui_compat as g; g.install()\n"
        "import cellprofiler_core.preferences as p; p.set_headless()\n"
        "import cellprofiler.gui, cellprofiler.modules, cellprofiler_core.pipeline\n"
        "from cellprofiler_core.utilities.core.modules import fill_modules; fill_modules()\n"
        "print('wx' in sys.modules)"
    )
    assert out.split()[-1] == "False"


def test_nothing_to_patch_without_wx():
    assert "wx" not in sys.modules
    assert gui_compat.patch_module(sys.modules["nucleai"]) == []


@pytest.mark.parametrize(
    "value, expected",
    [(2.9, 2), (-0.5, 0), (3, 3), ((1.5, 2), (1, 2)), ([0.5, (7.9,)], [0, (7,)]), ("a", "a")],
)
def test_truncate_floats_like_sip_did(value, expected):
    result = gui_compat.truncate_floats(value)
    assert result == expected and type(result) is type(expected)


def test_has_float_looks_inside_tuples():
    assert gui_compat.has_float([1, (2, 3.0)])
    assert not gui_compat.has_float([1, (2, 3), "x", None])


def strict(*numbers):
    """Stands for a wx call on Python 3.11: ints only."""
    if gui_compat.has_float(numbers):
        raise TypeError("argument has unexpected type 'float'")
    return numbers


def call_from(module_name, function, *args):
    namespace = {"__name__": module_name, "function": function}
    exec(f"result = function(*{args!r})", namespace)
    return namespace["result"]


def test_lenient_truncates_floats_only_for_cellprofiler_callers():
    wrapped = gui_compat.lenient(strict)
    assert call_from("cellprofiler.gui.module_view._module_sizer", wrapped, 10.7, (3, 4.5)) == (10, (3, 4))
    assert call_from("wx.lib.rcsizer", wrapped, 1.5) == (1,)
    assert wrapped(1, 2) == (1, 2)
    with pytest.raises(TypeError):
        call_from("runstarconvex", wrapped, 1.5)
    with pytest.raises(TypeError):
        call_from("cellprofilerish", wrapped, 1.5)


def test_switched_off_it_patches_nothing(monkeypatch):
    """``NUCLEAI_GUI_COMPAT=off`` is how the GUI tests are shown to fail without the fix."""

    class Point:
        def __init__(self, *numbers):
            strict(*numbers)

    def float_rejecting_wx():
        module = types.ModuleType("wx")
        coordinate = property(lambda point: 0, lambda point, value: strict(value))
        module.Point = type("Point", (Point,), {"x": coordinate, "y": coordinate})
        monkeypatch.setitem(sys.modules, "wx", module)
        return module

    assert gui_compat.patch_module(float_rejecting_wx()) == ["wx.Point.__init__", "wx.Point.x", "wx.Point.y"]
    monkeypatch.setenv(gui_compat.DISABLE_VARIABLE, "off")
    assert gui_compat.patch_module(float_rejecting_wx()) == []


def test_get_cmap_is_back_for_cellprofiler_figures():
    """matplotlib 3.9 removed ``matplotlib.cm.get_cmap``; CellProfiler 4.2.8's figures call it."""
    out = run_python(
        "import nucleai.gui_compat as g; g.install()\n"
        "import matplotlib.cm, matplotlib\n"
        "print(matplotlib.cm.get_cmap('Greys').name, matplotlib.cm.get_cmap('jet', 8).N,\n"
        "      matplotlib.cm.get_cmap().name == matplotlib.rcParams['image.cmap'])"
    )
    assert out.split() == ["Greys", "8", "True"]
