"""Path mapping for CreateBatchFiles, shared by every nucleai module that has a path setting.

A screen is run as CreateBatchFiles plus many ``cellprofiler -c -r -p Batch_data.h5 -f N -l M``
jobs on cluster nodes, where the folders are often mounted elsewhere (``/Users/me/screen`` on the
desktop, ``/mnt/screen`` on the nodes). CreateBatchFiles rewrites the paths in the batch file
with its local -> cluster mappings, but only for modules that implement
``prepare_to_create_batch`` (as SaveImages and ExportToSpreadsheet do); without it a custom model
folder or output folder keeps its desktop path and the jobs fail on the nodes.

This mixin implements it once, for every path setting of the module: each ``Directory`` setting
(model folders, output folders) through its own ``alter_for_create_batch_files``, which leaves
the default input/output folder choices alone (CreateBatchFiles maps those itself), and each
``Pathname`` setting (a file path) through ``fn_alter_path``. The settings are found by type in
``settings()``, so a path setting added later is mapped without touching this list.
CellProfiler does not load files starting with ``_`` from the plugins folder as modules, but the
folder is on ``sys.path`` while the modules are imported, so they can import this one.
"""
from cellprofiler_core.setting.text import Directory, Pathname


class BatchPathsMixin:
    """Mixin for modules with path settings: CreateBatchFiles' path mappings apply to them.

    Put it first among the module's bases (``class RunStarConvex(BatchPathsMixin, ...)``) so its
    ``prepare_to_create_batch`` replaces :class:`cellprofiler_core.module.Module`'s no-op.
    """

    def prepare_to_create_batch(self, workspace, fn_alter_path):
        """Rewrite every path setting for the cluster with CreateBatchFiles' ``fn_alter_path``.

        Parameters
        ----------
        workspace : cellprofiler_core.workspace.Workspace
            Unused: the paths live in the settings, not in measurements.
        fn_alter_path : callable
            ``fn_alter_path(path, regexp_substitution=False) -> path`` from CreateBatchFiles.

        Returns
        -------
        bool
            True, as CellProfiler's hook expects on success.
        """
        for setting in self.settings():
            if isinstance(setting, Directory):
                setting.alter_for_create_batch_files(fn_alter_path)
            elif isinstance(setting, Pathname):
                setting.value = fn_alter_path(setting.value)
        return True
