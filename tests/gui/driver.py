"""Drive the real CellProfiler GUI from inside its own process and write what it saw as JSON.

Run with the GUI environment's python on an X display (tests/gui/conftest.py starts Xvfb):

    .venv-gui/bin/python tests/gui/driver.py OUTPUT_DIR

It starts CellProfiler through its own command line (``cellprofiler --plugins-directory
plugins``), then a scenario scheduled on wx's event loop (so every step runs on the GUI thread,
between real paint and layout events, as a user's clicks would):

1. every example pipeline is loaded and every module selected; the geometry of each visible
   setting's label, control and help button is read from wx and the frame is photographed;
2. one image set of each pipeline with nucleai modules runs in test mode, module by module;
   each nucleai module's figure window is measured (axes, table grid) and photographed;
3. Analyze Images runs the starconvex demo into OUTPUT_DIR/analysis;
4. StyleAugmentTrain (a training pipeline written here: no example pipeline trains) runs one
   image set in test mode, then Analyze Images trains a model for one epoch (its post-run
   figure is measured and photographed), then trains for many and is stopped with the Stop
   Analysis button once an epoch has ended (the figure's progress rows are read first; how
   long the GUI hung in the stop and what the model folder holds are recorded).

Judging is left to tests/gui/test_gui.py: this file only records (OUTPUT_DIR/report.json).
No dialog may hang the run: wx dialogs are recorded and closed; the native GTK message boxes
(``wx.MessageBox``, CellProfiler's module error box ``cellprofiler.gui.dialog.Error``), which wx
can neither see nor close, and CellProfiler's error dialog are never shown: their text goes into
the report's errors and the run goes on as if "stop" was chosen. A watchdog still writes the
report as it stands and exits if the scenario stalls for another reason.
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "example_pipelines"
# pipeline -> the folder its file list comes from, for the pipelines run in test mode
TEST_MODE_INPUTS = {
    "ttamerge_nuclei": PIPELINES / "images",
    "refine_nuclei": PIPELINES / "images",
    "evaluate_nuclei": PIPELINES,
}
ANALYSIS_PIPELINE = "starconvex_nuclei"
NUCLEAI_MODULES = {"RunStarConvex", "RefineContoursUNet", "TTAMerge", "EvaluateSegmentation", "StyleAugmentTrain"}
# A desktop-sized window, as a user's would be: in CellProfiler's default 1066x641 frame the
# settings column is at its 150 px minimum, where CellProfiler stops wrapping labels and long
# ones (NamesAndTypes' "Name to assign these images") run off the panel's left edge.
FRAME_RECT = (0, 0, 1400, 900)
SETTLE_MS = 600
REPAINT_MS = 500  # GTK 3 paints on its frame clock, after a Refresh, not inside it
ANALYSIS_TIMEOUT_S = 600
TRAIN_PIPELINE = "styleaugmenttrain_nuclei"
TRAIN_TIMEOUT_S = 300  # the first epoch of the training to stop, or the whole short training
STOP_CAPTION = "Stop analysis run"  # CellProfiler's "Are you sure?" box of the Stop Analysis button
STALL_S = 180  # no step finished for this long: something hangs (the first TensorFlow load takes ~30 s)


def rect(r):
    return [r.x, r.y, r.width, r.height]


def screenshot(window, path):
    """PNG of ``window`` as the X server shows it (call after a repaint: ``Scenario.photograph``).

    Read back from the X server by ImageMagick's ``import`` (XGetImage of the window): a blit
    from wx's ScreenDC on GTK 3 returns a stale copy of the screen (every picture showed the
    first pipeline), while the geometry read from wx is live.
    """
    window.Update()
    subprocess.run(["import", "-window", str(window.GetHandle()), str(path)], check=True, timeout=60)
    return path.name


def erase_backgrounds(frame):
    """Give every panel of ``frame`` its own (the theme's) background colour, so it is erased.

    On GTK 3 without a compositor (Xvfb) a panel that leaves its background to the theme is not
    erased where a control was destroyed: each screenshot still showed the labels of every module
    selected before. A panel with a colour of its own is erased on every paint; the colour is the
    one wx reports for it, so the picture looks as it should.
    """
    import wx

    for window in walk(frame):
        if isinstance(window, (wx.Panel, wx.ScrolledWindow)):
            window.SetBackgroundColour(window.GetBackgroundColour())


def settings_layout(module, panel):
    """Each visible setting's label, control and help rectangles in the panel's virtual space."""
    from cellprofiler.gui.utilities.module_view import edit_control_name, help_ctrl_name, text_control_name

    rows = []
    for setting in module.visible_settings():
        windows = {
            "label": panel.FindWindowByName(text_control_name(setting)),
            "control": panel.FindWindowByName(edit_control_name(setting)),
            "help": panel.FindWindowByName(help_ctrl_name(setting)),
        }
        # A Table with use_sash (Metadata's) is drawn in the frame's table pane, not the grid.
        row = {"setting": setting.text, "type": type(setting).__name__, "in_sash": getattr(setting, "use_sash", False)}
        control = windows["control"]
        if control is not None and control.IsShown() and type(control).__name__ == "ListBox" and control.GetCount():
            row["first_visible"] = control.GetString(control.GetTopItem())  # a multiple-choice list
        for part, window in windows.items():
            if window is None or not window.IsShown():
                row[part] = None
                continue
            r = window.GetRect()
            x, y = panel.CalcUnscrolledPosition(r.x, r.y)
            row[part] = [x, y, r.width, r.height]
        rows.append(row)
    return rows


def corner_buttons(frame):
    """The Update buttons CellProfiler paints in grid corners (NamesAndTypes), where shown."""
    from cellprofiler.gui.cornerbuttonmixin import CornerButtonMixin

    found = []
    for window in walk(frame):
        if isinstance(window, CornerButtonMixin) and window.IsShownOnScreen():
            corner = window.GetGridCornerLabelWindow()
            try:
                button = rect(window.get_corner_update_button_rect())
            except TypeError as error:  # CellProfiler's float bug, unfixed
                button = str(error)
            found.append({"button": button, "corner": rect(corner.GetRect())})
    return found


def walk(window):
    yield window
    for child in window.GetChildren():
        yield from walk(child)


def shown_sashes(frame):
    """Sizes of the shown sash panes (the file list and the image-set table live in them)."""
    import wx.adv

    return [
        list(window.GetSize())
        for window in walk(frame)
        if isinstance(window, wx.adv.SashLayoutWindow) and window.IsShown()
    ]


def figure_report(module):
    """The module's figure window and what it shows: shown?, its axes, its table grids."""
    import wx
    import wx.grid
    from cellprofiler.gui.utilities.figure import window_name

    figure = wx.FindWindowByName(window_name(module))
    if figure is None:
        return None, {"module": module.module_name, "found": False}
    canvas = figure.figure.canvas
    width, height = canvas.GetClientSize()
    grids = [w for w in walk(canvas) if isinstance(w, wx.grid.Grid)]
    return figure, {
        "module": module.module_name,
        "found": True,
        "shown": figure.IsShownOnScreen(),
        "axes": len(figure.figure.axes),
        "axes_with_images": sum(1 for ax in figure.figure.axes if ax.images),
        "canvas": [width, height],
        "tables": [
            {"rect": rect(grid.GetRect()), "rows": grid.GetNumberRows(), "cols": grid.GetNumberCols(),
             # what the grid needs to show every cell whole (wider than its rect: cut or scrolled)
             "best": list(grid.GetBestSize()),
             "cells": {grid.GetRowLabelValue(r): grid.GetCellValue(r, 0) for r in range(grid.GetNumberRows())}}
            for grid in grids
        ],
    }


def set_file_list(pipeline, folder):
    """The pipeline's file list: every file under ``folder`` (the GTK folder dialog is no use here)."""
    pipeline.clear_urls(add_undo=False)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    pipeline.add_urls([p.as_uri() for p in files], add_undo=False)


def write_training_pipeline(path, output, model_name, **settings):
    """A pipeline that trains StyleAugmentTrain (no styles) on the demo images and their ground
    truth, fine-tuning the bundled model, into ``output/model_name``; eyes on."""
    sys.path.insert(0, str(PIPELINES))
    import make_pipelines as mp

    train = mp.module("StyleAugmentTrain", image_name="DNA", truth_objects="GroundTruth", model_name=model_name,
                      base_source="Bundled model", use_style=False, patch_size=64, batch_size=1,
                      val_fraction=0.25, **settings)
    train.output_folder.value = f"Elsewhere...|{output}"
    mp.write([*mp.image_and_truth_input(folders=("images", "ground_truth")), train], path)
    return path


class Scenario:
    """The steps, as a generator that yields how long (ms) to let wx run before the next step."""

    def __init__(self, app, out):
        self.app = app
        self.out = out
        self.report = {"panels": [], "test_mode": [], "analysis": None, "training": None, "stop": None,
                       "dialogs": [], "errors": []}
        # message box caption -> the answer a user gives (any other box is an error)
        self.answers = {}

    def steps(self):
        frame = self.app.frame
        while not frame.IsShownOnScreen():
            yield 200
        frame.SetSize(*FRAME_RECT)
        yield 2000
        self.report["frame"] = rect(frame.GetScreenRect())
        for path in sorted(PIPELINES.glob("*.cppipe")):
            yield from self.select_every_module(frame, path)
        for stem, folder in TEST_MODE_INPUTS.items():
            yield from self.test_mode(frame, PIPELINES / f"{stem}.cppipe", folder)
        yield from self.analyze(frame, PIPELINES / f"{ANALYSIS_PIPELINE}.cppipe", PIPELINES / "images")
        training = self.out / "training"
        short = write_training_pipeline(self.out / f"{TRAIN_PIPELINE}.cppipe", training, "short",
                                        steps_per_epoch=2, epochs=1)
        yield from self.test_mode(frame, short, PIPELINES)
        yield from self.train(frame, short, training / "short")
        long = write_training_pipeline(self.out / f"{TRAIN_PIPELINE}_stopped.cppipe", training, "stopped",
                                       steps_per_epoch=5, epochs=1000)
        yield from self.train_and_stop(frame, long, training / "stopped")

    def select_every_module(self, frame, path):
        frame.pipeline_controller.do_load_pipeline(str(path))
        yield SETTLE_MS
        set_file_list(frame.pipeline, TEST_MODE_INPUTS.get(path.stem, PIPELINES / "images"))
        yield SETTLE_MS
        for module in frame.pipeline.modules():
            frame.pipeline_list_view.select_one_module(module.module_num)
            yield SETTLE_MS
            panel = frame.module_view.module_panel
            record = {
                "pipeline": path.stem,
                "module_num": module.module_num,
                "module": module.module_name,
                "panel_virtual_size": list(panel.GetVirtualSize()),
                "panel_client_size": list(panel.GetClientSize()),
                "settings": settings_layout(module, panel),
                "sashes": shown_sashes(frame),
                "corner_buttons": corner_buttons(frame),
            }
            self.report["panels"].append(record)
            yield from self.photograph(frame, record, f"{path.stem}-{module.module_num:02d}-{module.module_name}.png")

    def photograph(self, window, record, name):
        """Repaint ``window``, let GTK paint it, then ``record["screenshot"]`` = its PNG's name.

        Raised first: with no window manager the figure windows open under the main frame, and
        the X server gives no pixels for the covered part of a window (black in the picture).
        """
        erase_backgrounds(window)
        window.Raise()
        window.Refresh()
        yield REPAINT_MS
        record["screenshot"] = screenshot(window, self.out / name)

    def figure(self, module, stem):
        """``figure_report`` of ``module``'s figure, photographed when there is one."""
        window, record = figure_report(module)
        if window is not None:
            yield from self.photograph(window, record, f"{stem}-{module.module_num:02d}-{module.module_name}-figure.png")
        return record

    def test_mode(self, frame, path, folder):
        controller = frame.pipeline_controller
        controller.do_load_pipeline(str(path))
        set_file_list(frame.pipeline, folder)
        yield SETTLE_MS
        controller.on_debug_start(None)
        yield SETTLE_MS
        run = {"pipeline": path.stem, "started": controller.is_in_debug_mode(), "steps": [], "figures": []}
        self.report["test_mode"].append(run)
        while controller.is_in_debug_mode():
            module = controller.current_debug_module()
            controller.on_debug_step(None)
            yield SETTLE_MS
            run["steps"].append(module.module_name)
            if module.module_name in NUCLEAI_MODULES:
                run["figures"].append((yield from self.figure(module, path.stem)))
            if not controller.is_in_debug_mode() or controller.current_debug_module() is module:
                break  # the last module, or one that failed (its error is in the report)
        if controller.is_in_debug_mode():
            controller.on_debug_stop(None)
        yield SETTLE_MS

    def analyze(self, frame, path, folder):
        from cellprofiler_core.preferences import set_default_output_directory

        controller = frame.pipeline_controller
        output = self.out / "analysis"
        output.mkdir(exist_ok=True)
        set_default_output_directory(str(output))
        controller.do_load_pipeline(str(path))
        set_file_list(frame.pipeline, folder)
        yield SETTLE_MS
        started = time.monotonic()
        controller.do_analyze_images()
        yield 1000
        analysis = {"pipeline": path.stem, "started": controller.is_running(), "timed_out": False}
        self.report["analysis"] = analysis
        while controller.is_running():
            if time.monotonic() - started > ANALYSIS_TIMEOUT_S:
                analysis["timed_out"] = True
                controller.stop_running()
                break
            yield 1000
        analysis["seconds"] = round(time.monotonic() - started, 1)
        yield 2000  # the last display requests
        analysis["figures"] = []
        for module in frame.pipeline.modules():
            if module.module_name in NUCLEAI_MODULES:
                analysis["figures"].append((yield from self.figure(module, f"analysis-{path.stem}")))
        analysis["outputs"] = sorted(p.name for p in output.iterdir())


    def start_training(self, frame, path):
        controller = frame.pipeline_controller
        controller.do_load_pipeline(str(path))
        set_file_list(frame.pipeline, PIPELINES)
        yield SETTLE_MS
        controller.do_analyze_images()
        yield 1000
        return controller

    def train(self, frame, path, model):
        """Analyze Images of a short training: its post-run figure, photographed."""
        started = time.monotonic()
        controller = yield from self.start_training(frame, path)
        training = {"started": controller.is_running(), "timed_out": False}
        self.report["training"] = training
        while controller.is_running():
            if time.monotonic() - started > TRAIN_TIMEOUT_S:
                training["timed_out"] = True
                controller.stop_running()
                break
            yield 1000
        yield 2000  # the post-run display request
        (module,) = [m for m in frame.pipeline.modules() if m.module_name == "StyleAugmentTrain"]
        training["figure"] = yield from self.figure(module, "training")
        training["model_files"] = sorted(p.name for p in model.iterdir()) if model.is_dir() else []

    def train_and_stop(self, frame, path, model):
        """Analyze Images of a long training, stopped with the Stop Analysis button (answering
        its "Are you sure?" with yes) once its first epoch has ended and the figure shows
        progress."""
        import wx

        started = time.monotonic()
        controller = yield from self.start_training(frame, path)
        stop = {"started": controller.is_running(), "timed_out": False}
        self.report["stop"] = stop
        (module,) = [m for m in frame.pipeline.modules() if m.module_name == "StyleAugmentTrain"]
        while not (model / "weights_best.h5").is_file():  # the first epoch has ended
            if time.monotonic() - started > TRAIN_TIMEOUT_S or not controller.is_running():
                stop["timed_out"] = True
                break
            yield 1000
        yield 3000  # a progress redraw or two
        stop["progress_figure"] = yield from self.figure(module, "training-progress")
        self.answers[STOP_CAPTION] = wx.YES
        stopping = time.monotonic()
        controller.on_stop_running(None)  # returns when CellProfiler has joined the training thread
        stop["stop_seconds"] = round(time.monotonic() - stopping, 1)
        del self.answers[STOP_CAPTION]
        while controller.is_running():
            yield 1000
        yield 2000
        stop["figure"] = yield from self.figure(module, "training-stopped")
        stop["model_files"] = sorted(p.name for p in model.iterdir()) if model.is_dir() else []
        card = model / "MODEL.md"
        stop["card"] = card.read_text() if card.is_file() else None


def never_show_native_dialogs(report, answers):
    """Record, instead of showing, every dialog that would block the GUI thread out of wx's reach.

    Each returns what "stop" or "cancel" returns, so CellProfiler stops the step at fault and the
    scenario goes on (the tests then fail with the message in the report's errors); a message
    box whose caption is in ``answers`` (the scenario's own question: Stop Analysis' "Are you
    sure?") is recorded and gets that answer.
    """
    import wx
    from cellprofiler.gui import errordialog

    def message_box(message, caption="Message", style=wx.OK | wx.CENTRE, *args, **kwargs):
        report["dialogs"].append(caption)
        if caption in answers:
            return answers[caption]
        report["errors"].append(f"message box {caption!r}: {message}")
        return wx.CANCEL if style & wx.CANCEL else wx.NO if style & wx.YES_NO else wx.OK

    def message_dialog(dialog):
        report["dialogs"].append(dialog.GetTitle())
        report["errors"].append(
            f"message dialog {dialog.GetTitle()!r}: {dialog.GetMessage()}\n{dialog.GetExtendedMessage()}"
        )
        return wx.ID_CANCEL

    def error_dialog(frame, exc, pipeline, message=None, tb=None, continue_only=False, remote_exc_info=None):
        if remote_exc_info:  # (name, message, traceback text, ...) from an analysis worker
            text = remote_exc_info[2]
        else:
            text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        report["dialogs"].append("Error")
        report["errors"].append(f"error dialog: {message or exc}\n{text}")
        return errordialog.ED_STOP

    wx.MessageBox = message_box
    wx.MessageDialog.ShowModal = message_dialog
    errordialog.display_error_dialog = error_dialog


def close_modal_dialogs(report):
    """Record and close every modal dialog (CellProfiler's "Analysis complete" among them)."""
    import wx

    for window in wx.GetTopLevelWindows():
        if isinstance(window, wx.Dialog) and window.IsModal():
            report["dialogs"].append(window.GetTitle())
            window.EndModal(wx.ID_OK)


def start(app, out):
    """Schedule the scenario on wx's event loop; writes report.json and quits when done."""
    import wx

    scenario = Scenario(app, out)
    never_show_native_dialogs(scenario.report, scenario.answers)
    steps = scenario.steps()
    watcher = wx.Timer()
    watcher.Bind(wx.EVT_TIMER, lambda event: close_modal_dialogs(scenario.report))
    watcher.Start(500)

    progress = [time.monotonic()]

    def watchdog():
        while time.monotonic() - progress[0] < STALL_S:
            time.sleep(5)
        scenario.report["errors"].append(f"stalled for {STALL_S} s (an error message box?); see the log")
        (out / "report.json").write_text(json.dumps(scenario.report, indent=1))
        sys.stdout.flush()
        os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()

    def advance():
        progress[0] = time.monotonic()
        try:
            delay = next(steps)
        except StopIteration:
            finish()
            return
        except Exception:
            scenario.report["errors"].append(traceback.format_exc())
            finish()
            return
        wx.CallLater(delay, advance)

    def finish():
        watcher.Stop()
        (out / "report.json").write_text(json.dumps(scenario.report, indent=1))
        logging.warning("nucleai gui driver: report written")
        for window in wx.GetTopLevelWindows():
            if window is not app.frame:
                window.Destroy()
        app.ExitMainLoop()

    advance()


def attach_when_ready(out):
    """From a helper thread: wait for CellProfiler's main frame, then start on the GUI thread."""
    import wx

    while True:
        app = wx.GetApp()
        if app is not None and getattr(app, "frame", None) is not None:
            wx.CallAfter(start, app, out)
            return
        time.sleep(0.2)


def prepare_preferences(out):
    """A first-run-free, quiet CellProfiler: no telemetry prompt, no welcome window."""
    from cellprofiler_core import preferences

    preferences.set_telemetry_prompt(False)
    preferences.set_telemetry(False)
    preferences.set_startup_blurb(False)
    preferences.set_default_image_directory(str(PIPELINES / "images"))
    preferences.set_default_output_directory(str(out))


def main():
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_preferences(out)
    threading.Thread(target=attach_when_ready, args=(out,), daemon=True).start()
    from cellprofiler.__main__ import main as cellprofiler_main

    cellprofiler_main(["cellprofiler", "--plugins-directory", str(REPO / "plugins")])
    # CellProfiler's worker and Java threads can outlive the GUI; the report is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if (out / "report.json").exists() else 1)


if __name__ == "__main__":
    main()
