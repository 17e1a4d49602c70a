# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Greedy non-maximum suppression of star-convex polygons (compiled core of :mod:`nucleai.nms`).

Everything here works on candidates already sorted by descending score; :mod:`nucleai.nms`
validates the input and does the sorting.

Polygons on the integer grid
----------------------------
stardist intersects its polygons with a clipping library that works on integer coordinates, so
every vertex ``(y, x) = point + d * (sin phi_k, cos phi_k)`` is evaluated in single precision and
truncated toward zero before areas are computed. We snap vertices the same way (same float
operations, same truncation), because otherwise the overlaps of small nuclei would differ by
several per cent from the ones the NMS thresholds of stardist models were tuned with. The areas
of the snapped polygons are exact (shoelace in 64-bit integers).

Exact intersection area
-----------------------
``area(A & B) = 1/2 * boundary integral of (x dy - y dx)`` over the boundary of ``A & B``, which
is made of the parts of A's boundary inside B and the parts of B's boundary inside A (both
polygons counter-clockwise). We find every crossing between an edge of A and an edge of B, split
the edges there, and add the shoelace term ``x0 * y1 - x1 * y0`` of each piece that lies inside
the other polygon. Inside/outside needs one point-in-polygon test per polygon: along a boundary
the state flips at each crossing. The crossing points are computed in double precision from exact
integer determinants, so the area is exact up to rounding (~1e-12 relative).

Degenerate configurations (a vertex on an edge, shared or overlapping collinear edges, identical
polygons) are resolved deterministically by symbolic perturbation: B is treated as translated by
``(eps, eps**2)`` for an infinitesimal ``eps > 0``. Every orientation test that is exactly zero
falls back to the sign of its ``eps`` (then ``eps**2``) coefficient, so no point is ever *on* the
other boundary and every crossing is a proper one. The area is continuous in the translation, so
the result is the exact area of the unperturbed intersection. Zero-length edges (repeated
vertices after snapping, zero-length rays) are dropped, and a polygon whose snapped vertices
enclose no area has overlap 0 with everything, as in stardist. Snapping can make a polygon
cross itself when its rays are about a pixel long or jump between neighbours; its area is then
the shoelace sum (as stardist's) and its intersections follow even-odd inside tests, where
stardist's clipper fills by winding number: the one place where the two can differ beyond
rounding.

Greedy suppression
------------------
Candidate ``j`` is suppressed when ``area(i & j) / min(area(i), area(j)) > thresh`` for some kept
candidate ``i`` with a higher score. Kept polygons are stored in a uniform grid of buckets by
bounding box, so ``j`` is only compared with kept polygons whose bounding box overlaps its own
(each pair is visited once: in the bucket holding the corner of the two boxes' intersection).
Most pairs are then decided by bounding octagons (box and diagonal extents), which give an upper
and a lower bound of the intersection area in O(1); only pairs the bounds cannot decide get the
exact computation (see ``_overlap_exceeds``).

Candidates are processed in blocks: first, in parallel (OpenMP), every candidate of the block is
tested against the polygons kept *before* the block, which are final; then, serially, the few
survivors are tested against the polygons kept *within* the block, in score order. The result is
exactly the sequential greedy result, whatever the number of threads.

stardist additionally skips pairs whose centres are farther apart than the largest ray of all
candidates plus the suppressor's; such pairs can only overlap in slivers created by snapping,
which matter only for ``thresh`` near 0.
"""
import numpy as np

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cython.parallel cimport prange, threadid
from libc.math cimport M_PI
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memset

cimport openmp

cnp.import_array()

cdef extern from "math.h" nogil:
    float sinf(float)
    float cosf(float)


# Scratch space of one thread for one polygon pair.
cdef struct Scratch:
    int *edges_a          # indices of A's edges that meet B's bounding box
    int *edges_b          # same for B, then B's edge boxes and their y-strips:
    int *box_b            # (xmin, xmax, ymin, ymax) per relevant edge of B
    int *strip_start      # CSR index: edges of B overlapping strip k are
    int *strip_edges      #   strip_edges[strip_start[k]:strip_start[k + 1]]
    int *cross_a          # crossing records: edge of A, edge of B ...
    int *cross_b
    double *t_a           # ... parameter along the edge of A, along the edge of B ...
    double *t_b
    double *px            # ... and the crossing point (relative to the pair's origin)
    double *py
    int *order_a          # crossing records sorted by (edge of A, t_a)
    int *order_b          # crossing records sorted by (edge of B, t_b)
    int capacity          # room for this many crossing records (and strip entries)
    bint failed           # an allocation failed: the caller raises MemoryError


# Snapped polygons: compact vertex lists (counter-clockwise, no repeated consecutive vertex).
cdef struct Polygons:
    int n_rays
    int *vx
    int *vy
    int *n_vert
    int *x0               # bounding box, inclusive
    int *x1
    int *y0
    int *y1
    int *diag             # diagonal extents: min/max of x + y, min/max of x - y
    long long *area2      # twice the area
    double *oct_area2     # twice the area of the octagon bounded by box and diagonal extents


cdef struct BucketGrid:
    int cell
    int ox
    int oy
    int width
    int height
    int *head             # per bucket: last entry, or -1
    int *next_entry
    int *polygon
    int size
    int capacity


cdef inline int _sign(long long v) nogil:
    return (v > 0) - (v < 0)


cdef inline int _sign_or(long long v, int tie) nogil:
    """Sign of ``v``, or ``tie`` when ``v == 0`` (the symbolic perturbation decides)."""
    if v > 0:
        return 1
    if v < 0:
        return -1
    return tie


cdef bint _inside_shifted(long long x, long long y, const int *qx, const int *qy, int m) nogil:
    """Is point (x, y) inside polygon Q translated by (eps, eps**2)? Crossing-number test."""
    cdef int k, kn
    cdef long long dx, dy, c
    cdef bint inside = False
    for k in range(m):
        kn = k + 1 if k + 1 < m else 0
        if (qy[k] >= y) != (qy[kn] >= y):
            dx = qx[kn] - qx[k]
            dy = qy[kn] - qy[k]
            c = dx * (y - qy[k]) - dy * (x - qx[k])
            # the ray from the shifted point crosses the edge iff x_edge(y) >= x
            if c == 0 or (c > 0) == (dy > 0):
                inside = not inside
    return inside


cdef bint _shifted_inside(long long x, long long y, const int *px, const int *py, int n) nogil:
    """Is point (x, y) translated by (eps, eps**2) inside polygon P? Crossing-number test."""
    cdef int k, kn
    cdef long long dx, dy, c
    cdef bint inside = False
    for k in range(n):
        kn = k + 1 if k + 1 < n else 0
        if (py[k] > y) != (py[kn] > y):
            dx = px[kn] - px[k]
            dy = py[kn] - py[k]
            c = dx * (y - py[k]) - dy * (x - px[k])
            # the ray from the shifted point crosses the edge iff x_edge(y) > x
            if c != 0 and (c > 0) == (dy > 0):
                inside = not inside
    return inside


cdef int _relevant_edges(const int *vx, const int *vy, int n,
                         int x0, int x1, int y0, int y1, int *out) nogil:
    """Indices of the edges whose bounding box meets the box [x0, x1] x [y0, y1]."""
    cdef int k, kn, count = 0
    for k in range(n):
        kn = k + 1 if k + 1 < n else 0
        if ((vx[k] < x0 and vx[kn] < x0) or (vx[k] > x1 and vx[kn] > x1) or
                (vy[k] < y0 and vy[kn] < y0) or (vy[k] > y1 and vy[kn] > y1)):
            continue
        out[count] = k
        count += 1
    return count


cdef inline int _strip(int y, int y0, int height, int n_strips) nogil:
    """Strip of row ``y`` (clamped to the strips covering rows y0 ... y0 + n_strips * height)."""
    cdef int k = (max(y, y0) - y0) // height
    return k if k < n_strips else n_strips - 1


cdef int _bin_edges_by_strip(const int *bx, const int *by, int nb, const int *eb, int neb,
                             int y0, int height, int n_strips, Scratch *s) nogil:
    """Bounding boxes of B's relevant edges, and their lists per horizontal strip (CSR)."""
    cdef int v, j, j1, k, total = 0
    cdef int *box
    for k in range(n_strips + 1):
        s.strip_start[k] = 0
    for v in range(neb):
        j = eb[v]
        j1 = j + 1 if j + 1 < nb else 0
        box = s.box_b + 4 * v
        box[0] = min(bx[j], bx[j1])
        box[1] = max(bx[j], bx[j1])
        box[2] = min(by[j], by[j1])
        box[3] = max(by[j], by[j1])
        for k in range(_strip(box[2], y0, height, n_strips),
                       _strip(box[3], y0, height, n_strips) + 1):
            s.strip_start[k + 1] += 1
    for k in range(n_strips):
        s.strip_start[k + 1] += s.strip_start[k]
    total = s.strip_start[n_strips]
    if total > s.capacity:
        return -1
    for v in range(neb):
        box = s.box_b + 4 * v
        for k in range(_strip(box[2], y0, height, n_strips),
                       _strip(box[3], y0, height, n_strips) + 1):
            s.strip_edges[s.strip_start[k]] = v
            s.strip_start[k] += 1
    for k in range(n_strips, 0, -1):
        s.strip_start[k] = s.strip_start[k - 1]
    s.strip_start[0] = 0
    return 0


cdef int _find_crossings(const int *ax, const int *ay, int na,
                         const int *bx, const int *by, int nb,
                         const int *ea, int nea, const int *eb, int neb,
                         int y0, int y1, long long ox, long long oy, Scratch *s) nogil:
    """Record every crossing of an edge of A with an edge of B (B shifted by (eps, eps**2)).

    Only edge pairs whose bounding boxes overlap (touching counts) are tested exactly; they are
    found through horizontal strips of the rows ``y0 ... y1`` both polygons span, each pair in
    the strip of its upper overlapping row. Records come out ordered by A's edge index.
    Returns their count, or -1 if the scratch space is too small.
    """
    cdef int u, v, w, i, j, i1, j1, k, count = 0, tie_a, tie_b
    cdef int n_strips = max(1, min(neb, y1 - y0 + 1))
    cdef int height = (y1 - y0 + n_strips) // n_strips
    cdef int exmin, exmax, eymin, eymax
    cdef const int *box
    cdef long long aix, aiy, ex, ey, cjx, cjy, fx, fy, c_c, c_d, c_a, c_b
    cdef double t
    if _bin_edges_by_strip(bx, by, nb, eb, neb, y0, height, n_strips, s) != 0:
        return -1
    for u in range(nea):
        i = ea[u]
        i1 = i + 1 if i + 1 < na else 0
        aix = ax[i]
        aiy = ay[i]
        ex = ax[i1] - aix
        ey = ay[i1] - aiy
        exmin = min(ax[i], ax[i1])
        exmax = max(ax[i], ax[i1])
        eymin = min(ay[i], ay[i1])
        eymax = max(ay[i], ay[i1])
        # orientation of a point of (shifted) B w.r.t. this edge, when it is exactly zero
        tie_a = -_sign(ey) if ey != 0 else _sign(ex)
        for k in range(_strip(eymin, y0, height, n_strips),
                       _strip(eymax, y0, height, n_strips) + 1):
            for w in range(s.strip_start[k], s.strip_start[k + 1]):
                v = s.strip_edges[w]
                box = s.box_b + 4 * v
                if (box[0] > exmax or box[1] < exmin or box[2] > eymax or box[3] < eymin or
                        _strip(max(box[2], eymin), y0, height, n_strips) != k):
                    continue
                j = eb[v]
                j1 = j + 1 if j + 1 < nb else 0
                cjx = bx[j]
                cjy = by[j]
                c_c = ex * (cjy - aiy) - ey * (cjx - aix)
                c_d = ex * (by[j1] - aiy) - ey * (bx[j1] - aix)
                if _sign_or(c_c, tie_a) == _sign_or(c_d, tie_a):
                    continue
                fx = bx[j1] - cjx
                fy = by[j1] - cjy
                tie_b = _sign(fy) if fy != 0 else -_sign(fx)
                c_a = fx * (aiy - cjy) - fy * (aix - cjx)
                c_b = fx * (aiy + ey - cjy) - fy * (aix + ex - cjx)
                if _sign_or(c_a, tie_b) == _sign_or(c_b, tie_b):
                    continue
                if count == s.capacity:
                    return -1
                t = <double>c_a / <double>(c_a - c_b)
                s.cross_a[count] = i
                s.cross_b[count] = j
                s.t_a[count] = t
                s.t_b[count] = <double>c_c / <double>(c_c - c_d)
                s.px[count] = <double>(aix - ox) + t * <double>ex
                s.py[count] = <double>(aiy - oy) + t * <double>ey
                count += 1
    return count


cdef void _sort_records(const int *edge, const double *t, int *order, int count) nogil:
    """``order``: record indices sorted by (edge, t). Insertion sort: records are few and come
    nearly sorted (the search runs along A's edges, and B's boundary runs beside A's)."""
    cdef int k, m
    for k in range(count):
        m = k
        while m > 0 and (edge[order[m - 1]] > edge[k] or
                         (edge[order[m - 1]] == edge[k] and t[order[m - 1]] > t[k])):
            order[m] = order[m - 1]
            m -= 1
        order[m] = k


cdef double _boundary_integral(const int *vx, const int *vy, int n, bint inside,
                               const int *rec_edge, const int *order, int count,
                               const double *px, const double *py,
                               long long ox, long long oy) nogil:
    """Twice the area contributed by the parts of one boundary inside the other polygon.

    ``inside``: whether the first vertex is inside the other polygon. The state flips at
    every crossing; ``order`` lists the crossing records by edge and position along it.
    """
    cdef int k, kn, r = 0, rec
    cdef long long whole = 0
    cdef double partial = 0.0, ux, uy
    for k in range(n):
        kn = k + 1 if k + 1 < n else 0
        rec = order[r] if r < count else -1
        if rec < 0 or rec_edge[rec] != k:
            if inside:
                whole += (vx[k] - ox) * (vy[kn] - oy) - (vy[k] - oy) * (vx[kn] - ox)
            continue
        ux = <double>(vx[k] - ox)
        uy = <double>(vy[k] - oy)
        while rec >= 0 and rec_edge[rec] == k:
            if inside:
                partial += ux * py[rec] - uy * px[rec]
            ux = px[rec]
            uy = py[rec]
            inside = not inside
            r += 1
            rec = order[r] if r < count else -1
        if inside:
            partial += ux * <double>(vy[kn] - oy) - uy * <double>(vx[kn] - ox)
    return <double>whole + partial


cdef double _intersection_area2(Polygons *p, int a, int b, Scratch *s) nogil:
    """Twice the exact area of the intersection of snapped polygons ``a`` and ``b``.

    Sets ``s.failed`` (and returns 0) if the scratch space cannot grow to hold all crossings.
    """
    cdef int R = p.n_rays
    cdef const int *ax = p.vx + <Py_ssize_t>a * R
    cdef const int *ay = p.vy + <Py_ssize_t>a * R
    cdef const int *bx = p.vx + <Py_ssize_t>b * R
    cdef const int *by = p.vy + <Py_ssize_t>b * R
    cdef int na = p.n_vert[a], nb = p.n_vert[b]
    cdef int x0 = max(p.x0[a], p.x0[b]), x1 = min(p.x1[a], p.x1[b])
    cdef int y0 = max(p.y0[a], p.y0[b]), y1 = min(p.y1[a], p.y1[b])
    cdef int nea, neb, count
    cdef long long ox = x0, oy = y0
    cdef bint in_a, in_b
    cdef double total
    if x0 > x1 or y0 > y1:
        return 0.0
    in_a = _inside_shifted(ax[0], ay[0], bx, by, nb)
    in_b = _shifted_inside(bx[0], by[0], ax, ay, na)
    nea = _relevant_edges(ax, ay, na, p.x0[b], p.x1[b], p.y0[b], p.y1[b], s.edges_a)
    neb = _relevant_edges(bx, by, nb, p.x0[a], p.x1[a], p.y0[a], p.y1[a], s.edges_b)
    count = _find_crossings(ax, ay, na, bx, by, nb, s.edges_a, nea, s.edges_b, neb, y0, y1,
                            ox, oy, s)
    while count < 0:
        # more crossings (at most nea * neb) or strip entries (at most neb ** 2) than room
        if s.capacity >= max(nea, neb) * neb or _scratch_reserve(s, 2 * s.capacity) != 0:
            s.failed = True
            return 0.0
        count = _find_crossings(ax, ay, na, bx, by, nb, s.edges_a, nea, s.edges_b, neb, y0, y1,
                                ox, oy, s)
    if count == 0:
        return (<double>p.area2[a] if in_a else 0.0) + (<double>p.area2[b] if in_b else 0.0)
    _sort_records(s.cross_a, s.t_a, s.order_a, count)
    _sort_records(s.cross_b, s.t_b, s.order_b, count)
    total = _boundary_integral(ax, ay, na, in_a, s.cross_a, s.order_a, count, s.px, s.py, ox, oy)
    total += _boundary_integral(bx, by, nb, in_b, s.cross_b, s.order_b, count, s.px, s.py, ox,
                                oy)
    return total


cdef double _octagon_area2(int x0, int x1, int y0, int y1, int u0, int u1, int v0, int v1) nogil:
    """Twice the area of {x0 <= x <= x1, y0 <= y <= y1, u0 <= x + y <= u1, v0 <= x - y <= v1}.

    The box is clipped by the four diagonal half-planes (Sutherland-Hodgman); vertices are
    half-integers, so the result is exact.
    """
    cdef double vx[2][12]
    cdef double vy[2][12]
    cdef double a, b, c, sp, sq, t, area = 0.0
    cdef int n = 4, m, k, kn, h, src = 0
    if x0 > x1 or y0 > y1 or u0 > u1 or v0 > v1:
        return 0.0
    vx[0][0] = x0; vy[0][0] = y0
    vx[0][1] = x1; vy[0][1] = y0
    vx[0][2] = x1; vy[0][2] = y1
    vx[0][3] = x0; vy[0][3] = y1
    for h in range(4):
        # half-plane a * x + b * y <= c
        a = -1.0 if h == 0 or h == 2 else 1.0
        b = (-1.0 if h == 0 else 1.0) if h < 2 else (1.0 if h == 2 else -1.0)
        c = -u0 if h == 0 else (u1 if h == 1 else (-v0 if h == 2 else v1))
        m = 0
        for k in range(n):
            kn = k + 1 if k + 1 < n else 0
            sp = a * vx[src][k] + b * vy[src][k] - c
            sq = a * vx[src][kn] + b * vy[src][kn] - c
            if sp <= 0:
                vx[1 - src][m] = vx[src][k]
                vy[1 - src][m] = vy[src][k]
                m += 1
            if (sp < 0 < sq) or (sq < 0 < sp):
                t = sp / (sp - sq)
                vx[1 - src][m] = vx[src][k] + t * (vx[src][kn] - vx[src][k])
                vy[1 - src][m] = vy[src][k] + t * (vy[src][kn] - vy[src][k])
                m += 1
        n = m
        src = 1 - src
        if n < 3:
            return 0.0
    for k in range(n):
        kn = k + 1 if k + 1 < n else 0
        area += vx[src][k] * vy[src][kn] - vy[src][k] * vx[src][kn]
    return area


cdef bint _overlap_exceeds(Polygons *p, int a, int b, float thresh, Scratch *s) nogil:
    """Is area(a & b) / min(area(a), area(b)) > thresh? (single precision, as stardist).

    The bounding octagons O (box and diagonal extents) decide most pairs without the exact
    computation: ``area(a & b) <= area(Oa & Ob)``, and, since ``a | b`` lies in ``Oa | Ob``,
    ``area(a & b) >= area(a) + area(b) - area(Oa) - area(Ob) + area(Oa & Ob)``. A bound is
    only used when it clears the threshold by a relative 1e-6, far more than the rounding of
    the single-precision comparison, so the decision is the exact computation's.
    """
    cdef long long smaller = min(p.area2[a], p.area2[b])
    cdef double upper, lower, limit
    cdef const int *da = p.diag + 4 * a
    cdef const int *db = p.diag + 4 * b
    if smaller <= 0:
        return False
    if (max(p.x0[a], p.x0[b]) >= min(p.x1[a], p.x1[b]) or
            max(p.y0[a], p.y0[b]) >= min(p.y1[a], p.y1[b])):
        return False
    limit = <double>thresh * <double>smaller
    upper = _octagon_area2(max(p.x0[a], p.x0[b]), min(p.x1[a], p.x1[b]),
                           max(p.y0[a], p.y0[b]), min(p.y1[a], p.y1[b]),
                           max(da[0], db[0]), min(da[1], db[1]),
                           max(da[2], db[2]), min(da[3], db[3]))
    if upper < limit * (1 - 1e-6):
        return False
    lower = <double>(p.area2[a] + p.area2[b]) - p.oct_area2[a] - p.oct_area2[b] + upper
    if lower > limit * (1 + 1e-6):
        return True
    return (<float>(0.5 * _intersection_area2(p, a, b, s)) / <float>(0.5 * <double>smaller)
            > thresh)


cdef void _snap_polygon(const float *dist, const float *points,
                        const float *ray_sin, const float *ray_cos, Polygons *p, int i) nogil:
    """Vertices of candidate ``i`` on the integer grid, compacted and counter-clockwise."""
    cdef int R = p.n_rays, k, kn, n = 0, tmp
    cdef int *vx = p.vx + <Py_ssize_t>i * R
    cdef int *vy = p.vy + <Py_ssize_t>i * R
    cdef float cy = points[2 * i], cx = points[2 * i + 1], d
    cdef int xi, yi
    cdef int *diag = p.diag + 4 * i
    cdef long long area2 = 0
    for k in range(R):
        d = dist[<Py_ssize_t>i * R + k]
        # float arithmetic and truncation toward zero, exactly as stardist builds its paths
        yi = <int>(<float>(cy + d * ray_sin[k]))
        xi = <int>(<float>(cx + d * ray_cos[k]))
        if n > 0 and vx[n - 1] == xi and vy[n - 1] == yi:
            continue
        vx[n] = xi
        vy[n] = yi
        n += 1
    while n > 1 and vx[n - 1] == vx[0] and vy[n - 1] == vy[0]:
        n -= 1
    p.x0[i] = p.x1[i] = vx[0]
    p.y0[i] = p.y1[i] = vy[0]
    diag[0] = diag[1] = vx[0] + vy[0]
    diag[2] = diag[3] = vx[0] - vy[0]
    for k in range(n):
        p.x0[i] = min(p.x0[i], vx[k])
        p.x1[i] = max(p.x1[i], vx[k])
        p.y0[i] = min(p.y0[i], vy[k])
        p.y1[i] = max(p.y1[i], vy[k])
        diag[0] = min(diag[0], vx[k] + vy[k])
        diag[1] = max(diag[1], vx[k] + vy[k])
        diag[2] = min(diag[2], vx[k] - vy[k])
        diag[3] = max(diag[3], vx[k] - vy[k])
        kn = k + 1 if k + 1 < n else 0
        area2 += <long long>vx[k] * vy[kn] - <long long>vy[k] * vx[kn]
    if n < 3:
        area2 = 0
    if area2 < 0:
        for k in range(n // 2):
            tmp = vx[k]
            vx[k] = vx[n - 1 - k]
            vx[n - 1 - k] = tmp
            tmp = vy[k]
            vy[k] = vy[n - 1 - k]
            vy[n - 1 - k] = tmp
        area2 = -area2
    p.n_vert[i] = n
    p.area2[i] = area2
    p.oct_area2[i] = _octagon_area2(p.x0[i], p.x1[i], p.y0[i], p.y1[i],
                                    diag[0], diag[1], diag[2], diag[3])


cdef int _scratch_alloc(Scratch *s, int n_rays) nogil:
    """Per-edge arrays, and room for 8 crossings per edge (grown on demand)."""
    s.edges_a = <int *>malloc(n_rays * sizeof(int))
    s.edges_b = <int *>malloc(n_rays * sizeof(int))
    s.box_b = <int *>malloc(4 * n_rays * sizeof(int))
    s.strip_start = <int *>malloc((n_rays + 2) * sizeof(int))
    if s.edges_a == NULL or s.edges_b == NULL or s.box_b == NULL or s.strip_start == NULL:
        return -1
    return _scratch_reserve(s, 8 * n_rays)


cdef int _grow(void **array, Py_ssize_t size) nogil:
    cdef void *grown = realloc(array[0], size)
    if grown == NULL:
        return -1
    array[0] = grown
    return 0


cdef int _scratch_reserve(Scratch *s, int capacity) nogil:
    """Make room for ``capacity`` crossing records and strip entries."""
    cdef Py_ssize_t n = capacity
    if (_grow(<void **>&s.strip_edges, n * sizeof(int)) or
            _grow(<void **>&s.cross_a, n * sizeof(int)) or
            _grow(<void **>&s.cross_b, n * sizeof(int)) or
            _grow(<void **>&s.order_a, n * sizeof(int)) or
            _grow(<void **>&s.order_b, n * sizeof(int)) or
            _grow(<void **>&s.t_a, n * sizeof(double)) or
            _grow(<void **>&s.t_b, n * sizeof(double)) or
            _grow(<void **>&s.px, n * sizeof(double)) or
            _grow(<void **>&s.py, n * sizeof(double))):
        return -1
    s.capacity = capacity
    return 0


cdef void _scratch_free(Scratch *s) nogil:
    free(s.edges_a)
    free(s.edges_b)
    free(s.box_b)
    free(s.strip_start)
    free(s.strip_edges)
    free(s.cross_a)
    free(s.cross_b)
    free(s.order_a)
    free(s.order_b)
    free(s.t_a)
    free(s.t_b)
    free(s.px)
    free(s.py)


cdef class _Workspace:
    """Owns the C arrays of one NMS call, so they are freed on every exit path."""
    cdef Polygons poly
    cdef BucketGrid grid
    cdef Scratch *scratch
    cdef float *ray_sin
    cdef float *ray_cos
    cdef int n_threads

    def __cinit__(self, Py_ssize_t n_polys, int n_rays, int n_threads):
        cdef Py_ssize_t nv = n_polys * n_rays
        cdef int t
        self.n_threads = n_threads
        self.poly.n_rays = n_rays
        self.poly.vx = <int *>malloc(max(nv, 1) * sizeof(int))
        self.poly.vy = <int *>malloc(max(nv, 1) * sizeof(int))
        self.poly.n_vert = <int *>malloc(max(n_polys, 1) * sizeof(int))
        self.poly.x0 = <int *>malloc(max(n_polys, 1) * sizeof(int))
        self.poly.x1 = <int *>malloc(max(n_polys, 1) * sizeof(int))
        self.poly.y0 = <int *>malloc(max(n_polys, 1) * sizeof(int))
        self.poly.y1 = <int *>malloc(max(n_polys, 1) * sizeof(int))
        self.poly.area2 = <long long *>malloc(max(n_polys, 1) * sizeof(long long))
        self.poly.diag = <int *>malloc(4 * max(n_polys, 1) * sizeof(int))
        self.poly.oct_area2 = <double *>malloc(max(n_polys, 1) * sizeof(double))
        self.grid.head = NULL
        self.grid.next_entry = NULL
        self.grid.polygon = NULL
        self.ray_sin = <float *>malloc(n_rays * sizeof(float))
        self.ray_cos = <float *>malloc(n_rays * sizeof(float))
        self.scratch = <Scratch *>malloc(n_threads * sizeof(Scratch))
        if self.scratch != NULL:
            memset(self.scratch, 0, n_threads * sizeof(Scratch))
        if (self.poly.vx == NULL or self.poly.vy == NULL or self.poly.n_vert == NULL or
                self.poly.x0 == NULL or self.poly.x1 == NULL or self.poly.y0 == NULL or
                self.poly.y1 == NULL or self.poly.area2 == NULL or self.poly.diag == NULL or
                self.poly.oct_area2 == NULL or self.ray_sin == NULL or self.ray_cos == NULL or
                self.scratch == NULL):
            raise MemoryError()
        _ray_table(n_rays, self.ray_sin, self.ray_cos)
        for t in range(n_threads):
            if _scratch_alloc(&self.scratch[t], n_rays) != 0:
                raise MemoryError()

    cdef bint any_failed(self):
        cdef int t
        for t in range(self.n_threads):
            if self.scratch[t].failed:
                return True
        return False

    def __dealloc__(self):
        cdef int t
        free(self.poly.vx)
        free(self.poly.vy)
        free(self.poly.n_vert)
        free(self.poly.x0)
        free(self.poly.x1)
        free(self.poly.y0)
        free(self.poly.y1)
        free(self.poly.area2)
        free(self.poly.diag)
        free(self.poly.oct_area2)
        free(self.grid.head)
        free(self.grid.next_entry)
        free(self.grid.polygon)
        free(self.ray_sin)
        free(self.ray_cos)
        if self.scratch != NULL:
            for t in range(self.n_threads):
                _scratch_free(&self.scratch[t])
            free(self.scratch)


cdef void _ray_table(int n_rays, float *ray_sin, float *ray_cos) nogil:
    """sin/cos of the ray angles in single precision, computed as stardist computes them."""
    cdef float step = <float>(2 * M_PI / n_rays)
    cdef int k
    for k in range(n_rays):
        ray_sin[k] = sinf(step * k)
        ray_cos[k] = cosf(step * k)


cdef void _snap_all(const float *dist, const float *points, Py_ssize_t n,
                    const float *ray_sin, const float *ray_cos, Polygons *p,
                    int n_threads) nogil:
    """Snap all ``n`` candidates (in parallel: independent per polygon)."""
    cdef Py_ssize_t i
    for i in prange(n, schedule='static', num_threads=n_threads):
        _snap_polygon(dist, points, ray_sin, ray_cos, p, <int>i)


cdef int _grid_init(BucketGrid *g, Polygons *p, Py_ssize_t n) nogil:
    """Bucket size about the mean bounding-box side, capped so the grid stays O(n) cells."""
    cdef Py_ssize_t i
    cdef double extent = 0.0
    cdef int gx0 = p.x0[0], gx1 = p.x1[0], gy0 = p.y0[0], gy1 = p.y1[0]
    cdef int cell
    for i in range(n):
        extent += (p.x1[i] - p.x0[i]) + (p.y1[i] - p.y0[i])
        gx0 = min(gx0, p.x0[i])
        gx1 = max(gx1, p.x1[i])
        gy0 = min(gy0, p.y0[i])
        gy1 = max(gy1, p.y1[i])
    cell = max(4, <int>(extent / (2 * n)) + 1)
    while (<double>((gx1 - gx0) // cell + 1) * <double>((gy1 - gy0) // cell + 1)
           > 4.0 * n + 1024):
        cell *= 2
    g.cell = cell
    g.ox = gx0
    g.oy = gy0
    g.width = (gx1 - gx0) // cell + 1
    g.height = (gy1 - gy0) // cell + 1
    g.head = <int *>malloc(<Py_ssize_t>g.width * g.height * sizeof(int))
    g.capacity = 1024
    g.size = 0
    g.next_entry = <int *>malloc(g.capacity * sizeof(int))
    g.polygon = <int *>malloc(g.capacity * sizeof(int))
    if g.head == NULL or g.next_entry == NULL or g.polygon == NULL:
        return -1
    for i in range(<Py_ssize_t>g.width * g.height):
        g.head[i] = -1
    return 0


cdef int _grid_insert(BucketGrid *g, Polygons *p, int i) nogil:
    cdef int cx, cy, c, cap
    cdef int *grown
    for cy in range((p.y0[i] - g.oy) // g.cell, (p.y1[i] - g.oy) // g.cell + 1):
        for cx in range((p.x0[i] - g.ox) // g.cell, (p.x1[i] - g.ox) // g.cell + 1):
            if g.size == g.capacity:
                cap = 2 * g.capacity
                grown = <int *>realloc(g.next_entry, cap * sizeof(int))
                if grown == NULL:
                    return -1
                g.next_entry = grown
                grown = <int *>realloc(g.polygon, cap * sizeof(int))
                if grown == NULL:
                    return -1
                g.polygon = grown
                g.capacity = cap
            c = cy * g.width + cx
            g.polygon[g.size] = i
            g.next_entry[g.size] = g.head[c]
            g.head[c] = g.size
            g.size += 1
    return 0


cdef bint _suppressed_by_kept(BucketGrid *g, Polygons *p, int j, int first_kept, float thresh,
                              Scratch *s) nogil:
    """Does a kept polygon with index >= ``first_kept`` overlap ``j`` by more than ``thresh``?

    Bucket lists hold indices in decreasing order, so a list is left at the first index below
    ``first_kept``. A pair is examined only in the bucket holding the lower corner of the
    intersection of the two bounding boxes, so it is examined once.
    """
    cdef int cx, cy, e, i, cx0, cy0, cx1, cy1
    cx0 = (p.x0[j] - g.ox) // g.cell
    cx1 = (p.x1[j] - g.ox) // g.cell
    cy0 = (p.y0[j] - g.oy) // g.cell
    cy1 = (p.y1[j] - g.oy) // g.cell
    for cy in range(cy0, cy1 + 1):
        for cx in range(cx0, cx1 + 1):
            e = g.head[cy * g.width + cx]
            while e >= 0:
                i = g.polygon[e]
                if i < first_kept:
                    break
                e = g.next_entry[e]
                if ((max(p.x0[i], p.x0[j]) - g.ox) // g.cell != cx or
                        (max(p.y0[i], p.y0[j]) - g.oy) // g.cell != cy):
                    continue
                if _overlap_exceeds(p, i, j, thresh, s):
                    return True
    return False


# Below this many candidates the NMS takes well under a millisecond and starting threads would
# cost more than it saves (much more on a busy machine, where waking a thread can take a slice).
_PARALLEL_MIN = 4096


def suppress_sorted(const float[:, ::1] dist, const float[:, ::1] points, float thresh,
                    int n_threads=0):
    """Greedy NMS of candidates sorted by descending score; returns the boolean keep mask.

    Parameters
    ----------
    dist : (n, n_rays) float32 array
        Ray lengths, finite and non-negative (checked by the caller).
    points : (n, 2) float32 array
        Polygon centres (y, x), in the coordinates the rays are measured in.
    thresh : float
        A candidate is suppressed when its overlap with a kept one exceeds this.
    n_threads : int
        Threads to use; 0 for OpenMP's default (``OMP_NUM_THREADS``, else all cores). Fewer
        than ``_PARALLEL_MIN`` candidates always use one.

    Notes
    -----
    Blocks start at 256 candidates (the first ones, with the highest scores, keep many new
    objects, which the serial step handles) and double up to n / (4 * threads): a dozen or so
    parallel regions, each of which costs a wake-up of the other threads (a time slice or more
    on a busy machine). On DSB-like maps about 3 to 10 % of the candidates reach the serial
    step.
    """
    cdef Py_ssize_t n = dist.shape[0]
    cdef int n_rays = dist.shape[1]
    cdef Py_ssize_t block = 256, max_block
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] keep_arr = np.zeros(n, np.uint8)
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] hit_arr = np.zeros(n, np.uint8)
    cdef unsigned char[::1] keep = keep_arr
    cdef unsigned char[::1] hit = hit_arr
    cdef _Workspace ws
    cdef Py_ssize_t start = 0, stop, j
    cdef int failed = 0
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0, got {n_threads}")
    if n < _PARALLEL_MIN:
        n_threads = 1
    elif n_threads == 0:
        n_threads = max(1, openmp.omp_get_max_threads())
    max_block = max(256, n // (4 * n_threads))
    if n == 0:
        return keep_arr.view(bool)
    ws = _Workspace(n, n_rays, n_threads)
    with nogil:
        _snap_all(&dist[0, 0], &points[0, 0], n, ws.ray_sin, ws.ray_cos, &ws.poly,
                  n_threads)
        failed = _grid_init(&ws.grid, &ws.poly, n)
    if failed:
        raise MemoryError()
    while start < n:
        stop = min(n, start + block)
        with nogil:
            if start > 0:
                for j in prange(start, stop, schedule='dynamic', chunksize=8,
                                num_threads=n_threads):
                    hit[j] = _suppressed_by_kept(&ws.grid, &ws.poly, <int>j, 0, thresh,
                                                 &ws.scratch[threadid()])
            for j in range(start, stop):
                if hit[j] or _suppressed_by_kept(&ws.grid, &ws.poly, <int>j, <int>start,
                                                 thresh, &ws.scratch[0]):
                    continue
                keep[j] = 1
                if _grid_insert(&ws.grid, &ws.poly, <int>j) != 0:
                    failed = 1
                    break
        if failed or ws.any_failed():
            raise MemoryError()
        if PyErr_CheckSignals() == -1:
            raise KeyboardInterrupt()
        start = stop
        block = min(2 * block, max_block)
    return keep_arr.view(bool)


def snapped_polygons(const float[:, ::1] dist, const float[:, ::1] points):
    """The polygons as the NMS sees them (for tests and diagnostics).

    Returns a list of (n_vertices, 2) int64 arrays of (y, x) vertices (snapped, repeated
    vertices dropped, counter-clockwise in (x, y)) and an int64 array of twice their areas.
    """
    cdef Py_ssize_t n = dist.shape[0], i
    cdef int n_rays = dist.shape[1]
    cdef _Workspace ws = _Workspace(n, n_rays, 1)
    out = []
    area2 = np.zeros(n, np.int64)
    if n == 0:
        return out, area2
    with nogil:
        _snap_all(&dist[0, 0], &points[0, 0], n, ws.ray_sin, ws.ray_cos, &ws.poly, 1)
    for i in range(n):
        nv = ws.poly.n_vert[i]
        xy = np.array([[ws.poly.vy[i * n_rays + k], ws.poly.vx[i * n_rays + k]]
                       for k in range(nv)], dtype=np.int64).reshape(nv, 2)
        out.append(xy)
        area2[i] = ws.poly.area2[i]
    return out, area2


def pair_intersection_area(const float[:, ::1] dist, const float[:, ::1] points,
                           const Py_ssize_t[::1] first, const Py_ssize_t[::1] second):
    """Exact intersection areas of the snapped polygon pairs ``(first[k], second[k])``, and the
    smaller of the two polygon areas of each pair."""
    cdef Py_ssize_t n = dist.shape[0], k, m = first.shape[0]
    cdef int n_rays = dist.shape[1]
    cdef _Workspace ws
    if m != second.shape[0] or (m and not (0 <= min(np.min(first), np.min(second))
                                           and max(np.max(first), np.max(second)) < n)):
        raise IndexError("pair indices out of range")
    ws = _Workspace(n, n_rays, 1)
    cdef cnp.ndarray[cnp.float64_t, ndim=1] inter = np.zeros(m, np.float64)
    cdef cnp.ndarray[cnp.float64_t, ndim=1] smaller = np.zeros(m, np.float64)
    cdef int a, b
    if n == 0:
        return inter, smaller
    with nogil:
        _snap_all(&dist[0, 0], &points[0, 0], n, ws.ray_sin, ws.ray_cos, &ws.poly, 1)
        for k in range(m):
            a = <int>first[k]
            b = <int>second[k]
            smaller[k] = 0.5 * <double>min(ws.poly.area2[a], ws.poly.area2[b])
            if smaller[k] > 0:
                inter[k] = 0.5 * _intersection_area2(&ws.poly, a, b, &ws.scratch[0])
    if ws.any_failed():
        raise MemoryError()
    return inter, smaller
