"""The real CellProfiler GUI under Xvfb with our plugins: panels, test-mode figures, Analyze Images.

One driver run (tests/gui/driver.py, started by conftest.py's ``gui_run``) records the GUI's
geometry and screenshots; these tests judge the record.
"""
import csv
import itertools
from pathlib import Path

import pytest

PIPELINES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "example_pipelines").glob("*.cppipe"))
# Setting types drawn outside the settings grid (the file list and the image-set table; and
# any Table with use_sash, recorded as "in_sash": Metadata's).
OUTSIDE_GRID = {"PathListDisplay", "ImageSetDisplay"}
MIN_PANE_HEIGHT = 100  # px: the file list / NamesAndTypes table pane, 1 px when collapsed
DEMO_IMAGES = 5  # four fields and the blank one (nuclei_blank.png: no nuclei)


def overlap(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def layout_problems(panel):
    """What is wrong with one module's settings panel, as readable lines (empty when fine)."""
    problems = []
    width = max(panel["panel_virtual_size"][0], panel["panel_client_size"][0])
    height = panel["panel_virtual_size"][1]
    boxes = []
    for row in panel["settings"]:
        if row["type"] in OUTSIDE_GRID or row.get("in_sash"):
            continue
        if row["control"] is None:
            problems.append(f"{row['setting']!r}: no control shown")
            continue
        # A divider spans the row; CellProfiler leaves its help cell an unplaced 1 px placeholder.
        parts = ("control",) if row["type"] == "Divider" else ("label", "control", "help")
        for part in parts:
            box = row[part]
            if box is None or box[2] <= 0 or box[3] <= 0:
                if part == "control":
                    problems.append(f"{row['setting']!r}: control has no size {box}")
                continue
            x, y, w, h = box
            if x < 0 or y < 0 or x + w > width + 1 or y + h > height + 1:
                problems.append(f"{row['setting']!r} {part} {box} outside the panel {width}x{height}")
            boxes.append((f"{row['setting']!r} {part}", box))
    for (name_a, a), (name_b, b) in itertools.combinations(boxes, 2):
        if overlap(a, b):
            problems.append(f"{name_a} {a} overlaps {name_b} {b}")
    return problems


def test_no_wx_errors_in_the_log(gui_run):
    report, log, _ = gui_run
    assert report["errors"] == [], "the driver failed:\n" + "\n".join(report["errors"])
    for marker in ("Detected WX error", "WX internal error", "TypeError", "Failed to run module",
                   "Failure in analysis startup", "A fatal error has been detected"):
        assert marker not in log, f"{marker!r} in the CellProfiler log"


def test_only_expected_dialogs(gui_run):
    report, _, _ = gui_run
    # and the Stop Analysis button's "Are you sure?", answered by the driver
    assert set(report["dialogs"]) <= {"Analysis complete", "Stop analysis run"}, report["dialogs"]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_module_panel_lays_out(gui_run, pipeline):
    report, _, out = gui_run
    panels = [p for p in report["panels"] if p["pipeline"] == pipeline]
    assert panels, f"{pipeline}: no module was selected"
    problems = {}
    for panel in panels:
        name = f"{panel['module_num']} {panel['module']}"
        found = layout_problems(panel)
        if panel["module"] in ("Images", "NamesAndTypes"):
            if not any(h >= MIN_PANE_HEIGHT for _, h in panel["sashes"]):
                found.append(f"file list / image-set pane collapsed: {panel['sashes']}")
        if panel["module"] == "NamesAndTypes":
            found.extend(corner_button_problems(panel["corner_buttons"]))
        assert (out / panel["screenshot"]).stat().st_size > 0
        if found:
            problems[name] = found
    assert not problems, "\n".join(f"{name}: {lines}" for name, lines in problems.items())


def corner_button_problems(buttons):
    if not buttons:
        return ["no Update button in the NamesAndTypes table corner"]
    problems = []
    for button in buttons:
        if not isinstance(button["button"], list):
            problems.append(f"Update button: {button['button']}")
            continue
        x, y, w, h = button["button"]
        cx, cy, cw, ch = button["corner"]
        if w <= 0 or h <= 0 or x < cx or y < cy or x + w > cx + cw or y + h > cy + ch:
            problems.append(f"Update button {button['button']} not inside its corner {button['corner']}")
    return problems


def figure_problems(figure):
    if not figure["found"] or not figure["shown"]:
        return [f"{figure['module']}: no figure window"]
    problems = []
    if figure["axes_with_images"] < 1:
        problems.append(f"{figure['module']}: no image subplot ({figure['axes']} axes)")
    if not figure["tables"]:
        problems.append(f"{figure['module']}: no table")
    width, height = figure["canvas"]
    for table in figure["tables"]:
        x, y, w, h = table["rect"]
        if table["rows"] < 1 or w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            problems.append(f"{figure['module']}: table {table} not laid out in the canvas {figure['canvas']}")
    return problems


def test_test_mode_figures(gui_run):
    report, _, out = gui_run
    assert report["test_mode"], "no pipeline ran in test mode"
    modules_seen = set()
    problems = []
    for run in report["test_mode"]:
        assert run["started"], f"{run['pipeline']}: test mode did not start"
        assert run["figures"], f"{run['pipeline']}: no nucleai module ran"
        for figure in run["figures"]:
            modules_seen.add(figure["module"])
            problems.extend(f"{run['pipeline']}: {line}" for line in figure_problems(figure))
            if figure["found"]:
                assert (out / figure["screenshot"]).stat().st_size > 0
    assert not problems, "\n".join(problems)
    assert modules_seen >= {"RunStarConvex", "RefineContoursUNet", "TTAMerge", "EvaluateSegmentation"}


def test_analyze_images_writes_the_demo_outputs(gui_run):
    report, _, out = gui_run
    analysis = report["analysis"]
    assert analysis and analysis["started"], "Analyze Images did not start"
    assert not analysis["timed_out"]
    outputs = set(analysis["outputs"])
    assert {"Image.csv", "Nuclei.csv", "Cells.csv"} <= outputs, outputs
    assert len([name for name in outputs if name.endswith("_nuclei_labels.tiff")]) == DEMO_IMAGES
    with open(out / "analysis" / "Image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == DEMO_IMAGES
    assert all((float(row["Count_Nuclei"]) > 0) == (row["FileName_DNA"] != "nuclei_blank.png") for row in rows)
    assert "Analysis complete" in report["dialogs"]
    for figure in analysis["figures"]:
        assert not figure_problems(figure), figure_problems(figure)


def test_the_transform_list_opens_at_identity(gui_run):
    """The list in the real panel: it opened scrolled past "identity" while the panel was laid
    out wrongly (CellProfiler's float bug), and wx on GTK scrolls a list shown smaller than its
    rows to the last item CellProfiler selects (nucleai.gui_compat scrolls it back; its effect
    alone: test_gui_compat_wx.py)."""
    report, _, _ = gui_run
    lists = [row for panel in report["panels"] if panel["module"] == "TTAMerge"
             for row in panel["settings"] if row["setting"] == "Transforms"]
    assert lists, "no TTAMerge panel showed its transform list"
    assert [row.get("first_visible") for row in lists] == ["identity"] * len(lists)


# ------------------------------------------------------------------------------------------------
# StyleAugmentTrain in the GUI: its figures, its training and Stop Analysis


def dark_share(path):
    """Share of nearly black pixels in a screenshot: the demo images are mostly black background."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(path).convert("L"))
    return float((grey < 40).mean())


def style_table(figure):
    (table,) = figure["tables"]
    return table


def test_the_staged_file_is_shown_whole(gui_run):
    report, _, out = gui_run
    (run,) = [r for r in report["test_mode"] if r["pipeline"] == "styleaugmenttrain_nuclei"]
    (figure,) = [f for f in run["figures"] if f["module"] == "StyleAugmentTrain"]
    assert not figure_problems(figure), figure_problems(figure)
    table = style_table(figure)
    assert table["cells"]["File"].replace("\n", "").startswith("short/training_data/images/00001_")
    assert table["best"][0] <= table["rect"][2], f"the table is cut: needs {table['best']}, has {table['rect']}"
    assert dark_share(out / figure["screenshot"]) > 0.2, "the image set's picture is shown"


def test_the_training_summary_is_drawn_alone(gui_run):
    report, _, out = gui_run
    training = report["training"]
    assert training and training["started"] and not training["timed_out"]
    figure = training["figure"]
    assert figure["found"] and figure["axes_with_images"] == 0
    cells = style_table(figure)["cells"]
    assert cells["Epochs"] == "1 (all epochs done)" and "Validation DSB score" in cells
    assert {"thresholds.json", "MODEL.md", "weights_best.h5"} <= set(training["model_files"])
    # the last image set's picture is gone from the canvas, not only from the figure's axes
    assert dark_share(out / figure["screenshot"]) < 0.05


def test_stop_analysis_stops_training_within_seconds_and_keeps_a_complete_model(gui_run):
    report, _, _ = gui_run
    stop = report["stop"]
    assert stop and stop["started"] and not stop["timed_out"], stop
    progress = style_table(stop["progress_figure"])["cells"]
    assert progress["Training"].startswith("epoch ") and " of 1000, step " in progress["Training"], progress
    assert float(progress["Training loss"]) > 0 and progress["Time left"]
    assert stop["stop_seconds"] < 30, f"the GUI hung {stop['stop_seconds']} s in Stop Analysis"
    assert {"config.json", "weights_best.h5", "thresholds.json", "nucleai.json", "MODEL.md"} <= set(stop["model_files"])
    assert "stopped on request" in stop["card"]
    assert "stopped on request" in style_table(stop["figure"])["cells"]["Epochs"].replace("\n", " ")
