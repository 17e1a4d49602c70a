"""Write starconvex_nuclei.cppipe: the classical example with IdentifyPrimaryObjects swapped.

The star-convex example pipeline is *derived* from ``classical_nuclei.cppipe`` so the two stay
comparable: IdentifyPrimaryObjects is replaced, at the same position, by RunStarConvex reading
the same image and naming its objects the same (``Nuclei``), with the bundled model
``fluo_nuclei`` and otherwise default settings. Every other module is copied unchanged.

    .venv/bin/python example_pipelines/make_starconvex_pipeline.py

Run it again after changing the classical pipeline or RunStarConvex's settings.
"""
import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def build(classical=HERE / "classical_nuclei.cppipe", output=HERE / "starconvex_nuclei.cppipe",
          model="fluo_nuclei"):
    import logging

    import cellprofiler_core.preferences as preferences

    # CellProfiler's module scan warns about every module it registers twice and about MySQL.
    logging.getLogger().setLevel(logging.ERROR)
    preferences.set_headless()
    preferences.set_plugin_directory(str(REPO / "plugins"), globally=False)
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.utilities.core.modules import fill_modules, instantiate_module

    fill_modules()
    pipeline = Pipeline()
    pipeline.load(str(classical))
    identify = [m for m in pipeline.modules() if m.module_name == "IdentifyPrimaryObjects"]
    if len(identify) != 1:
        raise SystemExit(f"{classical}: expected one IdentifyPrimaryObjects, found {len(identify)}")
    old = identify[0]

    module = instantiate_module("RunStarConvex")
    module.x_name.value = old.x_name.value
    module.y_name.value = old.y_name.value
    module.model_source.value = "Bundled model"
    module.bundled_model.value = model
    module.set_module_num(old.module_num)
    module.notes = [
        "Deep-learning nucleus segmentation (star-convex polygons, the StarDist method) with "
        f"the bundled model '{model}'. It replaces IdentifyPrimaryObjects of "
        "classical_nuclei.cppipe; every other module is unchanged."
    ]
    pipeline.remove_module(old.module_num)
    pipeline.add_module(module)
    with open(output, "w") as handle:
        pipeline.dump(handle, save_image_plane_details=False)
    return output


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=HERE / "starconvex_nuclei.cppipe")
    parser.add_argument("--model", default="fluo_nuclei")
    args = parser.parse_args()
    print(build(output=args.output, model=args.model))


if __name__ == "__main__":
    main()
