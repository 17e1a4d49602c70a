# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Star distances by ray marching (compiled core of :func:`nucleai.geometry.star_dist`).

The arithmetic is stardist's, in the same single-precision steps, so that training targets are
the ones stardist computes: from each pixel, step along ray ``k`` (angle ``2 pi k / n_rays``) by
one unit, round to the nearest pixel (half to even), and stop at the first pixel outside the
image or with another label; the distance is then pulled back to the exit of the last pixel
inside (half a pixel along the dominant axis).
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport prange
from libc.math cimport M_PI

cimport openmp

cnp.import_array()

cdef extern from "math.h" nogil:
    float sinf(float)
    float cosf(float)
    float sqrtf(float)
    float fabsf(float)
    float fmaxf(float, float)
    long lrintf(float)


cdef float _march(const cnp.int64_t[:, ::1] labels, Py_ssize_t i, Py_ssize_t j,
                  float dy, float dx) nogil:
    """Distance from pixel (i, j) to the boundary of its object along direction (dy, dx)."""
    cdef cnp.int64_t value = labels[i, j]
    cdef Py_ssize_t h = labels.shape[0], w = labels.shape[1], ii, jj
    cdef float y = 0, x = 0, t_corr
    while True:
        y += dy
        x += dx
        ii = lrintf(i + y)
        jj = lrintf(j + x)
        if ii < 0 or ii >= h or jj < 0 or jj >= w or labels[ii, jj] != value:
            # float literals: a double constant would promote these steps to double
            t_corr = (<float>0.5) / fmaxf(fabsf(dy), fabsf(dx))
            y += (t_corr - <float>1) * dy
            x += (t_corr - <float>1) * dx
            return sqrtf(y * y + x * x)


def star_dist(const cnp.int64_t[:, ::1] labels, int n_rays, int grid_y, int grid_x):
    """Star distances of the pixels ``(i * grid_y, j * grid_x)``; 0 on background."""
    cdef Py_ssize_t h = (labels.shape[0] - 1) // grid_y + 1
    cdef Py_ssize_t w = (labels.shape[1] - 1) // grid_x + 1
    cdef cnp.ndarray[cnp.float32_t, ndim=3] out_arr = np.zeros((h, w, n_rays), np.float32)
    cdef float[:, :, ::1] out = out_arr
    cdef float step = <float>(2 * M_PI / n_rays), phi
    cdef Py_ssize_t i, j
    cdef int k
    with nogil:
        for i in prange(h, schedule='dynamic', num_threads=openmp.omp_get_max_threads()):
            for j in range(w):
                if labels[i * grid_y, j * grid_x] == 0:
                    continue
                for k in range(n_rays):
                    phi = k * step
                    out[i, j, k] = _march(labels, i * grid_y, j * grid_x, sinf(phi), cosf(phi))
    return out_arr
