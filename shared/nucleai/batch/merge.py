"""The slices' results as one set: merged ExportToSpreadsheet tables and gathered files."""
import csv
import os
import shutil
import sys

from ..errors import InputError
from .layout import slice_dir


def _delimiter(path):
    with open(path, newline="") as handle:
        header = handle.readline()
    return "\t" if header.count("\t") > header.count(",") else ","


def _image_number_columns(rows):
    """The header rows and the columns holding image numbers of an ExportToSpreadsheet table.

    Per-image and per-object tables start with an ``ImageNumber`` column (relationship tables
    have ``ImageNumber_First``/``_Second``); tables that combine several objects have two header
    rows, object names above feature names. Other tables (Experiment) have none.
    """
    for n_header in (1, 2):
        if len(rows) < n_header:
            break
        names = rows[n_header - 1]
        columns = [i for i, name in enumerate(names)
                   if name == "ImageNumber" or name.startswith("ImageNumber_")]
        if columns:
            return n_header, columns
    return None, []


def merge_tables(pieces, output_dir):
    """Merge each CSV table of the slices' output folders into ``output_dir``.

    Per-image and per-object tables are the first slice's header and every slice's rows in
    slice order; CellProfiler numbers image sets across the whole batch file, so the rows keep
    their ``ImageNumber`` (checked to lie in the slice's range); the Image table's group
    positions are recounted over all slices, so the result equals a single full run's table.
    Tables without image numbers (Experiment) are the first slice's.

    Returns
    -------
    list of Path
        The merged tables.

    Raises
    ------
    InputError
        If the slices' tables differ in names or headers, or a slice holds image numbers outside
        its range.
    """
    first_output = slice_dir(output_dir, pieces[0]) / "output"
    names = sorted(path.name for path in first_output.glob("*.csv"))
    merged = []
    for name in names:
        delimiter = _delimiter(first_output / name)
        header, image_columns, rows = None, [], []
        for piece in pieces:
            path = slice_dir(output_dir, piece) / "output" / name
            if not path.is_file():
                raise InputError(f"{piece.describe()} wrote no {name} (its {path.parent})")
            with open(path, newline="") as handle:
                table = list(csv.reader(handle, delimiter=delimiter))
            if header is None:
                n_header, image_columns = _image_number_columns(table)
                header = table if n_header is None else table[:n_header]
                if n_header is None:
                    if table[:1] != [["Key", "Value"]] and len(pieces) > 1:
                        print(f"nucleai batch: warning: {name} has no image numbers (a summary "
                              "of the run?): it is slice 1's and covers only its image sets",
                              file=sys.stderr)
                    break
            if table[:len(header)] != header:
                raise InputError(f"{name}: {piece.describe()} has other columns than slice 1")
            for row in table[len(header):]:
                numbers = {int(row[column]) for column in image_columns if row[column]}
                if any(not piece.first <= number <= piece.last for number in numbers):
                    raise InputError(f"{name}: {piece.describe()} holds image numbers "
                                     f"{sorted(numbers)} outside its range")
                rows.append(row)
        if len(header) == 1:
            _renumber_groups(header[0], rows)
        target = output_dir / name
        with open(target, "w", newline="") as handle:
            csv.writer(handle, delimiter=delimiter).writerows(header + rows)
        merged.append(target)
    return merged


def _renumber_groups(names, rows):
    """Give the merged Image table the ``Group_Index``/``Group_Length`` of one full run.

    A slice numbers the image sets of each group it holds from 1 and counts only those: right
    for grouped pipelines (slices hold whole groups), wrong for an ungrouped one, whose single
    group the slices split. Recounting over the merged rows (in image-number order) gives the
    full run's values in both cases.
    """
    if not {"Group_Number", "Group_Index", "Group_Length"} <= set(names):
        return
    number, index, length = (names.index(name)
                             for name in ("Group_Number", "Group_Index", "Group_Length"))
    sizes, seen = {}, {}
    for row in rows:
        sizes[row[number]] = sizes.get(row[number], 0) + 1
    for row in rows:
        seen[row[number]] = seen.get(row[number], 0) + 1
        row[index], row[length] = str(seen[row[number]]), str(sizes[row[number]])


def gather_files(pieces, output_dir):
    """Hard-link (or copy) every non-CSV file the slices wrote into ``output_dir``.

    Paths below each slice's output folder are kept. Two slices writing the same file name
    with different contents is an error: one of them would be lost.

    Returns
    -------
    int
        The number of files gathered.
    """
    count = 0
    for piece in pieces:
        source_root = slice_dir(output_dir, piece) / "output"
        for source in sorted(path for path in source_root.rglob("*") if path.is_file()):
            if source.suffix == ".csv":
                continue
            target = output_dir / source.relative_to(source_root)
            if target.exists():
                if target.samefile(source):
                    count += 1
                    continue
                if target.read_bytes() != source.read_bytes():
                    raise InputError(f"{source.relative_to(source_root)} is written by more "
                                     "than one slice with different contents "
                                     f"(last: {piece.describe()})")
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            count += 1
    return count


def merge_outputs(plan, output_dir):
    """Merge the tables and gather the files of every slice; returns (tables, number of files)."""
    return merge_tables(plan.slices, output_dir), gather_files(plan.slices, output_dir)
