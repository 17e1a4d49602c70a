"""Start-up fix for CellProfiler 4.2.8's GUI under Python >= 3.10 with wxPython 4.2.

CellProfiler's GUI code was written when ``/`` on ints gave ints and when SIP converted a float
argument to an int silently (through ``__int__``, which Python 3.10 stopped doing implicitly).
wxPython 4.2 on Python 3.11 rejects those floats with a TypeError, so in CellProfiler 4.2.8.1:
the module settings panel piles up in the top-left corner (``ModuleSizer.RecalcSizes`` builds
``wx.Point``/``wx.Size`` from floats and logs "Detected WX error"), the file list and the
NamesAndTypes table collapse to 1 px (``SashLayoutWindow.SetDefaultSize((w, h / 4))``), the
NamesAndTypes Update button and the image-set table header are not drawn (``wx.Rect`` and
``DC.DrawText`` from floats), every module figure with a table fails (``Figure.align_widget``),
and Analyze Images stops with "Failure in analysis startup" (``Gauge.SetValue(float)``). The same
pattern is in other dialogs (help search, object editing, binary-matrix settings, plate viewer).

The fix: the wx entry points in ``LENIENT`` truncate float arguments to ints, exactly what SIP
did before Python 3.10, and only when the call comes straight from CellProfiler's own code
(``cellprofiler.*``, and wxPython's RowColSizer, which has the same bug and which CellProfiler
uses). Everyone else, our plugins included, keeps wx's strict behaviour, so our own bugs still
show. A call without floats is passed through untouched, so the fix is a no-op wherever
CellProfiler already passes ints, and nothing is patched at all when this wx accepts floats.

A second start-up problem of this environment is fixed at the same moment: GTK 3 initialises
OpenGL when wx creates its App, which loads Mesa's libLLVM; TensorFlow, imported later by the
first nucleai module that runs, then dies in its own LLVM's static initialisers (SIGSEGV in
libtensorflow_framework, the whole GUI gone). CellProfiler draws nothing with OpenGL, so
``GDK_GL=disable`` is set (unless already set) just before wx is imported.

A third: CellProfiler 4.2.8's module figures (IdentifyPrimaryObjects, ConvertObjectsToImage, ...)
call ``matplotlib.cm.get_cmap``, which matplotlib 3.9 removed (the GUI's first figure then fails
with "module 'matplotlib.cm' has no attribute 'get_cmap'"); it is put back, as a call of
``matplotlib.colormaps``, when this matplotlib lacks it.

A fourth: a multiple-choice setting's list (``ModuleView.make_multichoice_control``, e.g.
TTAMerge's transforms) is filled by selecting its selected items one by one, and wx on GTK
scrolls a list box to every item it selects, as far as the list's first size needs: a list
first shown smaller than its rows (as every panel's were while ``ModuleSizer`` failed, above)
opened scrolled to its last selected item, the first ones (TTAMerge's "identity") out of sight.
A new list is scrolled back to its first selected item (the top when none is), whatever its
first size. This one is applied on GTK whether wx takes floats or not: it changes only where a
list opens.

Nothing here imports wx: :func:`install` (run at interpreter start by the ``.pth`` file that
``scripts/install_gui_env.sh`` writes) only registers an import hook that patches wx right after
something else imported it. Headless CellProfiler never imports wx, so headless runs are
untouched (importing wx there would fail without a display).
"""
import functools
import importlib.abc
import importlib.machinery
import os
import sys

# (wx module, class) -> the methods that CellProfiler 4.2.8 calls with floats.
LENIENT = {
    ("wx", "Point"): ("__init__",),  # ModuleSizer.RecalcSizes, Figure.align_widget
    ("wx", "Size"): ("__init__",),  # ModuleSizer.RecalcSizes, Figure.align_widget
    ("wx", "Rect"): ("__init__",),  # CornerButtonMixin, imagesetctrl, pipelinelistview
    ("wx", "DC"): ("DrawText", "DrawBitmap"),  # imagesetctrl, CornerButtonMixin, file drop target
    ("wx", "Gauge"): ("SetValue",),  # PreferencesView progress bar (Analyze Images)
    ("wx", "SpinCtrl"): ("SetValue",),  # BinaryMatrix settings
    ("wx", "Frame"): ("__init__",),  # help Search window size
    ("wx", "Dialog"): ("__init__",),  # EditObjectsDialog size
    ("wx.adv", "SashLayoutWindow"): ("SetDefaultSize",),  # CPFrame file list / image set panes
}
# (wx module, class) -> the attributes set to floats: only wx.lib.rcsizer does that.
LENIENT_ATTRIBUTES = {
    ("wx", "Point"): ("x", "y"),  # RowColSizer.SetItemBounds
}
# Code whose calls are made lenient: CellProfiler's own, and wxPython 4.2.0's pure-Python
# RowColSizer (wx.lib.rcsizer divides sizes with "/" too; CellProfiler's NamesAndTypes metadata
# joiner uses it, and wx calls its CalcMin during layout, not CellProfiler).
LENIENT_CALLERS = ("cellprofiler", "wx.lib.rcsizer")
_PATCHED = "_nucleai_lenient"
DISABLE_VARIABLE = "NUCLEAI_GUI_COMPAT"


def truncate_floats(value):
    """``value`` with every float (also inside tuples and lists) truncated to an int."""
    if isinstance(value, float):
        return int(value)
    if isinstance(value, (tuple, list)):
        return type(value)(truncate_floats(item) for item in value)
    return value


def has_float(values):
    """Whether any of ``values`` is a float or a tuple or list holding one."""
    return any(
        isinstance(value, float) or (isinstance(value, (tuple, list)) and has_float(value))
        for value in values
    )


def called_from_cellprofiler(depth=2):
    """Whether the frame ``depth`` levels up (a wrapper's caller) is in ``LENIENT_CALLERS``."""
    name = sys._getframe(depth).f_globals.get("__name__", "")
    return any(name == caller or name.startswith(caller + ".") for caller in LENIENT_CALLERS)


def lenient(method):
    """``method`` that, called from CellProfiler with floats, gets them truncated to ints first.

    Truncating before the call rather than retrying after a TypeError matters: wxPython 4.2.0
    does not always raise for a float inside a tuple (``SetDefaultSize((w, h / 4))`` stores a
    broken size and leaves the error pending), so the float has to be gone before wx sees it.
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        if (has_float(args) or has_float(kwargs.values())) and called_from_cellprofiler():
            args = truncate_floats(args)
            kwargs = {key: truncate_floats(value) for key, value in kwargs.items()}
        return method(*args, **kwargs)

    setattr(wrapper, _PATCHED, True)
    return wrapper


def lenient_attribute(descriptor):
    """A property over SIP's ``descriptor`` whose setter truncates CellProfiler's floats."""

    def set_value(instance, value):
        if isinstance(value, float) and called_from_cellprofiler():
            value = int(value)
        descriptor.__set__(instance, value)

    prop = property(descriptor.__get__, set_value)
    setattr(prop.fset, _PATCHED, True)
    return prop


def wx_rejects_floats(wx):
    """The bug's precondition: this wx raises TypeError for a float where it wants an int."""
    try:
        wx.Point(0.5, 0.5)
    except TypeError:
        return True
    return False


def patch_module(module):
    """Make ``module``'s ``LENIENT`` entry points lenient; returns the names patched.

    Nothing is patched when this wx accepts floats (CellProfiler then behaves as it is), nor
    twice, nor when ``NUCLEAI_GUI_COMPAT=off`` (to show what the fix repairs:
    ``NUCLEAI_GUI_COMPAT=off make gui-test`` must fail its layout checks; ``GDK_GL`` is still set,
    or the run would end in TensorFlow's SIGSEGV before any layout is checked). ``__init__`` of a
    wx class is SIP's generic initialiser, found through ``getattr``.
    """
    wx = sys.modules.get("wx")
    if wx is None or os.environ.get(DISABLE_VARIABLE, "").lower() == "off" or not wx_rejects_floats(wx):
        return []
    patched = []
    for table, make_lenient in ((LENIENT, lenient), (LENIENT_ATTRIBUTES, lenient_attribute)):
        for (module_name, class_name), names in table.items():
            cls = getattr(module, class_name, None) if module.__name__ == module_name else None
            for name in names if cls is not None else ():
                current = getattr(cls, name) if table is LENIENT else cls.__dict__[name]
                if getattr(getattr(current, "fset", current), _PATCHED, False):
                    continue
                setattr(cls, name, make_lenient(current))
                patched.append(f"{module_name}.{class_name}.{name}")
    return patched


def first_selection_on_top(method):
    """``ModuleView.make_multichoice_control`` whose newly made list box opens scrolled to its
    first selected item (see the top: wx on GTK leaves it at the last one selected)."""

    @functools.wraps(method)
    def wrapper(self, setting, control_name, control):
        made = not control
        control = method(self, setting, control_name, control)
        if made and control.GetCount():
            selected = control.GetSelections()
            control.SetFirstItem(selected[0] if selected else 0)
        return control

    setattr(wrapper, _PATCHED, True)
    return wrapper


def patch_module_view(module):
    """Make ``module`` (``cellprofiler.gui.module_view._module_view``) open multiple-choice
    lists at their first selected item; returns what was patched (nothing twice, nor off GTK,
    where this was not seen, nor when ``NUCLEAI_GUI_COMPAT=off`` or the method is not there)."""
    view = getattr(module, "ModuleView", None)
    method = getattr(view, "make_multichoice_control", None)
    on_gtk = getattr(sys.modules.get("wx"), "Platform", None) == "__WXGTK__"
    disabled = os.environ.get(DISABLE_VARIABLE, "").lower() == "off"
    if method is None or getattr(method, _PATCHED, False) or not on_gtk or disabled:
        return []
    view.make_multichoice_control = first_selection_on_top(method)
    return [f"{module.__name__}.ModuleView.make_multichoice_control"]


def get_cmap(name=None, lut=None):
    """``matplotlib.cm.get_cmap`` as matplotlib < 3.9 had it: a colormap by name (or itself)."""
    import matplotlib
    import matplotlib.colors

    if isinstance(name, matplotlib.colors.Colormap):
        colormap = name
    else:
        colormap = matplotlib.colormaps[name or matplotlib.rcParams["image.cmap"]]
    return colormap if lut is None else colormap.resampled(lut)


def restore_get_cmap(cm):
    """Give ``cm`` (``matplotlib.cm``) back its ``get_cmap`` where missing; returns what was added."""
    if hasattr(cm, "get_cmap") or os.environ.get(DISABLE_VARIABLE, "").lower() == "off":
        return []
    cm.get_cmap = get_cmap
    return ["matplotlib.cm.get_cmap"]


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Meta-path finder that lets ``wx`` (and ``wx.adv``, ``matplotlib.cm``, CellProfiler's module
    view) import normally, then patches them.

    ``wx.adv`` is a submodule that wx does not import itself, so its classes are patched when it
    is imported (``cellprofiler.gui.cpframe`` does that).
    """

    MODULE_VIEW = "cellprofiler.gui.module_view._module_view"  # imports wx itself
    WATCHED = ("wx", "wx.adv", "matplotlib.cm", MODULE_VIEW)

    def __init__(self):
        self._loaders = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.WATCHED:
            return None
        if fullname == "wx":
            os.environ.setdefault("GDK_GL", "disable")  # before wx loads GTK (see the top)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self._loaders[fullname] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loaders[spec.name].create_module(spec)

    def exec_module(self, module):
        self._loaders[module.__name__].exec_module(module)
        _patch(module)


def install():
    """Register the import hook (idempotent); patches wx at once if it is already imported."""
    if any(isinstance(finder, _PatchAfterImport) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _PatchAfterImport())
    for name in _PatchAfterImport.WATCHED:
        if name in sys.modules:
            _patch(sys.modules[name])


def _patch(module):
    """Apply this file's fix for ``module``, one of ``_PatchAfterImport.WATCHED``."""
    if module.__name__ == "matplotlib.cm":
        restore_get_cmap(module)
    elif module.__name__ == _PatchAfterImport.MODULE_VIEW:
        patch_module_view(module)
    else:
        patch_module(module)
