"""VLN metrics as pure functions of one finished episode, aggregated once.

Training, evaluation and reports all call :func:`compute_metrics` on an
:class:`EpisodeRecord` and :func:`aggregate` on the results, so a number means the
same thing everywhere. Definitions follow VLN-CE (Krantz et al. 2020) with its 3 m
success radius; nDTW uses exact dynamic time warping (VLN-CE uses fastdtw's
approximation) and CLS follows Jain et al. 2019.

Example:
    >>> rec = EpisodeRecord(
    ...     episode_id="1", scene_id="house0", instruction="go ahead",
    ...     positions=[[0, 0, 0], [0, 0, -1]], actions=[1, 0],
    ...     reference_path=[[0, 0, 0], [0, 0, -1]], goal=[0, 0, -1],
    ...     geodesic_start_goal=1.0, distance_to_goal=[1.0, 0.0], stopped=True)
    >>> compute_metrics(rec)["SPL"]
    1.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlnav import VlnavError

METRIC_NAMES: tuple[str, ...] = ("TL", "NE", "OSR", "SR", "SPL", "nDTW", "SDTW", "CLS")
"""The reported metrics, in the canonical (table) order."""

_METRE_METRICS = frozenset({"TL", "NE"})  # shown with 2 decimals; the rest are fractions


class RecordError(VlnavError):
    """An episode record is missing a key or has a value of the wrong shape."""


@dataclass
class EpisodeRecord:
    """Everything the metrics need from one finished episode.

    ``positions[0]`` is the start; ``distance_to_goal[i]`` is the geodesic distance
    from ``positions[i]`` to the goal, so both lists have the same length.
    ``stopped`` is True when the agent called STOP (VLN-CE only counts success then),
    False when it ran out of steps.
    """

    episode_id: str
    scene_id: str
    instruction: str
    positions: list[list[float]]
    actions: list[int]
    reference_path: list[list[float]]
    goal: list[float]
    geodesic_start_goal: float
    distance_to_goal: list[float]
    stopped: bool
    success_radius: float = 3.0
    agent: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"episode record {self.episode_id!r}"
        _check_points(self.positions, "positions", where)
        _check_points(self.reference_path, "reference_path", where)
        _check_points([self.goal], "goal", where)
        if len(self.distance_to_goal) != len(self.positions):
            raise RecordError(
                f"{where}: 'distance_to_goal' has {len(self.distance_to_goal)} entries, "
                f"'positions' has {len(self.positions)}; they must match"
            )
        for key in ("geodesic_start_goal", "success_radius"):
            value = getattr(self, key)
            if not _is_number(value) or value < 0:
                raise RecordError(f"{where}: {key!r} must be a number >= 0, got {value!r}")
        if self.success_radius == 0:
            raise RecordError(f"{where}: 'success_radius' must be > 0")
        if not all(_is_number(d) for d in self.distance_to_goal):
            raise RecordError(f"{where}: 'distance_to_goal' must hold numbers only")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (plain lists, floats, strings)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeRecord:
        """Inverse of :meth:`to_dict`; raises :class:`RecordError` naming a missing key."""
        if not isinstance(data, dict):
            raise RecordError(f"episode record must be a dict, got {type(data).__name__}")
        where = f"episode record {data.get('episode_id', '?')!r}"
        names = [f.name for f in dataclasses.fields(cls)]
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for key in required:
            if key not in data:
                raise RecordError(f"{where}: missing key {key!r}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RecordError(f"{where}: unknown key {unknown[0]!r}")
        return cls(**{k: data[k] for k in names if k in data})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_points(points: Any, key: str, where: str) -> None:
    if not isinstance(points, (list, tuple)) or len(points) == 0:
        raise RecordError(f"{where}: {key!r} must be a non-empty list of [x, y, z]")
    for i, p in enumerate(points):
        if not isinstance(p, (list, tuple)) or len(p) != 3 or not all(map(_is_number, p)):
            raise RecordError(f"{where}: {key!r}[{i}] must be 3 numbers, got {p!r}")


def path_length(points: np.ndarray) -> float:
    """Sum of Euclidean segment lengths of an (N, 3) path; 0 for a single point."""
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Exact dynamic time warping distance between (N, D) and (M, D) point sequences.

    Steps (i-1, j), (i, j-1), (i-1, j-1), Euclidean point cost. Each DP row is solved
    in closed form: with ``S`` the prefix sum of the row's costs,
    ``D[i, j] = S[j] + min_{k<=j}(min(D[i-1, k], D[i-1, k-1]) + c[i, k] - S[k])``,
    a ``minimum.accumulate``; the loop runs over the shorter sequence (DTW is symmetric).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < len(b):
        a, b = b, a
    cost = np.linalg.norm(b[:, None, :] - a[None, :, :], axis=-1)  # (M, N), M <= N
    prev = np.cumsum(cost[0])
    for row in cost[1:]:
        diag = np.empty_like(prev)
        diag[0] = prev[0]
        np.minimum(prev[1:], prev[:-1], out=diag[1:])  # best of (i-1, j), (i-1, j-1)
        prefix = np.cumsum(row)
        prev = prefix + np.minimum.accumulate(diag + row - prefix)
    return float(prev[-1])


def compute_metrics(record: EpisodeRecord) -> dict[str, float]:
    """TL, NE, OSR, SR, SPL, nDTW, SDTW, CLS and steps for one finished episode.

    - TL: trajectory length, sum of Euclidean steps between ``positions``.
    - NE: navigation error, the final geodesic distance to goal.
    - OSR: 1 if the agent was ever within the success radius.
    - SR: 1 if the agent called STOP within the radius (not merely ended there).
    - SPL: ``SR * d / max(TL, d)``, ``d`` the start-goal geodesic (1 when both are 0).
    - nDTW: ``exp(-DTW(P, R) / (|R| * radius))``; SDTW = SR * nDTW.
    - CLS: ``PC * LS`` (Jain et al. 2019), ``PC`` the mean over reference points of
      ``exp(-dist to path / radius)``, ``LS = EPL / (EPL + |EPL - TL|)`` with
      ``EPL = PC * length(R)``; LS is 1 when both lengths are 0.
    """
    path = np.asarray(record.positions, dtype=np.float64)
    ref = np.asarray(record.reference_path, dtype=np.float64)
    radius = float(record.success_radius)
    d = float(record.geodesic_start_goal)
    dist = np.asarray(record.distance_to_goal, dtype=np.float64)

    tl = path_length(path)
    ne = float(dist[-1])
    osr = float(dist.min() <= radius)
    sr = float(bool(record.stopped) and ne <= radius)
    longest = max(tl, d)
    spl = sr * (d / longest if longest > 0 else 1.0)

    ndtw = math.exp(-dtw(path, ref) / (len(ref) * radius))

    nearest = np.linalg.norm(ref[:, None, :] - path[None, :, :], axis=-1).min(axis=1)
    pc = float(np.exp(-nearest / radius).mean())
    epl = pc * path_length(ref)
    denom = epl + abs(epl - tl)
    ls = epl / denom if denom > 0 else 1.0

    return {
        "TL": tl,
        "NE": ne,
        "OSR": osr,
        "SR": sr,
        "SPL": spl,
        "nDTW": ndtw,
        "SDTW": sr * ndtw,
        "CLS": pc * ls,
        "steps": float(len(record.actions)),
    }


def aggregate(metrics_list: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over episodes, plus ``"episodes"``: the episode count.

    Every dict must have the same keys, so that no mean silently covers a subset.
    """
    if not metrics_list:
        raise VlnavError("aggregate() got no episodes: there is nothing to average")
    keys = list(metrics_list[0])
    for i, m in enumerate(metrics_list):
        if set(m) != set(keys):
            odd = sorted(set(m) ^ set(keys))[0]
            raise VlnavError(f"aggregate(): episode {i} differs from episode 0 in key {odd!r}")
    out: dict[str, float] = {k: float(np.mean([m[k] for m in metrics_list])) for k in keys}
    out["episodes"] = len(metrics_list)
    return out


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per agent, columns ``episodes`` + :data:`METRIC_NAMES`.

    TL and NE are metres with 2 decimals; the rest are fractions in [0, 1] with 3.
    A metric missing from a row is shown as ``-``.
    """
    header = ["agent", "episodes", *METRIC_NAMES]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    for agent, m in rows.items():
        cells = [agent, str(int(m["episodes"])) if "episodes" in m else "-"]
        for name in METRIC_NAMES:
            if name not in m:
                cells.append("-")
            else:
                cells.append(f"{m[name]:.2f}" if name in _METRE_METRICS else f"{m[name]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
