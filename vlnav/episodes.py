"""The VLN-CE R2R-CE episode format (``R2R_VLNCE_v1-3_preprocessed/<split>/<split>.json.gz``).

Files are read and written exactly: every key of the file, known or not, survives a
load/save round trip, numbers keep their JSON type, and gzip output is deterministic.
Layout::

    {"episodes": [{"episode_id": 1, "trajectory_id": 4, "scene_id": "mp3d/X/X.glb",
                   "start_position": [x, y, z], "start_rotation": [x, y, z, w],
                   "info": {"geodesic_distance": 9.9},
                   "goals": [{"position": [x, y, z], "radius": 3.0}],
                   "instruction": {"instruction_text": "...", "instruction_tokens": [..]},
                   "reference_path": [[x, y, z], ...]}, ...],
     "instruction_vocab": {"word_list": [...], ...}}

Tokens follow VLN-CE: habitat-lab v0.1.5's ``tokenize`` (the one VLN-CE's author says
produced ``instruction_tokens``), index 0 is padding, 1 is unknown, real words are >= 2,
and every instruction is padded to 200 tokens.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlnav import VlnavError

EPISODE_KEYS: tuple[str, ...] = (
    "episode_id",
    "trajectory_id",
    "scene_id",
    "start_position",
    "start_rotation",
    "info",
    "goals",
    "instruction",
    "reference_path",
)
"""Keys every episode must have, in the order they are written."""

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
INSTRUCTION_MAX_LEN = 200

_GZIP_MAGIC = b"\x1f\x8b"
# habitat-lab v0.1.5 habitat/datasets/utils.py: split on runs of non-word, non-hyphen
# characters and keep them as tokens ("." stays, spaces vanish); "'s" is split off,
# "," and "?" are removed.
_SPLIT_RE = re.compile(r"([^\w-]+)")
_KEEP = ("'s",)
_REMOVE = (",", "?")


class EpisodeFormatError(VlnavError):
    """An episode file or record does not follow the R2R-CE format."""


# --------------------------------------------------------------------------- records


@dataclass
class Episode:
    """One R2R-CE episode.

    ``episode_id`` and ``trajectory_id`` keep the type found in the file (int in
    R2R-CE). ``instruction_tokens`` is None when the file has none (RxR-CE).
    ``instruction_extra`` and ``extra`` hold unknown keys of the instruction and of the
    episode, so that writing back reproduces the input; ``info`` and ``goals`` are kept
    verbatim.
    """

    episode_id: int | str
    trajectory_id: int | str
    scene_id: str
    start_position: list[float]
    start_rotation: list[float]
    goals: list[dict]
    reference_path: list[list[float]]
    instruction_text: str
    info: dict
    instruction_tokens: list[int] | None = None
    instruction_extra: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def goal_position(self) -> list[float]:
        """Position of the first (in R2R-CE: only) goal."""
        return self.goals[0]["position"]

    @property
    def geodesic_distance(self) -> float:
        """Geodesic start-to-goal distance in metres, from ``info``."""
        return float(self.info["geodesic_distance"])

    def to_dict(self) -> dict[str, Any]:
        """The episode as it appears in the file (known keys first, then unknown ones)."""
        instruction: dict[str, Any] = {"instruction_text": self.instruction_text}
        if self.instruction_tokens is not None:
            instruction["instruction_tokens"] = self.instruction_tokens
        instruction.update(self.instruction_extra)
        return {
            "episode_id": self.episode_id,
            "trajectory_id": self.trajectory_id,
            "scene_id": self.scene_id,
            "start_position": self.start_position,
            "start_rotation": self.start_rotation,
            "info": self.info,
            "goals": self.goals,
            "instruction": instruction,
            "reference_path": self.reference_path,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "episode") -> Episode:
        """Validate one episode dict; ``where`` prefixes error messages."""
        if not isinstance(data, dict):
            raise EpisodeFormatError(f"{where}: must be an object, got {type(data).__name__}")
        for key in EPISODE_KEYS:
            if key not in data:
                raise EpisodeFormatError(f"{where}: missing key {key!r}")
        for key in ("episode_id", "trajectory_id"):
            if not isinstance(data[key], (int, str)) or isinstance(data[key], bool):
                raise EpisodeFormatError(f"{where}: {key!r} must be an int or a string")
        if not isinstance(data["scene_id"], str):
            raise EpisodeFormatError(f"{where}: 'scene_id' must be a string")
        _check_vector(data["start_position"], 3, "start_position", where)
        _check_vector(data["start_rotation"], 4, "start_rotation", where)

        info = data["info"]
        if not isinstance(info, dict) or "geodesic_distance" not in info:
            raise EpisodeFormatError(f"{where}: 'info' must be an object with 'geodesic_distance'")
        if not _is_number(info["geodesic_distance"]) or info["geodesic_distance"] < 0:
            raise EpisodeFormatError(f"{where}: 'info.geodesic_distance' must be a number >= 0")

        goals = data["goals"]
        if not isinstance(goals, list) or not goals:
            raise EpisodeFormatError(f"{where}: 'goals' must be a non-empty list")
        for i, goal in enumerate(goals):
            if not isinstance(goal, dict) or "position" not in goal:
                raise EpisodeFormatError(f"{where}: 'goals[{i}]' must be an object with 'position'")
            _check_vector(goal["position"], 3, f"goals[{i}].position", where)
            radius = goal.get("radius")
            if radius is not None and (not _is_number(radius) or radius < 0):
                raise EpisodeFormatError(f"{where}: 'goals[{i}].radius' must be a number >= 0")

        instruction = data["instruction"]
        if not isinstance(instruction, dict) or "instruction_text" not in instruction:
            raise EpisodeFormatError(f"{where}: missing key 'instruction.instruction_text'")
        if not isinstance(instruction["instruction_text"], str):
            raise EpisodeFormatError(f"{where}: 'instruction.instruction_text' must be a string")
        tokens = instruction.get("instruction_tokens")
        if tokens is not None and (
            not isinstance(tokens, list)
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens)
        ):
            raise EpisodeFormatError(f"{where}: 'instruction.instruction_tokens' must be ints")

        path = data["reference_path"]
        if not isinstance(path, list) or not path:
            raise EpisodeFormatError(f"{where}: 'reference_path' must be a non-empty list")
        for i, point in enumerate(path):
            _check_vector(point, 3, f"reference_path[{i}]", where)

        return cls(
            episode_id=data["episode_id"],
            trajectory_id=data["trajectory_id"],
            scene_id=data["scene_id"],
            start_position=data["start_position"],
            start_rotation=data["start_rotation"],
            goals=goals,
            reference_path=path,
            instruction_text=instruction["instruction_text"],
            info=info,
            instruction_tokens=tokens,
            instruction_extra={
                k: v
                for k, v in instruction.items()
                if k not in ("instruction_text", "instruction_tokens")
            },
            extra={k: v for k, v in data.items() if k not in EPISODE_KEYS},
        )


@dataclass
class EpisodeSet:
    """The contents of one episode file.

    ``vocab`` is the ``instruction_vocab`` object kept verbatim (None when the file has
    none, as in RxR-CE; VLN-CE's R2R loader needs one). ``extra`` holds unknown
    top-level keys.
    """

    episodes: list[Episode]
    vocab: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"episodes": [e.to_dict() for e in self.episodes]}
        if self.vocab is not None:
            out["instruction_vocab"] = self.vocab
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "episode set") -> EpisodeSet:
        """Validate a whole file's object; nothing partial is returned."""
        if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
            raise EpisodeFormatError(f"{where}: no 'episodes' list at the top level")
        vocab = data.get("instruction_vocab")
        if vocab is not None and not (
            isinstance(vocab, dict) and isinstance(vocab.get("word_list", []), list)
        ):
            raise EpisodeFormatError(f"{where}: 'instruction_vocab' must be an object")
        episodes = []
        for i, raw in enumerate(data["episodes"]):
            eid = raw.get("episode_id") if isinstance(raw, dict) else None
            label = f"{where}: episode {i}" + (f" (episode_id={eid!r})" if eid is not None else "")
            episodes.append(Episode.from_dict(raw, label))
        extra = {k: v for k, v in data.items() if k not in ("episodes", "instruction_vocab")}
        return cls(episodes=episodes, vocab=vocab, extra=extra)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_vector(value: Any, n: int, key: str, where: str) -> None:
    if not isinstance(value, list) or len(value) != n or not all(map(_is_number, value)):
        raise EpisodeFormatError(f"{where}: {key!r} must be {n} numbers, got {value!r}")


# ------------------------------------------------------------------------------ files


def load_episodes(path: str | os.PathLike) -> EpisodeSet:
    """Read an R2R-CE episode file (gzip detected by content; plain JSON accepted)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EpisodeFormatError(f"episode file not found: {path}") from None
    except OSError as e:
        raise EpisodeFormatError(f"cannot read episode file {path}: {e.strerror}") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise EpisodeFormatError(f"{path}: corrupt gzip data ({e})") from None
    elif path.name.endswith(".gz"):
        raise EpisodeFormatError(f"{path}: not a gzip file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EpisodeFormatError(f"{path}: not valid JSON ({e})") from None
    return EpisodeSet.from_dict(data, str(path))


def save_episodes(path: str | os.PathLike, episode_set: EpisodeSet) -> Path:
    """Write ``episode_set``; gzip (with mtime 0, so output is deterministic) for ``.gz``.

    The file is replaced atomically, so a reader never sees half a file.
    """
    path = Path(path)
    data = json.dumps(episode_set.to_dict()).encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------- vocabulary


def split_words(text: str) -> list[str]:
    """VLN-CE's word splitting (habitat-lab v0.1.5 ``tokenize``).

    Example:
        >>> split_words("Walk past the sofa, then stop at John's door.")
        ['walk', 'past', 'the', 'sofa', 'then', 'stop', 'at', 'john', "'", 's', 'door', '.']
    """
    text = text.lower()
    for token in _KEEP:
        text = text.replace(token, " " + token)
    for token in _REMOVE:
        text = text.replace(token, "")
    return [t.strip() for t in _SPLIT_RE.split(text) if t.strip()]


def build_vocab(texts: Iterable[str]) -> dict[str, Any]:
    """An R2R-CE-style ``instruction_vocab`` for ``texts``.

    ``word_list`` is ``["<pad>", "<unk>"]`` then the sorted distinct words, so padding
    is 0, unknown is 1 and words are >= 2 as in R2R-CE. The other keys mirror the
    attributes of habitat's ``VocabDict`` (``word2idx_dict``, ``stoi``, ``itos``,
    ``num_vocab``, ``UNK_INDEX``, ``PAD_INDEX``). Whether R2R-CE's own list carries
    ``<s>``/``</s>`` after ``<unk>`` (as habitat's ``VocabFromText`` would add) could
    not be confirmed; no index used here depends on it.
    """
    words = sorted({w for text in texts for w in split_words(text)} - {PAD_TOKEN, UNK_TOKEN})
    word_list = [PAD_TOKEN, UNK_TOKEN, *words]
    stoi = {w: i for i, w in enumerate(word_list)}
    return {
        "word_list": word_list,
        "word2idx_dict": stoi,
        "stoi": dict(stoi),
        "itos": list(word_list),
        "num_vocab": len(word_list),
        "UNK_INDEX": 1,
        "PAD_INDEX": 0,
    }


def _stoi(vocab: dict[str, Any]) -> dict[str, int]:
    for key in ("stoi", "word2idx_dict"):
        if isinstance(vocab.get(key), dict):
            return vocab[key]
    return {w: i for i, w in enumerate(vocab.get("word_list", []))}


def _special_index(vocab: dict[str, Any], key: str, token: str) -> int | None:
    index = vocab.get(key)
    return index if index is not None else _stoi(vocab).get(token)


def tokenize(
    text: str, vocab: dict[str, Any], max_len: int | None = INSTRUCTION_MAX_LEN
) -> list[int]:
    """Word indices of ``text``: unknown words map to UNK, the list is cut or padded
    with PAD (0 if the vocabulary names none) to ``max_len`` (None: neither)."""
    stoi = _stoi(vocab)
    unk = _special_index(vocab, "UNK_INDEX", UNK_TOKEN)
    if unk is None:
        raise VlnavError(f"vocabulary has no {UNK_TOKEN!r} entry and no 'UNK_INDEX'")
    pad = _special_index(vocab, "PAD_INDEX", PAD_TOKEN)
    pad = 0 if pad is None else pad
    ids = [stoi.get(w, unk) for w in split_words(text)]
    if max_len is None:
        return ids
    return ids[:max_len] + [pad] * (max_len - len(ids))


def detokenize(tokens: Iterable[int], vocab: dict[str, Any]) -> str:
    """Words of ``tokens`` joined by spaces, padding dropped (lossy: case and removed
    punctuation do not come back)."""
    itos = vocab.get("itos") or vocab.get("word_list", [])
    pad = _special_index(vocab, "PAD_INDEX", PAD_TOKEN)
    pad = 0 if pad is None else pad
    return " ".join(itos[t] if 0 <= t < len(itos) else UNK_TOKEN for t in tokens if t != pad)


# -------------------------------------------------------------------------- rotations


def yaw_to_quaternion(yaw: float) -> list[float]:
    """Quaternion ``[x, y, z, w]`` for a heading ``yaw`` (radians) about +y.

    Habitat convention: heading 0 looks along -z and positive yaw turns left
    (counter-clockwise seen from above).
    """
    return [0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2)]


def rotate_vector(q: list[float], v: list[float]) -> list[float]:
    """Rotate 3-vector ``v`` by the (normalised) quaternion ``q = [x, y, z, w]``."""
    x, y, z, w = _unit(q)
    # v' = v + 2w (u x v) + 2 u x (u x v), u = (x, y, z)
    tx = 2 * (y * v[2] - z * v[1])
    ty = 2 * (z * v[0] - x * v[2])
    tz = 2 * (x * v[1] - y * v[0])
    return [
        v[0] + w * tx + (y * tz - z * ty),
        v[1] + w * ty + (z * tx - x * tz),
        v[2] + w * tz + (x * ty - y * tx),
    ]


def quaternion_to_yaw(q: list[float]) -> float:
    """Heading in (-pi, pi] of quaternion ``[x, y, z, w]``: the angle, about +y, of the
    rotated forward vector (0, 0, -1) projected on the floor."""
    fx, _, fz = rotate_vector(q, [0.0, 0.0, -1.0])
    return math.atan2(-fx, -fz)


def _unit(q: list[float]) -> tuple[float, float, float, float]:
    if len(q) != 4:
        raise VlnavError(f"a quaternion needs 4 numbers [x, y, z, w], got {q!r}")
    norm = math.sqrt(sum(c * c for c in q))
    if norm == 0:
        raise VlnavError("the zero quaternion is not a rotation")
    x, y, z, w = (c / norm for c in q)
    return x, y, z, w
