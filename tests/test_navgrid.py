import math

import numpy as np
import pytest

from vlnav.sim.navgrid import NavGrid, free_space_mask, path_length


def open_grid(nz=80, nx=120, cell=0.05):
    free = np.ones((nz, nx), bool)
    free[0, :] = free[-1, :] = free[:, 0] = free[:, -1] = False
    return free


def test_straight_line_geodesic_is_euclidean():
    g = NavGrid(open_grid(), (0.0, 0.0), 0.05)
    a, b = [0.5, 0, 0.5], [5.0, 0, 3.5]
    assert g.geodesic_distance(a, b) == pytest.approx(math.dist(a, b), abs=0.06)
    path = g.shortest_path(a, b)
    assert len(path) == 2  # nothing in the way: one straight segment


def test_geodesic_goes_around_a_wall_and_is_taut():
    free = open_grid(200, 200)
    free[100:104, 20:] = False  # a wall from x=1.0 to the east edge, at z = 5.0 .. 5.2
    g = NavGrid(free, (0.0, 0.0), 0.05)
    a, b = [6.0, 0, 2.0], [6.0, 0, 8.0]
    # taut path: a -> the wall's west end (x ~ 1.0, z in [5.0, 5.2]) -> b
    expected = math.hypot(5.0, 3.0) + 0.2 + math.hypot(5.0, 2.8)
    d = g.geodesic_distance(a, b)
    assert d == pytest.approx(expected, rel=0.02)
    assert d > math.dist(a, b) + 3  # not straight-line
    # the grid (Dijkstra) distance is within the 16-neighbour bound of the taut length
    assert d <= g.grid_distance(a, b) <= d * 1.03
    path = g.shortest_path(a, b)
    assert path_length(path) == pytest.approx(d)
    for p, q in zip(path[:-1], path[1:]):
        assert g.line_of_sight(g._to_cell_f(p), g._to_cell_f(q))


def test_unreachable_is_inf_and_path_raises():
    free = open_grid()
    free[:, 60] = False  # split in two
    g = NavGrid(free, (0.0, 0.0), 0.05)
    assert math.isinf(g.geodesic_distance([1, 0, 1], [5, 0, 1]))
    with pytest.raises(ValueError):
        g.shortest_path([1, 0, 1], [5, 0, 1])


def test_move_slides_along_wall():
    g = NavGrid(open_grid(), (0.0, 0.0), 0.05)
    # facing -z at 45 degrees to the left, close to the north wall (z = 0.05)
    p, collided = g.move([3.0, 0, 0.2], math.radians(45), 0.25)
    assert collided
    assert p[0] < 3.0 - 0.1  # slid west along the wall
    assert g.is_navigable(p)
    p2, c2 = g.move([3.0, 0, 2.0], 0.0, 0.25)
    assert not c2 and p2[2] == pytest.approx(1.75)


def test_free_space_respects_radius_walls_doors_and_objects(two_room_spec):
    free, origin = free_space_mask(two_room_spec, 0.05, 0.18)
    g = NavGrid(free, origin, 0.05)
    assert g.is_navigable([2.0, 0, 2.0])
    assert not g.is_navigable([4.0, 0, 1.0])  # inside the shared wall
    assert g.is_navigable([4.0, 0, 2.0])  # the doorway
    assert not g.is_navigable([4.0, 0, 1.45])  # the door jamb, within the radius
    assert not g.is_navigable([0.1, 0, 2.0])  # within the radius of the outer wall
    assert not g.is_navigable([1.0, 0, 3.4])  # the sofa
    # through the doorway: both rooms are one component
    d = g.geodesic_distance([2.0, 0, 0.8], [6.0, 0, 0.8])
    assert 4.0 < d < 6.0


def test_distance_from_a_pocket_the_grid_does_not_connect():
    """A random agent slid into a free cell of house_0062 (val_unseen of the default env) that
    the 16-neighbour graph does not connect; its distance to the goal is measured from the
    nearest connected cell instead of failing the whole evaluation."""
    from vlnav.scenes.generator import GeneratorConfig, generate_house, house_seed
    from vlnav.sim.navgrid import NavGrid

    spec = generate_house(house_seed(0, 62), "house_0062", GeneratorConfig())
    grid = NavGrid.from_spec(spec, 0.05, 0.18)
    pocket, goal = [0.6358706380490708, 0.0, 11.76239686196888], [3.125, 0.0, 0.875]
    with pytest.raises(ValueError, match="no path"):
        grid.shortest_path(pocket, goal)
    d = grid.geodesic_distance(pocket, goal)
    near = grid.geodesic_distance([0.7, 0.0, 11.7], goal)
    assert np.isfinite(d) and abs(d - near) < 0.6


def test_compiled_kernels_give_the_interpreted_paths(two_room_spec, monkeypatch):
    """The numba-compiled descent, line of sight and string pulling answer exactly as the
    same functions interpreted by Python (what runs where numba is missing), including a
    path followed point by point and queries on a grid that has answered many others."""
    from vlnav.sim import navgrid

    grid = NavGrid.from_spec(two_room_spec)
    rng = np.random.default_rng(0)
    free = np.argwhere(grid.free)
    pts = [grid._cell_f_to_world(tuple(map(float, free[k]))) for k in rng.choice(len(free), 12)]
    pts = [[p[0] + 0.01, p[1], p[2] - 0.02] for p in pts]  # off the cell centres
    queries = [(a, b) for a in pts for b in pts[:4] if a is not b]
    walk = grid.shortest_path(*queries[0])
    along = [list(np.add(walk[0], t * np.subtract(walk[1], walk[0]))) for t in (0.2, 0.5, 0.8)]
    queries += [(p, queries[0][1]) for p in along]
    compiled = [(grid.shortest_path(a, b), grid.geodesic_distance(a, b)) for a, b in queries]
    assert any(len(path) > 2 for path, _ in compiled)  # some paths turn corners
    for name in ("_descend", "_line_of_sight", "_taut_path"):
        fn = getattr(navgrid, name)
        monkeypatch.setattr(navgrid, name, getattr(fn, "py_func", fn))
    cold = NavGrid.from_spec(two_room_spec)
    assert [(cold.shortest_path(a, b), cold.geodesic_distance(a, b)) for a, b in queries] == (
        compiled
    )


def test_distance_fields_are_the_undirected_graphs(two_room_spec):
    from scipy.sparse.csgraph import dijkstra

    grid = NavGrid.from_spec(two_room_spec)
    key = grid._goal_key(grid._cell_f_to_world((40.0, 40.0)))
    undirected = dijkstra(grid._graph, directed=False, indices=key).reshape(grid.free.shape)
    assert np.array_equal(grid._field(key), undirected)
    assert np.isfinite(undirected).sum() > 1000
