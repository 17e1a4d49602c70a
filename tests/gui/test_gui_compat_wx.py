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
