"""The navigation grid of the builtin backend: free space, collisions and exact grid geodesics.

The navigable area is the floor of every room plus the doorway gaps, minus walls and floor
standing objects, eroded by the agent radius (a cell is free when its centre is farther
than ``agent_radius`` from every obstacle). Geodesics are shortest paths on that grid:
Dijkstra over the 16-neighbourhood (steps of 1, sqrt 2 and sqrt 5 cells, so distance fields
stay within ~2.7 % of Euclidean length), and ``shortest_path`` string-pulls the Dijkstra path
with exact line-of-sight tests against the grid, so its length is the taut path length.
``geodesic_distance`` reports that taut length (what Habitat's navmesh path finder reports).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from vlnav.scenes.spec import SceneSpec

try:  # the geodesic kernels below are compiled when numba is there (a dependency)
    from numba import njit
except ImportError:  # pragma: no cover - the same functions, interpreted (much slower)

    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda f: f)


# objects whose underside is above this height do not block the agent (wall-mounted)
BLOCKING_HEIGHT = 1.0

# 16-neighbourhood offsets (di, dj) and their lengths in cells
_OFFSETS = [
    (di, dj)
    for di in range(-2, 3)
    for dj in range(-2, 3)
    if (di, dj) != (0, 0) and math.gcd(abs(di), abs(dj)) == 1
]


def obstacle_mask(spec: SceneSpec, cell: float = 0.05) -> tuple[np.ndarray, tuple[float, float]]:
    """Rasterise the floor plan: True where the agent's centre could be without the radius.

    Returns (walkable (nz, nx) bool, (x0, z0)); cell (i, j) is centred at
    (x0 + (j + 0.5) * cell, z0 + (i + 0.5) * cell).
    """
    xmin, zmin, xmax, zmax = spec.bounds
    x0, z0 = xmin - 2 * cell, zmin - 2 * cell
    nx = int(math.ceil((xmax - x0) / cell)) + 2
    nz = int(math.ceil((zmax - z0) / cell)) + 2
    walk = np.zeros((nz, nx), dtype=bool)

    def rect(ax0: float, az0: float, ax1: float, az1: float, value: bool) -> None:
        # cells whose centre lies inside [ax0, ax1] x [az0, az1]
        j0 = int(math.ceil((ax0 - x0) / cell - 0.5))
        j1 = int(math.floor((ax1 - x0) / cell - 0.5))
        i0 = int(math.ceil((az0 - z0) / cell - 0.5))
        i1 = int(math.floor((az1 - z0) / cell - 0.5))
        j0, i0 = max(j0, 0), max(i0, 0)
        if j1 >= j0 and i1 >= i0:
            walk[i0 : i1 + 1, j0 : j1 + 1] = value

    for r in spec.rooms:
        rect(*r.bounds, True)
    for d in spec.doors:  # the gap through the wall
        cx, cz = d.center
        h, t = d.width / 2, spec.wall_thickness
        if d.axis == "x":
            rect(cx - h, cz - t, cx + h, cz + t, True)
        else:
            rect(cx - t, cz - h, cx + t, cz + h, True)
    for w in spec.walls:
        t = w.thickness / 2
        (ax, az), (bx, bz) = w.start, w.end
        rect(min(ax, bx) - t, min(az, bz) - t, max(ax, bx) + t, max(az, bz) + t, False)
    for o in spec.objects:
        if o.bbox_min[1] < BLOCKING_HEIGHT:
            rect(o.bbox_min[0], o.bbox_min[2], o.bbox_max[0], o.bbox_max[2], False)
    return walk, (x0, z0)


def free_space_mask(
    spec: SceneSpec, cell: float = 0.05, agent_radius: float = 0.18
) -> tuple[np.ndarray, tuple[float, float]]:
    """Cells where the agent (a disc of ``agent_radius``) fits: the walkable mask eroded."""
    walk, origin = obstacle_mask(spec, cell)
    # distance (metres) from each walkable cell centre to the nearest blocked cell's edge
    dist = ndimage.distance_transform_edt(walk) * cell - cell / 2
    return walk & (dist > agent_radius), origin


class NavGrid:
    """Free-space grid with collision-aware motion and shortest paths.

    Example:
        >>> grid = NavGrid.from_spec(spec)
        >>> grid.geodesic_distance([1.0, 0.0, 1.0], [5.0, 0.0, 3.0])
    """

    def __init__(
        self,
        free: np.ndarray,
        origin: tuple[float, float],
        cell: float,
        floor_y: float = 0.0,
        cache_size: int = 32,
    ) -> None:
        self.free = free
        self.origin = (float(origin[0]), float(origin[1]))
        self.cell = float(cell)
        self.floor_y = float(floor_y)
        self._fields: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._graph = self._build_graph()
        self._off = np.array(_OFFSETS, dtype=np.int64)  # (16, 2)
        self._len = np.array([math.hypot(di, dj) * self.cell for di, dj in _OFFSETS])
        # connected components let unreachable queries answer inf without a search
        self.components, _ = ndimage.label(free, structure=np.ones((3, 3)))

    @classmethod
    def from_spec(cls, spec: SceneSpec, cell: float = 0.05, agent_radius: float = 0.18) -> NavGrid:
        free, origin = free_space_mask(spec, cell, agent_radius)
        return cls(free, origin, cell)

    # ----------------------------------------------------------- coordinates
    @property
    def shape(self) -> tuple[int, int]:
        return self.free.shape  # (nz, nx)

    def to_cell(self, p: Sequence[float]) -> tuple[int, int]:
        """World [x, y, z] (or [x, z]) -> (i, j); may fall outside the grid."""
        x, z = (p[0], p[2]) if len(p) == 3 else (p[0], p[1])
        return (
            int(math.floor((z - self.origin[1]) / self.cell)),
            int(math.floor((x - self.origin[0]) / self.cell)),
        )

    def to_world(self, i: float, j: float) -> list[float]:
        return [
            self.origin[0] + (j + 0.5) * self.cell,
            self.floor_y,
            self.origin[1] + (i + 0.5) * self.cell,
        ]

    def _inside(self, i: int, j: int) -> bool:
        return 0 <= i < self.free.shape[0] and 0 <= j < self.free.shape[1]

    def is_navigable(self, p: Sequence[float]) -> bool:
        i, j = self.to_cell(p)
        return self._inside(i, j) and bool(self.free[i, j])

    def snap(self, p: Sequence[float], max_dist: float = 1.0) -> list[float] | None:
        """The nearest navigable point to p within max_dist metres (p itself if navigable)."""
        if self.is_navigable(p):
            return [float(p[0]), self.floor_y, float(p[2])]
        i, j = self.to_cell(p)
        r = int(math.ceil(max_dist / self.cell))
        i0, j0 = max(i - r, 0), max(j - r, 0)
        win = self.free[i0 : i + r + 1, j0 : j + r + 1]
        ii, jj = np.nonzero(win)
        if len(ii) == 0:
            return None
        d2 = (ii + i0 - i) ** 2 + (jj + j0 - j) ** 2
        k = int(np.argmin(d2))
        if d2[k] * self.cell**2 > max_dist**2:
            return None
        return self.to_world(ii[k] + i0, jj[k] + j0)

    def random_point(self, rng: np.random.Generator) -> list[float]:
        ii, jj = np.nonzero(self.free)
        k = int(rng.integers(len(ii)))
        return self.to_world(ii[k], jj[k])

    def free_cells(self) -> tuple[np.ndarray, np.ndarray]:
        return np.nonzero(self.free)

    # ----------------------------------------------------------- motion
    def move(self, p: Sequence[float], heading: float, distance: float) -> tuple[list[float], bool]:
        """Move the agent from p along heading (yaw, radians) with sliding along obstacles.

        Returns (new position, collided). Like Habitat's ``allow_sliding``: when the full step
        is blocked, the motion is projected on the axis along the obstacle.
        """
        dx, dz = -math.sin(heading) * distance, -math.cos(heading) * distance
        n = max(1, int(math.ceil(distance / (self.cell / 2))))
        x, z = float(p[0]), float(p[2])
        collided = False
        sx, sz = dx / n, dz / n
        for _ in range(n):
            if self.is_navigable((x + sx, 0.0, z + sz)):
                x, z = x + sx, z + sz
                continue
            collided = True
            # slide: keep the component that is still free (the larger one first)
            options = [(sx, 0.0), (0.0, sz)] if abs(sx) >= abs(sz) else [(0.0, sz), (sx, 0.0)]
            for ox, oz in options:
                if (ox or oz) and self.is_navigable((x + ox, 0.0, z + oz)):
                    x, z = x + ox, z + oz
                    break
            else:
                break
        return [x, self.floor_y, z], collided

    # ----------------------------------------------------------- geodesics
    def _build_graph(self) -> csr_matrix:
        nz, nx = self.free.shape
        idx = np.arange(nz * nx).reshape(nz, nx)
        rows, cols, w = [], [], []
        # edge_ok[k][i, j]: the move _OFFSETS[k] from cell (i, j) is an edge of the graph
        self._edge_ok = np.zeros((len(_OFFSETS), nz, nx), dtype=bool)
        for di, dj in _OFFSETS:
            if (di, dj) < (0, 0):
                continue  # undirected: add each pair once, symmetrised below
            a = self.free[max(0, -di) : nz - max(0, di), max(0, -dj) : nx - max(0, dj)]
            b = self.free[
                max(0, di) : nz + min(0, di) or None, max(0, dj) : nx + min(0, dj) or None
            ]
            ok = a & b
            if abs(di) + abs(dj) > 1:
                # a diagonal or knight move must not cut a corner: require the cells it crosses
                ok &= self._segment_clear_mask(di, dj)
            src = (slice(max(0, -di), nz - max(0, di)), slice(max(0, -dj), nx - max(0, dj)))
            dst = (
                slice(max(0, di), nz + min(0, di) or None),
                slice(max(0, dj), nx + min(0, dj) or None),
            )
            self._edge_ok[_OFFSETS.index((di, dj))][src] = ok
            self._edge_ok[_OFFSETS.index((-di, -dj))][dst] = ok
            ia = idx[max(0, -di) : nz - max(0, di), max(0, -dj) : nx - max(0, dj)][ok]
            ib = idx[max(0, di) : nz + min(0, di) or None, max(0, dj) : nx + min(0, dj) or None][ok]
            rows.append(ia)
            cols.append(ib)
            w.append(np.full(len(ia), math.hypot(di, dj) * self.cell))
        r, c, ww = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
        return csr_matrix(
            (np.concatenate([ww, ww]), (np.concatenate([r, c]), np.concatenate([c, r]))),
            shape=(nz * nx, nz * nx),
        )

    def _segment_clear_mask(self, di: int, dj: int) -> np.ndarray:
        """For a move (di, dj) from every cell: are the intermediate cells it touches free?"""
        nz, nx = self.free.shape
        ok = np.ones((nz - abs(di), nx - abs(dj)), dtype=bool)
        base_i, base_j = max(0, -di), max(0, -dj)
        steps = 8
        for s in range(1, steps):
            t = s / steps
            for fi, fj in {
                (math.floor(0.5 + t * di - 1e-9), math.floor(0.5 + t * dj - 1e-9)),
                (math.floor(0.5 + t * di + 1e-9), math.floor(0.5 + t * dj + 1e-9)),
            }:
                ok &= self.free[
                    base_i + fi : base_i + fi + nz - abs(di),
                    base_j + fj : base_j + fj + nx - abs(dj),
                ]
        return ok

    def distance_field(self, goal: Sequence[float]) -> np.ndarray:
        """Grid geodesic distance (metres) from every cell to ``goal``; inf where unreachable."""
        return self._field(self._goal_key(goal))

    def _goal_key(self, goal: Sequence[float]) -> int:
        gi, gj = self._require_cell(goal, "goal")
        return gi * self.free.shape[1] + gj

    def _field(self, key: int) -> np.ndarray:
        """The distance field to the cell ``key`` (cached, least recently used dropped)."""
        if key in self._fields:
            self._fields.move_to_end(key)
            return self._fields[key]
        # the graph holds both directions of every edge: a directed search (no symmetrising
        # copy of the graph per call) gives the undirected distances
        d = dijkstra(self._graph, directed=True, indices=key)
        field = d.reshape(self.free.shape)
        self._fields[key] = field
        if len(self._fields) > self._cache_size:
            self._fields.popitem(last=False)
        return field

    def _require_cell(self, p: Sequence[float], what: str) -> tuple[int, int]:
        i, j = self.to_cell(p)
        if not (self._inside(i, j) and self.free[i, j]):
            q = self.snap(p, max_dist=0.5)
            if q is None:
                raise ValueError(f"{what} {list(p)} is not navigable")
            i, j = self.to_cell(q)
        return i, j

    def grid_distance(self, a: Sequence[float], goal: Sequence[float]) -> float:
        """Dijkstra distance on the 16-neighbour grid (fast, within ~2.7 % of taut length)."""
        i, j = self._require_cell(a, "point")
        return float(self.distance_field(goal)[i, j])

    def line_of_sight(self, a: tuple[float, float], b: tuple[float, float]) -> bool:
        """Whether the straight segment between two cell positions (i, j floats) stays free."""
        return bool(_line_of_sight(self.free, a[0], a[1], b[0], b[1]))

    def shortest_path(self, a: Sequence[float], b: Sequence[float]) -> list[list[float]]:
        """Taut shortest path a -> b as waypoints [[x, y, z], ...] (a and b included).

        Raises ValueError when b cannot be reached from a.
        """
        ai, aj = self._require_cell(a, "start")
        field = self._field(self._goal_key(b))
        if not np.isfinite(field[ai, aj]):
            raise ValueError(f"no path from {list(a)} to {list(b)}")
        # continuous end points in cell units (cell (i, j) has its centre at (i, j))
        (pai, paj), (pbi, pbj) = self._to_cell_f(a), self._to_cell_f(b)
        out = _taut_path(
            self.free, field, self._edge_ok, self._off, self._len, ai, aj, pai, paj, pbi, pbj
        )
        return [self._cell_f_to_world((float(i), float(j))) for i, j in out]

    def _to_cell_f(self, p: Sequence[float]) -> tuple[float, float]:
        return (
            (p[2] - self.origin[1]) / self.cell - 0.5,
            (p[0] - self.origin[0]) / self.cell - 0.5,
        )

    def _cell_f_to_world(self, c: tuple[float, float]) -> list[float]:
        i, j = c
        return [
            self.origin[0] + (j + 0.5) * self.cell,
            self.floor_y,
            self.origin[1] + (i + 0.5) * self.cell,
        ]

    def geodesic_distance(self, a: Sequence[float], b: Sequence[float]) -> float:
        """Length of the taut shortest path a -> b in metres; inf when unreachable."""
        try:
            ai, aj = self._require_cell(a, "start")
            bi, bj = self._require_cell(b, "goal")
        except ValueError:
            return math.inf
        if self.components[ai, aj] != self.components[bi, bj]:
            return math.inf
        try:
            return path_length(self.shortest_path(a, b))
        except ValueError:
            return self._nearby_distance(ai, aj, b)

    def _nearby_distance(self, ai: int, aj: int, b: Sequence[float], radius: float = 0.5) -> float:
        """For a free cell the grid's edges do not connect (an agent can slide into such a
        pocket): the distance from the nearest connected cell within ``radius``, plus the
        step to it; inf when there is none."""
        field = self.distance_field(b)
        r = int(math.ceil(radius / self.cell))
        i0, j0 = max(ai - r, 0), max(aj - r, 0)
        win = field[i0 : ai + r + 1, j0 : aj + r + 1]
        ii, jj = np.nonzero(np.isfinite(win))
        if len(ii) == 0:
            return math.inf
        off = np.hypot(ii + i0 - ai, jj + j0 - aj) * self.cell
        k = int(np.argmin(off + win[ii, jj]))
        return float(off[k] + win[ii[k], jj[k]])


def path_length(points: Sequence[Sequence[float]]) -> float:
    """Sum of Euclidean segment lengths of a polyline."""
    p = np.asarray(points, dtype=float)
    if len(p) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())


# ------------------------------------------------------------------ compiled kernels
# Plain loops over the grid, compiled by numba (``cache=True``: once per machine, then
# loaded from __pycache__). Each reproduces float for float what the numpy version did.


@njit(cache=True)
def _descend(field, edge_ok, off, length, si, sj):  # pragma: no cover - compiled
    """Steepest descent from cell (si, sj) along the shortest-path tree of ``field``
    (each step to the lowest neighbour whose distance plus the edge equals the cell's)."""
    nz, nx = field.shape
    cells = np.empty((16, 2), dtype=np.int64)
    cells[0, 0], cells[0, 1] = si, sj
    n = 1
    i, j = si, sj
    for _ in range(nz * nx):
        here = field[i, j]
        if here == 0.0:
            break
        best, bi, bj = here, i, j
        for k in range(off.shape[0]):
            if not edge_ok[k, i, j]:
                continue
            a, b = i + off[k, 0], j + off[k, 1]
            v = field[a, b]
            if v < best and abs(v + length[k] - here) < 1e-6:
                best, bi, bj = v, a, b
        if bi == i and bj == j:
            break
        i, j = bi, bj
        if n == cells.shape[0]:
            grown = np.empty((2 * n, 2), dtype=np.int64)
            grown[:n] = cells
            cells = grown
        cells[n, 0], cells[n, 1] = i, j
        n += 1
    return cells[:n]


@njit(cache=True)
def _line_of_sight(free, ai, aj, bi, bj):  # pragma: no cover - compiled
    """Whether the segment between cell positions (ai, aj) and (bi, bj) stays on free cells:
    3 samples per cell (``np.linspace(0, 1, n + 1)``'s), each in the cell it rounds to."""
    nz, nx = free.shape
    n = int(math.ceil(max(abs(bi - ai), abs(bj - aj)) * 3)) + 1
    step = 1.0 / n
    for k in range(n + 1):
        t = 1.0 if k == n else k * step
        i = int(math.floor(ai + 0.5 + t * (bi - ai)))
        j = int(math.floor(aj + 0.5 + t * (bj - aj)))
        if i < 0 or j < 0 or i >= nz or j >= nx or not free[i, j]:
            return False
    return True


@njit(cache=True)
def _taut_path(free, field, edge_ok, off, length, ai, aj, pai, paj, pbi, pbj):  # pragma: no cover
    """The descent path from cell (ai, aj), its ends replaced by the continuous points pa
    and pb where they see their neighbours, string-pulled greedily (from each anchor to the
    farthest point it sees, found by binary search): (m, 2) cell positions."""
    cells = _descend(field, edge_ok, off, length, ai, aj)
    m = max(cells.shape[0], 2)
    pts = np.empty((m, 2))
    pts[0, 0], pts[0, 1] = pai, paj
    for k in range(1, m - 1):
        pts[k, 0], pts[k, 1] = cells[k, 0], cells[k, 1]
    pts[m - 1, 0], pts[m - 1, 1] = pbi, pbj
    if not _line_of_sight(free, pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1]):
        pts[0, 0], pts[0, 1] = ai, aj
    if not _line_of_sight(free, pts[m - 1, 0], pts[m - 1, 1], pts[m - 2, 0], pts[m - 2, 1]):
        last = cells.shape[0] - 1
        pts[m - 1, 0], pts[m - 1, 1] = cells[last, 0], cells[last, 1]
    keep = np.empty(m, dtype=np.int64)
    keep[0] = 0
    n, k = 1, 0
    while k < m - 1:
        lo, hi = k + 1, m - 1
        best = lo
        while lo <= hi:
            mid = (lo + hi) // 2
            if _line_of_sight(free, pts[k, 0], pts[k, 1], pts[mid, 0], pts[mid, 1]):
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        keep[n] = best
        n += 1
        k = best
    return pts[keep[:n]]
