"""nucleai.gui_compat in the GUI environment, on the real wx: installed by the .pth file at
start-up, lenient for CellProfiler's calls only, and GTK kept off OpenGL before TensorFlow loads.
"""
import subprocess
import sys

CHECKS = r"""
import os, sys, wx, wx.adv
assert os.environ["GDK_GL"] == "disable"
app = wx.App(False)

def from_module(name, code):
    namespace = {"__name__": name}
    exec("import wx\n" + code, namespace)
    return namespace

# CellProfiler's own calls, as in ModuleSizer.RecalcSizes, CornerButtonMixin, CPFrame, the
# preferences view's progress bar and wx.lib.rcsizer:
cp = from_module("cellprofiler.gui.fake", '''
frame = wx.Frame(None, size=(400.5, 300.0))
point, size, rect = wx.Point(1.5, 2.9), wx.Size(10.2, 20.0), wx.Rect(0.5, 1.5, 2.5, 3.5)
sash = wx.adv.SashLayoutWindow(frame)
sash.SetDefaultSize((300, 400 / 4))
gauge = wx.Gauge(frame)
gauge.SetValue(100 * 1 / 3)
bitmap = wx.Bitmap(20, 20)
dc = wx.MemoryDC(bitmap)
dc.DrawText("x", 1.5, 2.5)
''')
assert tuple(cp["point"]) == (1, 2) and tuple(cp["size"]) == (10, 20), (cp["point"], cp["size"])
assert tuple(cp["rect"]) == (0, 1, 2, 3)
assert cp["gauge"].GetValue() == 33
rcsizer = from_module("wx.lib.rcsizer", "point = wx.Point(1, 2)\npoint.x = 7.5")
assert tuple(rcsizer["point"]) == (7, 2)

# Anyone else keeps wx's strict behaviour (our plugins' bugs must still show):
for code in ("wx.Point(1.5, 2)", "wx.Point(1, 2).x = 1.5"):
    try:
        from_module("runstarconvex", code)
    except TypeError:
        pass
    else:
        raise AssertionError(code + " accepted a float outside CellProfiler")
print("ok")
"""


def test_pth_hook_patches_wx_for_cellprofiler_only(gui_env):
    done = subprocess.run(
        [sys.executable, "-c", CHECKS], env=gui_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_tensorflow_loads_after_the_wx_app(gui_env):
    """Without GDK_GL=disable this dies with SIGSEGV in libtensorflow_framework's LLVM."""
    code = (
        "import wx; app = wx.App(False); frame = wx.Frame(None); frame.Show()\n"
        "import tensorflow as tf; print(float(tf.constant(2.0) * 2))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=gui_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "4.0", done.stderr[-3000:]


MULTICHOICE = r"""
import wx
from cellprofiler_core.setting.multichoice import MultiChoice

app = wx.App(False)
from cellprofiler.gui.module_view._module_view import ModuleView  # makes wx images: after the App

frame = wx.Frame(None, size=(400, 300))
panel = wx.Panel(frame)
choices = ["identity", "flip_y", "flip_x", "rot90", "rot180", "rot270", "transpose", "transverse"]
view = ModuleView.__new__(ModuleView)  # a plain MultiChoice's list needs only the panel
view._ModuleView__module_panel = panel
patched = ModuleView.make_multichoice_control
lists = {}
for name, make in (("patched", patched), ("unpatched", patched.__wrapped__)):
    control = make(view, MultiChoice("Transforms", choices, value=choices[:6]), name, None)
    control.SetSize(10 + 160 * len(lists), 10, 150, 80)  # first shown three rows high
    lists[name] = control
frame.Show()

def check():
    print({name: control.GetString(control.GetTopItem()) for name, control in lists.items()})
    app.ExitMainLoop()

wx.CallLater(1500, check)
app.MainLoop()
"""


def test_a_multiple_choice_list_opens_at_its_first_selected_item(gui_env):
    """TTAMerge's transforms, first shown three rows high: CellProfiler's own list opens at the
    fifth (wx on GTK scrolls to each item selected), the patched one at "identity"."""
    done = subprocess.run([sys.executable, "-c", MULTICHOICE], env=gui_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "{'patched': 'identity', 'unpatched': 'rot180'}"
