"""Hand-computed checks of the VLN metrics (radius 3 m unless said otherwise).

Paths run along +x in an empty world, so geodesic distance = Euclidean distance.
"""

import json
import math
import time

import numpy as np
import pytest

from vlnav import VlnavError
from vlnav.metrics import (
    METRIC_NAMES,
    EpisodeRecord,
    RecordError,
    aggregate,
    compute_metrics,
    dtw,
    format_table,
)


def line(*xs):
    """Points (x, 0, 0)."""
    return [[float(x), 0.0, 0.0] for x in xs]


def make_record(positions, goal, reference=None, stopped=True, **kw):
    goal = [float(g) for g in goal]
    dist = [math.dist(p, goal) for p in positions]
    return EpisodeRecord(
        episode_id=kw.pop("episode_id", "ep"),
        scene_id="house0",
        instruction="walk forward",
        positions=positions,
        actions=kw.pop("actions", [1] * (len(positions) - 1) + [0]),
        reference_path=reference if reference is not None else [positions[0], goal],
        goal=goal,
        geodesic_start_goal=math.dist(positions[0], goal),
        distance_to_goal=dist,
        stopped=stopped,
        **kw,
    )


def test_never_moves_far_from_goal():
    # start (0,0,0), goal (10,0,0), stops at once; R = [(0,0,0), (10,0,0)].
    m = compute_metrics(make_record(line(0), [10, 0, 0]))
    assert m["TL"] == 0.0
    assert m["NE"] == 10.0
    assert m["OSR"] == 0.0 and m["SR"] == 0.0 and m["SPL"] == 0.0 and m["SDTW"] == 0.0
    # cost row [0, 10] -> DTW = 0 + 10 = 10; nDTW = exp(-10 / (2 * 3)).
    assert m["nDTW"] == pytest.approx(math.exp(-10 / 6))
    # PC = (exp(0) + exp(-10/3)) / 2; EPL = 10 PC; TL = 0 -> LS = EPL / (EPL + EPL) = 1/2.
    pc = (1 + math.exp(-10 / 3)) / 2
    assert m["CLS"] == pytest.approx(pc / 2)
    assert m["steps"] == 1.0


def test_stops_at_once_within_radius():
    # goal 2 m away: d = 2, TL = 0 -> SR 1, SPL = 1 * 2 / max(0, 2) = 1.
    m = compute_metrics(make_record(line(0), [2, 0, 0]))
    assert m["SR"] == 1.0 and m["OSR"] == 1.0
    assert m["SPL"] == 1.0
    # DTW: cost row [0, 2] -> 2; nDTW = exp(-2 / 6).
    assert m["nDTW"] == pytest.approx(math.exp(-1 / 3))
    assert m["SDTW"] == pytest.approx(math.exp(-1 / 3))


def test_start_on_goal_spl_is_one():
    # d = 0 and TL = 0: max(TL, d) = 0, defined as a perfect SPL of 1.
    m = compute_metrics(make_record(line(0), [0, 0, 0]))
    assert m["SR"] == 1.0 and m["SPL"] == 1.0
    # zero-length reference, agent did not move: LS = 1, PC = 1 -> CLS = 1.
    assert m["CLS"] == 1.0


def test_straight_path_along_reference():
    path = line(0, 1, 2, 3, 4)
    m = compute_metrics(make_record(path, [4, 0, 0], reference=path))
    # TL = 4 = d -> SPL 1; identical paths -> DTW 0, nDTW 1; PC 1, EPL 4 = TL -> LS 1.
    assert m["TL"] == 4.0 and m["NE"] == 0.0
    assert m["SR"] == 1.0 and m["SPL"] == 1.0
    assert m["nDTW"] == 1.0 and m["SDTW"] == 1.0
    assert m["CLS"] == 1.0


def test_detour_reduces_spl_by_length_ratio():
    # out 1 m along +z and back, then 4 m to the goal: TL = 1 + 1 + 2 + 2 = 6, d = 4.
    path = [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
    m = compute_metrics(make_record(path, [4, 0, 0]))
    assert m["TL"] == pytest.approx(6.0)
    assert m["SR"] == 1.0
    assert m["SPL"] == pytest.approx(4 / 6)


def test_overshoot_is_oracle_success_only():
    # x = 0, 2, 4 (on goal), 6, 8 then STOP: min distance 0 <= 3, final 4 > 3.
    m = compute_metrics(make_record(line(0, 2, 4, 6, 8), [4, 0, 0]))
    assert m["OSR"] == 1.0 and m["SR"] == 0.0 and m["SPL"] == 0.0
    assert m["NE"] == 4.0 and m["TL"] == 8.0


def test_inside_radius_without_stop_is_not_success():
    # VLN-CE: success needs STOP; the agent ran out of steps on the goal.
    m = compute_metrics(make_record(line(0, 2, 4), [4, 0, 0], stopped=False, actions=[1, 1]))
    assert m["NE"] == 0.0 and m["OSR"] == 1.0
    assert m["SR"] == 0.0 and m["SPL"] == 0.0 and m["SDTW"] == 0.0
    assert m["nDTW"] > 0.0


def test_dtw_by_hand():
    # P = x 0,1,2; R = x 0,2. Costs (rows P, cols R): [0,2], [1,1], [2,0].
    # D row 0: [0, 2]; row 1: [1, 1 + min(2, 1, 0)] = [1, 1]; row 2: [3, 0 + min(1, 3, 1)] = [3, 1].
    p, r = line(0, 1, 2), line(0, 2)
    assert dtw(np.array(p), np.array(r)) == pytest.approx(1.0)
    assert dtw(np.array(r), np.array(p)) == pytest.approx(1.0)
    m = compute_metrics(make_record(p, [2, 0, 0], reference=r))
    assert m["nDTW"] == pytest.approx(math.exp(-1 / (2 * 3)))


def _dtw_naive(a, b):
    d = np.full((len(a) + 1, len(b) + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = np.linalg.norm(a[i - 1] - b[j - 1])
            d[i, j] = cost + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[-1, -1]


def test_dtw_matches_textbook_recurrence_and_is_fast():
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 6), (6, 1), (9, 4), (4, 9)]:
        a, b = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
        assert dtw(a, b) == pytest.approx(_dtw_naive(a, b))
    a, b = rng.normal(size=(500, 3)), rng.normal(size=(50, 3))
    start = time.perf_counter()
    dtw(a, b)
    assert time.perf_counter() - start < 0.2  # ~2 ms when idle; generous for shared CPUs


def test_cls_by_hand():
    # P = (0,0,0) -> (0,0,3); R = (0,0,0) -> (3,0,0); radius 3.
    # r0 is on P: exp(0) = 1; r1 is 3 from p0 (3*sqrt2 from p1): exp(-1).
    # PC = (1 + e^-1) / 2; PL(R) = 3 = TL; EPL = 3 PC < 3;
    # LS = EPL / (EPL + 3 - EPL) = PC; CLS = PC * LS = PC^2.
    path = [[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    rec = make_record(path, [3, 0, 0], reference=line(0, 3))
    pc = (1 + math.exp(-1)) / 2
    assert compute_metrics(rec)["CLS"] == pytest.approx(pc**2)


def test_aggregate_means_and_count():
    a = compute_metrics(make_record(line(0, 1, 2, 3, 4), [4, 0, 0], reference=line(0, 4)))
    b = compute_metrics(make_record(line(0), [10, 0, 0]))
    agg = aggregate([a, b])
    assert agg["episodes"] == 2
    assert agg["SR"] == 0.5  # (1 + 0) / 2
    assert agg["TL"] == 2.0  # (4 + 0) / 2
    assert agg["NE"] == 5.0  # (0 + 10) / 2
    assert set(METRIC_NAMES) <= set(agg)


def test_aggregate_rejects_empty_and_mismatched():
    with pytest.raises(VlnavError, match="no episodes"):
        aggregate([])
    with pytest.raises(VlnavError, match="'SR'"):
        aggregate([{"SR": 1.0, "TL": 1.0}, {"TL": 2.0}])


def test_format_table():
    table = format_table({"random": {"episodes": 3, **dict.fromkeys(METRIC_NAMES, 0.5)}})
    header, rule, row = table.splitlines()
    assert header == "| agent | episodes | " + " | ".join(METRIC_NAMES) + " |"
    assert rule.count("|") == header.count("|")
    assert row == "| random | 3 | 0.50 | 0.50 | " + " | ".join(["0.500"] * 6) + " |"


def test_record_round_trip_through_json():
    rec = make_record(line(0, 1, 2), [2, 0, 0], agent="oracle", extra={"seed": 3})
    again = EpisodeRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec


def test_record_errors_name_the_key():
    data = make_record(line(0, 1), [1, 0, 0]).to_dict()
    del data["distance_to_goal"]
    with pytest.raises(RecordError, match="missing key 'distance_to_goal'"):
        EpisodeRecord.from_dict(data)
    data = make_record(line(0, 1), [1, 0, 0]).to_dict()
    data["distance_to_goal"] = [1.0]
    with pytest.raises(RecordError, match="'distance_to_goal' has 1 entries"):
        EpisodeRecord.from_dict(data)
    data = make_record(line(0, 1), [1, 0, 0]).to_dict()
    data["positions"][1] = [1.0, 0.0]
    with pytest.raises(RecordError, match=r"'positions'\[1\] must be 3 numbers"):
        EpisodeRecord.from_dict(data)
