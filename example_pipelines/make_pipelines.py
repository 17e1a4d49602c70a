"""Write the example pipelines with CellProfiler's own API, so the .cppipe format is exact.

- ``classical_nuclei.cppipe``: NamesAndTypes (image DNA) -> IdentifyPrimaryObjects (Nuclei) ->
  IdentifySecondaryObjects (Cells) -> MeasureObjectIntensity -> ConvertObjectsToImage ->
  SaveImages (16-bit label TIFF) -> ExportToSpreadsheet.
- ``starconvex_nuclei.cppipe``: the same with IdentifyPrimaryObjects swapped, at the same
  position and with the same object name, for RunStarConvex (bundled model ``fluo_nuclei``);
  every other module is unchanged. This is what ``make demo`` runs.
- ``refine_nuclei.cppipe``: the star-convex pipeline with RefineContoursUNet (bundled refinement
  model ``fluo_refine``) after RunStarConvex: RunStarConvex names its objects ``StarConvexNuclei``
  and the refined objects are ``Nuclei``, so the downstream modules are unchanged.
- ``ttamerge_nuclei.cppipe``: RunStarConvex (``StarConvexNuclei``) and IdentifyPrimaryObjects
  (``ClassicalNuclei``), then TTAMerge twice: the bundled model under test-time augmentation
  (``Nuclei``, which the downstream modules measure) and the consensus of the two upstream sets
  (``ConsensusNuclei``: objects both found).
- ``evaluate_nuclei.cppipe``: pairs each ``images/<stem>.png`` with its ground-truth
  ``ground_truth/<stem>.tif`` (loaded as objects; run on the folder holding both, so the
  histology set beside them is ignored), segments with both methods, scores each with
  EvaluateSegmentation and saves each method's labels as ``classical/<stem>.tiff`` and
  ``starconvex/<stem>.tiff`` so ``nucleai evaluate`` can score the same files.
- ``histology_nuclei.cppipe``: the same pairing for colour (H&E-like) images in
  ``example_pipelines/histology``: RunStarConvex with the *Automatic* model choice (which takes
  the bundled colour model ``histo_nuclei`` for them), scored by EvaluateSegmentation against the
  annotations.
- ``brightfield_nuclei.cppipe``: the same for the grey brightfield images in
  ``example_pipelines/brightfield`` (dark nuclei on a bright background; 384 x 384 top-left crops
  of two annotated DSB 2018 training images), RunStarConvex *Automatic*.

The classical IdentifyPrimaryObjects settings (diameter 12-80 px, smaller objects kept) were
chosen on 40 DSB training images (DSB score 0.206 with 6-80 px and discarding -> 0.333).

    .venv/bin/python example_pipelines/make_pipelines.py
"""
import logging
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "fluo_nuclei"
REFINE_MODEL = "fluo_refine"
HISTO_MODEL = "histo_nuclei"
#: RunStarConvex's bundled choice that picks the model per image (nucleai.modality).
AUTOMATIC = "Automatic"


def load_cellprofiler():
    """Headless CellProfiler with this repo's plugins registered."""
    import cellprofiler_core.preferences as preferences

    # CellProfiler's module scan warns about every module it registers twice and about MySQL.
    logging.getLogger().setLevel(logging.ERROR)
    preferences.set_headless()
    preferences.set_plugin_directory(str(REPO / "plugins"), globally=False)
    from cellprofiler_core.utilities.core.modules import fill_modules

    fill_modules()


def module(name, **settings):
    """A module by name with the given settings (attribute name -> value)."""
    from cellprofiler_core.utilities.core.modules import instantiate_module

    instance = instantiate_module(name)
    for attribute, value in settings.items():
        getattr(instance, attribute).value = value
    return instance


def identify_primary(image, objects):
    return module(
        "IdentifyPrimaryObjects", x_name=image, y_name=objects, size_range=(12, 80),
        exclude_size=False, exclude_border_objects=False,
    )


def run_star_convex(image, objects, model=MODEL):
    instance = module(
        "RunStarConvex", x_name=image, y_name=objects, model_source="Bundled model", bundled_model=model
    )
    used = ("the bundled model chosen per image for its kind (fluorescence, brightfield, colour histology)"
            if model == AUTOMATIC else f"the bundled model '{model}'")
    instance.notes = [f"Deep-learning nucleus segmentation (star-convex polygons, the StarDist method) with {used}."]
    return instance


def refine_contours(image, objects, refined):
    instance = module(
        "RefineContoursUNet", x_name=objects, y_name=refined, image_name=image,
        model_source="Bundled model", bundled_model=REFINE_MODEL,
    )
    instance.notes = [
        f"Contour refinement (nucleAIzer's rules) with the U-Net '{REFINE_MODEL}' and its tuned "
        "parameters; output objects are children of the star-convex ones."
    ]
    return instance


def tta_merge(image, objects):
    instance = module(
        "TTAMerge", mode="Segment with test-time augmentation", x_name=image, y_name=objects,
        model_source="Bundled model", bundled_model=MODEL,
    )
    instance.notes = [
        f"The bundled model '{MODEL}' under test-time augmentation: the image flipped and rotated "
        "(six versions), each result turned back, objects kept when at least half find them."
    ]
    return instance


def consensus(inputs, objects):
    instance = module(
        "TTAMerge", mode="Merge object sets", object_names=", ".join(inputs), y_name=objects,
        vote_rule="More than half of the versions",
    )
    instance.notes = [f"Objects that {' and '.join(inputs)} both found (IoU >= 0.5), outlines voted."]
    return instance


def save_labels(objects, image_name, suffix="", subfolder=None):
    """ConvertObjectsToImage + SaveImages: ``objects`` as a 16-bit label TIFF named after DNA."""
    convert = module("ConvertObjectsToImage", object_name=objects, image_name=image_name, image_mode="uint16")
    save = module(
        "SaveImages", image_name=image_name, file_name_method="From image filename", file_image_name="DNA",
        wants_file_name_suffix=bool(suffix), file_name_suffix=suffix, file_format="tiff",
        bit_depth="16-bit integer", overwrite=True,
    )
    if subfolder:
        save.pathname.value = f"Default Output Folder sub-folder|{subfolder}"
    return [convert, save]


def export():
    return module("ExportToSpreadsheet", wants_prefix=False, wants_overwrite_without_warning=True)


def single_image_input():
    images = module("Images")
    images.filter.value = 'and (extension does isimage) (file does endwith ".png")'
    names = module(
        "NamesAndTypes", assignment_method="All images", single_load_as_choice="Grayscale image",
        single_image_provider="DNA",
    )
    return [images, module("Metadata"), names, module("Groups")]


def image_and_truth_input(image="DNA", load_as="Grayscale image", folders=None):
    """Images and ground-truth label images paired by file stem (``<stem>.png``, ``<stem>.tif``).

    ``folders`` (image folder name, truth folder name) restricts each rule to files in a folder
    of that name, so a pipeline run on a parent folder pairs only those two and ignores the
    other example sets beside them.
    """
    image_folder, truth_folder = folders or (None, None)
    images = module("Images")
    images.filter.value = 'or (file does endwith ".png") (file does endwith ".tif")'
    metadata = module("Metadata", wants_metadata=True)
    extraction = metadata.extraction_methods[0]
    extraction.extraction_method.value = "Extract from file/folder names"
    extraction.source.value = "File name"
    extraction.file_regexp.value = r"^(?P<Stem>[^.]+)\."
    names = module("NamesAndTypes", assignment_method="Images matching rules", matching_choice="Metadata")
    image_rule = names.assignments[0]
    image_rule.rule_filter.value = rule(".png", image_folder)
    image_rule.image_name.value = image
    image_rule.load_as_choice.value = load_as
    names.add_assignment()
    truth_rule = names.assignments[1]
    truth_rule.rule_filter.value = rule(".tif", truth_folder)
    truth_rule.object_name.value = "GroundTruth"
    truth_rule.load_as_choice.value = "Objects"
    names.join.build([{image: "Stem", "GroundTruth": "Stem"}])
    return [images, metadata, names, module("Groups")]


def rule(extension, folder=None):
    """A NamesAndTypes rule: files ending with ``extension``, in a folder named ``folder`` if given."""
    clauses = [f'(file does endwith "{extension}")']
    if folder:
        clauses.append(f'(directory does endwith "{folder}")')
    return "and " + " ".join(clauses)


def downstream():
    secondary = module(
        "IdentifySecondaryObjects", x_name="Nuclei", y_name="Cells", image_name="DNA",
        method="Distance - N", distance_to_dilate=5,
    )
    intensity = module("MeasureObjectIntensity", images_list="DNA", objects_list="Nuclei, Cells")
    return [secondary, intensity, *save_labels("Nuclei", "NucleiLabels", suffix="_nuclei_labels"), export()]


def classical():
    return [*single_image_input(), identify_primary("DNA", "Nuclei"), *downstream()]


def star_convex():
    return [*single_image_input(), run_star_convex("DNA", "Nuclei"), *downstream()]


def refined_star_convex():
    return [
        *single_image_input(), run_star_convex("DNA", "StarConvexNuclei"),
        refine_contours("DNA", "StarConvexNuclei", "Nuclei"), *downstream(),
    ]


def tta_and_consensus():
    return [
        *single_image_input(), run_star_convex("DNA", "StarConvexNuclei"),
        identify_primary("DNA", "ClassicalNuclei"), tta_merge("DNA", "Nuclei"),
        consensus(["StarConvexNuclei", "ClassicalNuclei"], "ConsensusNuclei"), *downstream(),
    ]


def evaluation():
    modules = image_and_truth_input(folders=("images", "ground_truth"))
    methods = (("classical", identify_primary, "ClassicalNuclei"), ("starconvex", run_star_convex, "StarConvexNuclei"))
    for subfolder, segment, objects in methods:
        modules.append(segment("DNA", objects))
        modules.append(module("EvaluateSegmentation", truth_objects="GroundTruth", predicted_objects=objects))
        modules.extend(save_labels(objects, f"{objects}Labels", subfolder=subfolder))
    return modules + [export()]


def histology():
    modules = image_and_truth_input(image="HE", load_as="Color image")
    modules.append(run_star_convex("HE", "Nuclei", model=AUTOMATIC))
    modules.append(module("EvaluateSegmentation", truth_objects="GroundTruth", predicted_objects="Nuclei"))
    return modules + [export()]


def brightfield():
    modules = image_and_truth_input(image="Brightfield")
    modules.append(run_star_convex("Brightfield", "Nuclei", model=AUTOMATIC))
    modules.append(module("EvaluateSegmentation", truth_objects="GroundTruth", predicted_objects="Nuclei"))
    return modules + [export()]


def write(modules, path):
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    for number, instance in enumerate(modules, 1):
        instance.set_module_num(number)
        # The eye is on, so a GUI user sees every module's figure in test mode and when analysing
        # (headless runs ignore it).
        instance.show_window = True
        pipeline.add_module(instance)
    with open(path, "w") as handle:
        pipeline.dump(handle, save_image_plane_details=False)
    print(path)


def main():
    load_cellprofiler()
    write(classical(), HERE / "classical_nuclei.cppipe")
    write(star_convex(), HERE / "starconvex_nuclei.cppipe")
    write(refined_star_convex(), HERE / "refine_nuclei.cppipe")
    write(tta_and_consensus(), HERE / "ttamerge_nuclei.cppipe")
    write(evaluation(), HERE / "evaluate_nuclei.cppipe")
    write(histology(), HERE / "histology_nuclei.cppipe")
    write(brightfield(), HERE / "brightfield_nuclei.cppipe")


if __name__ == "__main__":
    main()
