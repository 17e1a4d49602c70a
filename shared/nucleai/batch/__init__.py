"""Screen-scale runs: one CellProfiler batch file, run as slices, checked, retried and merged.

A screen is run the way CellProfiler's cluster users run it: CreateBatchFiles writes
``Batch_data.h5`` (the pipeline, the file list and the path mappings), then many
``cellprofiler -c -r -p Batch_data.h5 -f FIRST -l LAST`` processes each run a slice of the image
sets. This package does every step of that for ``nucleai batch``, one module a step:

1. :mod:`.batchfile` appends CreateBatchFiles (with the local -> cluster path mappings)
   to the pipeline through CellProfiler's API and runs it once headless;
2. :mod:`.planning` cuts the image sets into contiguous slices that never split a group
   (grouped pipelines aggregate per group);
3. :mod:`.schedulers` runs them as local processes or as one Slurm array job, and
   :mod:`.checks` decides from each slice's exit status, done file and log whether it
   really ran: headless CellProfiler exits 0 even when the pipeline did not load (a missing
   plugin: "Could not find the RunStarConvex module") or a module raised, so a scheduler's
   success means nothing on its own;
4. :mod:`.merge` joins the slices' ExportToSpreadsheet tables into one set, equal to a
   single full run's, and gathers the other files they wrote.

Everything lives under one output folder, so a second run with the same inputs resumes: slices
marked good are not run again.

Layout of the output folder (:mod:`.layout`)::

    batch_pipeline.cppipe   the pipeline with CreateBatchFiles appended
    create_batch.log        CellProfiler's log of writing the batch file
    Batch_data.h5           the batch file
    batch_plan.json         the inputs' fingerprint, the slices and the modules each must run
    slices/slice_N/         output/ (the slice's default output folder), cellprofiler.log,
                            done (CellProfiler's done file), exit_status, ok (once checked)
    *.csv and other files   the merged results
"""
from .layout import BATCH_FILE, DEFAULT_PLUGINS, PLAN_FILE, Plan, Slice
from .merge import merge_outputs
from .planning import prepare
from .schedulers import run_slices

__all__ = ["BATCH_FILE", "DEFAULT_PLUGINS", "PLAN_FILE", "Plan", "Slice", "merge_outputs",
           "prepare", "run_slices"]
