"""A deployable agent: a trained policy that reads 12 photos per decision, no simulator.

The policy was trained on text observations of 12-view panoramas (LangNav's setting). Here
the views come from any camera: ``act(frames)`` captions each frame with a pixel captioner
(``learned:<checkpoint>``, ``hf:<model>``, ...), builds the same candidate text the policy
read in training, and returns the direction it chose, or Stop.

**View order.** ``frames[k]`` looks ``30 * k`` degrees to the *left* of ``frames[0]``
(counter-clockwise seen from above, as the simulator's ``panorama()``): frame 0 straight
ahead, 1 at 30 degrees left, 3 at 90 degrees left, 6 behind, 9 at 90 degrees right, 11 at
30 degrees right. With a hand-held camera: shoot ahead, then turn left by 30 degrees
between shots. Any resolution (large photos are downscaled with OpenCV to 512 pixels on
the short side, then the captioner centre-crops and resizes them to its input, as it does
with simulator frames); the policy was trained on square 90-degree views.

**Candidates.** The simulator offers only the directions with a reachable waypoint; a camera
has no depth, so by default every direction is a candidate. Pass ``navigable`` (12 bools,
from a depth sensor or an obstacle detector) to offer only some.

Example:
    >>> agent = Agent.from_checkpoint("runs/langnav-small/policy", captioner="learned:runs/captioner")
    >>> agent.reset("Walk past the sofa and stop at the kitchen door.")
    >>> action = agent.act(frames)  # 12 RGB uint8 arrays, view k = 30 k degrees left
    >>> action.kind, action.direction, action.caption
    ('move', '60 degree left', 'A living room with a red sofa ahead, a doorway on the left.')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlnav import VlnavError
from vlnav.perception.base import View
from vlnav.perception.candidates import N_VIEWS, Candidate, TextObservation
from vlnav.policy.prompt import LABELS, STOP_LABEL, Decision

MOVE, STOP = "move", "stop"


@dataclass(frozen=True)
class Action:
    """What the agent chose at one decision.

    ``heading_deg`` is the chosen view's direction in degrees to the left of ``frames[0]``
    (0, 30, ..., 330; 90 is left, 270 is right), None for Stop; turn by it, then walk
    that way (in the simulator, up to 3 m). ``view`` is the index of the chosen frame.
    """

    kind: str  # "move" | "stop"
    label: str  # the policy's answer: "<A>" ... "<L>" (view 0 ... 11) or "<STOP>"
    heading_deg: float | None
    caption: str  # the chosen view's caption; "Stop" for Stop
    view: int | None = None
    direction: str = "stop"  # "front", "30 degree left", ..., "30 degree right" or "stop"
    forced: bool = False  # a Stop forced by the decision budget, not chosen by the policy


class Agent:
    """A trained policy with a pixel captioner, deciding from 12 frames per step.

    Build it with :meth:`from_checkpoint`; call :meth:`reset` with each new instruction,
    then :meth:`act` once per decision. The policy's KV cache keeps the whole episode
    (instruction, earlier candidates and choices), so later decisions see earlier ones,
    as in training. After ``max_decisions`` decisions (the checkpoint's budget) it stops.
    """

    def __init__(
        self,
        policy: Any,
        captioner: Any,
        max_decisions: int = 15,
        features: Any = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        extra = _simulator_sensors(captioner)
        if extra:
            raise VlnavError(
                f"captioner '{getattr(captioner, 'name', captioner)}' reads the simulator's "
                f"{'/'.join(extra)}, not pixels; pass a pixel-based captioner "
                "(learned:<checkpoint> or hf:<model>)"
            )
        self.policy = policy
        self.captioner = captioner
        self.max_decisions = int(max_decisions)
        self.features = features  # a FeatureEncoder (encode(frames) -> (12, D)) for fusion
        self.meta = meta or {}
        self.instruction: str | None = None
        self.history: list[Action] = []
        self.observation: TextObservation | None = None  # the last decision's candidates
        self._ctx: Any = None  # vlnav.policy.agent.EpisodeContext
        self._done = False

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        captioner: Any = None,
        device: str = "cpu",
        max_decisions: int | None = None,
        threads: int | None = 1,
    ) -> Agent:
        """Load a policy checkpoint folder (``vlnav train`` writes ``<out>/policy``).

        Args:
            path: the checkpoint folder (``policy.json``, ``lm/``).
            captioner: a captioner spec (``"learned:runs/captioner"``, ``"hf:<model>"``) or
                object; default: the one the policy was trained with (recorded in its
                ``policy.json``), which must read pixels: a policy trained on ``semantic``
                captions needs one passed here.
            device: torch device of the policy (``"cpu"``, ``"cuda"``).
            max_decisions: decision budget per episode (default: the checkpoint's).
            threads: torch CPU threads (None: leave torch's setting).
        """
        import torch

        from vlnav.perception.base import make_captioner
        from vlnav.policy.model import NavPolicy

        if threads:
            torch.set_num_threads(threads)
        policy, meta = NavPolicy.load(path)
        policy.to(device)
        if captioner is None:
            spec = meta.get("captioner") or {"name": "semantic", "kwargs": {}}
            captioner = make_captioner(spec["name"], **spec.get("kwargs", {}))
            extra = _simulator_sensors(captioner)
            if extra:
                raise VlnavError(
                    f"policy {path} was trained on '{spec['name']}' captions, which read the "
                    f"simulator's {'/'.join(extra)}; pass a pixel-based captioner: "
                    "Agent.from_checkpoint(path, captioner='learned:<checkpoint>')"
                )
        elif isinstance(captioner, str):
            captioner = make_captioner(captioner)
        features = None
        if policy.proj is not None:
            from vlnav.perception.features import make_feature_encoder

            features = make_feature_encoder(meta["features"]["encoder"])
        budget = max_decisions or int(meta.get("max_decisions", 15))
        return cls(policy, captioner, budget, features, meta)

    # ------------------------------------------------------------ episode
    def reset(self, instruction: str) -> None:
        """Start a new episode with ``instruction`` (clears the history and the KV cache)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("reset() needs a non-empty instruction string")
        self.instruction = instruction
        self.history = []
        self.observation = None
        from vlnav.policy.agent import EpisodeContext

        self._ctx = EpisodeContext(self.policy, instruction)
        self._done = False

    def act(self, frames: Sequence[np.ndarray], navigable: Sequence[bool] | None = None) -> Action:
        """Choose a direction (or Stop) from 12 RGB frames; see the module doc for the order.

        Args:
            frames: 12 arrays (H, W, 3) uint8 RGB, any size (each may differ), or one
                (12, H, W, 3) array.
            navigable: optional 12 bools: which directions may be chosen (default: all).
        """
        if self._ctx is None:
            raise VlnavError("call reset(instruction) before act()")
        if self._done:
            raise VlnavError("the episode has ended (the agent stopped); call reset(instruction)")
        frames = _check_frames(frames)
        allowed = _check_navigable(navigable)
        if len(self.history) >= self.max_decisions:
            return self._finish(Action(STOP, STOP_LABEL, None, "Stop", forced=True), None)
        obs = self._observe(frames, allowed)
        feats = None
        if self.features is not None:
            feats = np.asarray(self.features.encode(frames), np.float32)  # (12, D)
        logp, _ = self._ctx.scores(Decision(obs, STOP_LABEL, feats))
        k = int(np.argmax(logp))
        label = STOP_LABEL if k == len(LABELS) else LABELS[k]
        self._ctx.commit(label)
        cand = next((c for c in obs.candidates if c.index == k), None)
        if cand is None:
            action = Action(STOP, STOP_LABEL, None, "Stop")
        else:
            text = cand.caption.text.strip() or "(no caption)"  # e.g. the "none" captioner
            action = Action(MOVE, label, cand.offset_deg, text, k, cand.direction)
        return self._finish(action, obs)

    def _finish(self, action: Action, observation: TextObservation | None) -> Action:
        self.history.append(action)
        self.observation = observation
        self._done = action.kind == STOP
        return action

    def _observe(self, frames: list[np.ndarray], allowed: list[bool]) -> TextObservation:
        """The text observation: every allowed view captioned, as the simulator's candidates."""
        keep = [k for k in range(N_VIEWS) if allowed[k]]
        caps = self.captioner.caption([View(rgb=frames[k]) for k in keep]) if keep else []
        obs = TextObservation("camera", [0.0, 0.0, 0.0], 0.0)
        for k, cap in zip(keep, caps):  # captions as the policy read them in training
            heading = math.remainder(math.radians(30.0 * k), 2 * math.pi)
            obs.candidates.append(Candidate(k, 30.0 * k, heading, [0.0, 0.0, 0.0], 0.0, cap))
        return obs

    def describe(self) -> str:
        """The last decision's candidates as the policy read them (one line each, + Stop)."""
        return self.observation.to_text(details=False) if self.observation else ""


# ---------------------------------------------------------------- input checks
def _simulator_sensors(captioner: Any) -> list[str]:
    """The sensors a captioner reads besides RGB (``semantic`` reads instance ids and depth):
    those a camera does not give. ``none`` (empty captions) reads nothing and is fine."""
    return [s for s in getattr(captioner, "needs", ("rgb",)) if s != "rgb"]


def _check_frames(frames: Any) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise ValueError(f"act() needs a list of {N_VIEWS} frames, got {type(frames).__name__}")
    if len(frames) != N_VIEWS:
        raise ValueError(
            f"act() needs {N_VIEWS} frames (view k looks 30*k degrees left of view 0), "
            f"got {len(frames)}"
        )
    out = []
    for k, f in enumerate(frames):
        if not isinstance(f, np.ndarray):
            raise ValueError(f"frame {k} is a {type(f).__name__}, expected a numpy array")
        if f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {k} has shape {f.shape}, expected (H, W, 3) RGB")
        if f.dtype != np.uint8:
            raise ValueError(f"frame {k} has dtype {f.dtype}, expected uint8 (0-255 RGB)")
        if min(f.shape[:2]) < 8:
            raise ValueError(f"frame {k} is {f.shape[1]}x{f.shape[0]} pixels, at least 8x8 needed")
        out.append(_downscale(np.ascontiguousarray(f)))
    return out


MAX_SIDE = 512  # frames are downscaled to this short side first: captioners read <= 384 px


def _downscale(frame: np.ndarray, short: int = MAX_SIDE) -> np.ndarray:
    """A large photo resized (cv2, area interpolation) to ``short`` pixels on its short side;
    the captioner then centre-crops and resizes it to its own input size."""
    h, w = frame.shape[:2]
    if min(h, w) <= short:
        return frame
    import cv2

    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _check_navigable(navigable: Any) -> list[bool]:
    if navigable is None:
        return [True] * N_VIEWS
    flags = list(np.asarray(navigable).reshape(-1))
    if len(flags) != N_VIEWS:
        raise ValueError(f"navigable needs {N_VIEWS} flags (one per frame), got {len(flags)}")
    return [bool(x) for x in flags]
