# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Polygons to labels (compiled core of :func:`nucleai.geometry.polygons_to_label`).

A pixel belongs to a polygon when ``skimage.draw.polygon`` would draw it, so that every label
image is the one skimage (and so stardist) draws, pixel for pixel. skimage classifies each pixel
centre of the polygon's bounding box (rows ``int(max(0, min y))`` to ``ceil(max y)``, clipped
to the image; columns alike) with O'Rourke's crossing test and draws it when it is inside, on an
edge or within 1e-12 of a vertex: for every edge it counts crossings of the rightward ray
(the edge straddles the row, its end rows on different sides of ``> 0``) and of the leftward ray
(``< 0``), each decided by the sign of the same double-precision expression; the pixel is drawn
when the two counts differ in parity (on an edge) or the rightward count is odd (inside).

Here the same decisions are made with the same expressions, but row by row: on one row, which
edges straddle it, and which vertices lie on it, does not depend on the column, so each row
finds its few straddling edges (two for a convex polygon) once and every pixel of the row tests
only those, instead of all ``n_rays`` edges; the whole loop runs without Python objects.
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport ceil
from libc.stdlib cimport free, malloc

cnp.import_array()

ctypedef fused label_t:
    cnp.uint16_t
    cnp.uint32_t


cdef double VERTEX_TOLERANCE = 1e-12


cdef void _fill(label_t[:, ::1] labels, const double *ys, const double *xs, Py_ssize_t n,
                label_t value, Py_ssize_t *rightward, Py_ssize_t *leftward, Py_ssize_t *on_row) noexcept nogil:
    """Draw one polygon (vertices ``ys``, ``xs``) as ``value``; the three index arrays are
    scratch space of ``n`` entries each."""
    cdef Py_ssize_t height = labels.shape[0], width = labels.shape[1]
    cdef double min_y = ys[0], max_y = ys[0], min_x = xs[0], max_x = xs[0]
    cdef double y, x, y0, y1, x0, x1, offset
    cdef Py_ssize_t k, i, j, e, row, col, first_row, last_row, first_col, last_col
    cdef Py_ssize_t n_right, n_left, n_on_row, right, left
    cdef bint drawn
    for k in range(1, n):
        min_y = min(min_y, ys[k])
        max_y = max(max_y, ys[k])
        min_x = min(min_x, xs[k])
        max_x = max(max_x, xs[k])
    first_row = <Py_ssize_t>max(0.0, min_y)
    last_row = min(height - 1, <Py_ssize_t>ceil(max_y))
    first_col = <Py_ssize_t>max(0.0, min_x)
    last_col = min(width - 1, <Py_ssize_t>ceil(max_x))
    for row in range(first_row, last_row + 1):
        y = row
        n_right = n_left = n_on_row = 0
        j = n - 1  # edge (j, i): from the previous vertex to vertex i
        for i in range(n):
            y0 = ys[i] - y
            y1 = ys[j] - y
            if (y0 > 0) != (y1 > 0):
                rightward[n_right] = i
                n_right += 1
            if (y0 < 0) != (y1 < 0):
                leftward[n_left] = i
                n_left += 1
            if -VERTEX_TOLERANCE < y0 < VERTEX_TOLERANCE:
                on_row[n_on_row] = i
                n_on_row += 1
            j = i
        if n_right == 0 and n_left == 0 and n_on_row == 0:
            continue
        for col in range(first_col, last_col + 1):
            x = col
            drawn = False
            for k in range(n_on_row):
                offset = xs[on_row[k]] - x
                if -VERTEX_TOLERANCE < offset < VERTEX_TOLERANCE:
                    drawn = True
                    break
            if not drawn:
                right = left = 0
                for k in range(n_right):
                    i = rightward[k]
                    j = i - 1 if i > 0 else n - 1
                    x0, y0, x1, y1 = xs[i] - x, ys[i] - y, xs[j] - x, ys[j] - y
                    if (x0 * y1 - x1 * y0) / (y1 - y0) > 0:
                        right += 1
                for k in range(n_left):
                    i = leftward[k]
                    j = i - 1 if i > 0 else n - 1
                    x0, y0, x1, y1 = xs[i] - x, ys[i] - y, xs[j] - x, ys[j] - y
                    if (x0 * y1 - x1 * y0) / (y1 - y0) < 0:
                        left += 1
                drawn = (right & 1) != (left & 1) or (right & 1)
            if drawn:
                labels[row, col] = value


def render_polygons(const float[:, :, ::1] coord, const cnp.intp_t[::1] order, label_t[:, ::1] labels):
    """Draw polygon ``order[0]``, then ``order[1]``, ... into ``labels`` (in place); polygon ``i``
    gets label ``i + 1``, later ones on top.

    Parameters
    ----------
    coord : (n, 2, n_vertices) float32 array
        Rows (``coord[i, 0]``) and columns (``coord[i, 1]``) of each polygon's vertices.
    order : (m,) intp array
        The polygons to draw, in drawing order (indices into ``coord``).
    labels : (H, W) uint16 or uint32 array, C-contiguous
    """
    cdef Py_ssize_t n_vertices = coord.shape[2], k, v, i
    cdef Py_ssize_t size = max(n_vertices, 1)
    cdef double *ys = <double *>malloc(2 * size * sizeof(double))
    cdef Py_ssize_t *scratch = <Py_ssize_t *>malloc(3 * size * sizeof(Py_ssize_t))
    if ys == NULL or scratch == NULL:
        free(ys)
        free(scratch)
        raise MemoryError()
    cdef double *xs = ys + size
    try:
        with nogil:
            for k in range(order.shape[0]):
                i = order[k]
                for v in range(n_vertices):
                    ys[v] = coord[i, 0, v]
                    xs[v] = coord[i, 1, v]
                _fill(labels, ys, xs, n_vertices, <label_t>(i + 1), scratch, scratch + size,
                      scratch + 2 * size)
    finally:
        free(ys)
        free(scratch)
