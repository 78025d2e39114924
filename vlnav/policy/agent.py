"""Decision-level agents: the trained policy (``PolicyAgent``) and the data-collecting
``DecisionAgent`` (expert, policy or a DAgger mixture), both behind the harness's Agent API.

At each decision the agent builds the text observation of its 12-view panorama, chooses a
candidate (or Stop), and the controller turns that into low-level actions; a forward step
that collides ends the move early and the next decision follows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vlnav import VlnavError
from vlnav.perception.base import make_captioner
from vlnav.perception.candidates import TextObservation, TextObserver
from vlnav.policy.controller import candidate_actions, follow_action, path_budget
from vlnav.policy.expert import expert_judgement
from vlnav.policy.model import NavPolicy
from vlnav.policy.prompt import LABELS, STOP_LABEL, Decision, header_text
from vlnav.sim.base import MOVE_FORWARD, STOP, AgentState


class EpisodeContext:
    """The policy's KV cache for one episode: each decision feeds only its new tokens.

    Tensors live on the device of the policy's weights, so it runs on a GPU too."""

    def __init__(self, policy: NavPolicy, instruction: str) -> None:
        self.policy = policy
        self.device = next(policy.parameters()).device
        self.pending = policy.encode(header_text(instruction))
        self.marks = policy.marks(instruction)
        self.past: Any = None
        self.pos = 0
        self.earlier: list = []  # observations of the decisions taken so far
        self.seen: list[int] = []  # 1 per cached token that later tokens see (compact history)
        self._hide: Any = None  # the last decision's (segment start, line spans)

    @torch.no_grad()
    def scores(self, decision: Decision) -> tuple[np.ndarray, list[bool]]:
        """Label log-probabilities (13,) for this decision (-inf where unavailable)."""
        pol, dev = self.policy, self.device
        ids, views, avail, labpos, spans = pol.encode_step_spans(decision, self.marks, self.earlier)
        avail = pol.decision_avail(decision, self.marks, avail)
        self.earlier.append(decision.obs)
        seq = self.pending + ids
        views = [-1] * len(self.pending) + views
        if self.pos + len(seq) + 1 > pol.config.max_len:
            out = np.full(len(avail), -np.inf)
            out[-1] = 0.0  # out of context: stop
            return out, avail
        t = torch.tensor([seq], device=dev)
        feats = None
        if pol.proj is not None and decision.features is not None:
            feats = torch.as_tensor(np.asarray(decision.features, np.float32), device=dev)
            feats = feats[None, None]  # (1, 1, 12, D)
        hidden, self.past = pol.step_logits(
            t,
            torch.tensor([views], device=dev),
            torch.zeros_like(t),
            feats,
            torch.tensor([self.seen + [1] * len(seq)], dtype=torch.long, device=dev),
            torch.arange(self.pos, self.pos + len(seq), device=dev)[None],
            self.past,
        )
        self._hide = (self.pos + len(self.pending), spans)
        self.seen += [1] * len(seq)
        self.pos += len(seq)
        off = len(self.pending)
        h_lab = hidden[0, [off + max(p, 0) for p in labpos]]  # (13, E)
        logp = pol.label_logprobs(hidden[0, -1], h_lab, torch.tensor(avail, device=dev))
        return logp.cpu().numpy(), avail

    def commit(self, label: str) -> None:
        """Append the chosen label: it is fed with the next decision's tokens. With the
        compact history the decision's other lines are masked out of the cache."""
        self.pending = [int(self.policy.label_ids[self.policy.label_index(label)])]
        if self._hide is not None:
            start, spans = self._hide
            for o in self.policy.hidden_after(spans, label):
                self.seen[start + o] = 0
            self._hide = None


class DecisionAgent:
    """A decision-level agent. ``choose(obs, decision)`` returns a label; when ``record`` is
    set every visited decision is kept with the expert's label (imitation / DAgger data)."""

    name = "decision"
    sensors: tuple[str, ...] = ()

    def __init__(
        self,
        captioner: Any,
        choose: Callable[[TextObservation, Decision], str] | None = None,
        record: bool = False,
        max_decisions: int = 15,
        success_radius: float = 3.0,
        features: Any = None,
        cache: Any = None,
        turn_angle: float = 15.0,
        forward_step: float = 0.25,
        waypoints: str = "straight",
        good_within: float = 0.5,
        expert_stop: float = 1.0,
    ) -> None:
        self.captioner = captioner
        self.expert_stop = expert_stop  # the recorded expert stops within this of the goal
        self.good_within = good_within  # recorded good answers: within this of the best
        self.waypoints = waypoints  # candidates' waypoints: straight walks or path moves
        self.choose = choose
        self.record = record
        self.max_decisions = max_decisions
        self.success_radius = success_radius
        self.features = features
        self.cache = cache
        self.turn_angle = turn_angle
        self.forward_step = forward_step

    def reset(self, episode: Any, sim: Any, seed: int) -> None:
        self.sim = sim
        self.episode = episode
        self.scene = episode.scene_id
        self.goal = list(episode.goal_position)
        self.observer = TextObserver(
            sim, self.captioner, cache=self.cache, waypoints=self.waypoints
        )
        self.queue: list[int] = []
        self.target: list[float] | None = None  # a path move's waypoint, while following it
        self.budget = 0  # actions the path move may still take
        self._move: Any = None  # the path move's candidate (walked straight if it has no path)
        self.decisions: list[Decision] = []
        self.trace: list[dict[str, Any]] = []
        self.n_decisions = 0
        self.n_actions = 0
        self._last: list[float] | None = None
        self._last_forward = False
        self.rng = np.random.default_rng(seed)
        self.start_episode(episode)

    def start_episode(self, episode: Any) -> None:  # hook for subclasses
        pass

    def _features(self, obs: TextObservation) -> Any:
        if self.features is None:
            return None
        return self.features.panorama_features(self.sim, self.scene, obs)

    def act(self, observations: dict[str, Any], state: AgentState) -> int:
        d = self.pending_decision(state)
        if d is not None:
            self.apply(d, self.choose(d.obs, d) if self.choose else d.label)
        return self.next_action(state)

    # ``act`` in three parts, so that a batched runner can decide for many episodes at once
    def pending_decision(self, state: AgentState) -> Decision | None:
        """The decision to take before the next action (its observation built from the
        simulator's current pose), or None when an action is queued or the budget is spent."""
        moved = self._last is None or state.position != self._last
        if not moved and self.queue and self.queue[0] == MOVE_FORWARD:
            self.queue.clear()  # a forward step that went nowhere: stop the move early
        if self.target is not None:  # a path move: its next action, or its end
            if moved:
                self._advance(state)
            else:
                self.target = None
        if self.queue or self.n_decisions >= self.max_decisions:
            return None
        self.n_decisions += 1
        obs = self.observer.observe(self.scene)
        d = Decision(obs, STOP_LABEL, self._features(obs))
        if self.record:
            d.label, d.good, d.regret, d.distance = expert_judgement(
                self.sim,
                obs,
                self.goal,
                self.success_radius,
                stop_distance=self.expert_stop,
                tolerance=self.good_within,
            )
            self.decisions.append(d)
        return d

    def apply(self, d: Decision, label: str) -> None:
        """Take ``label`` at decision ``d``: queue the controller's actions (none: Stop)."""
        obs = d.obs
        cand = next((c for c in obs.candidates if LABELS[c.index] == label), None)
        self.trace.append(
            {
                "step": self.n_actions,
                "position": list(obs.position),
                "label": label,
                "direction": cand.direction if cand else "stop",
                "text": cand.caption.text if cand else "Stop",
            }
        )
        if cand is not None and self.waypoints == "path":
            # followed from the next action on (a batched runner restores this episode's
            # simulator state only then)
            self.target = list(cand.waypoint)
            self.budget = path_budget(cand.distance, self.forward_step, self.turn_angle)
            self._move = cand
        elif cand is not None:
            self.queue = candidate_actions(
                cand.index, cand.distance, self.turn_angle, self.forward_step
            )

    def _advance(self, state: AgentState) -> None:
        """Queue a path move's next action, or end the move (arrived, or out of budget)."""
        assert self.target is not None
        a = None
        if self.budget > 0:
            a = follow_action(self.sim, state, self.target, self.turn_angle)
        self.budget -= 1
        self.queue = [] if a is None else [a]
        if a is None:
            self.target = None

    def next_action(self, state: AgentState) -> int:
        """The next queued low-level action; Stop when none is queued."""
        self.n_actions += 1
        if self.target is not None and not self.queue:  # a path move's first action
            self._advance(state)
            if not self.queue:  # no path to follow: walk the view straight instead
                c = self._move
                self.queue = candidate_actions(
                    c.index, c.distance, self.turn_angle, self.forward_step
                )
        if not self.queue:
            return STOP
        a = self.queue.pop(0)
        self._last_forward = a == MOVE_FORWARD
        self._last = list(state.position) if self._last_forward else None
        return a


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA GPU if torch sees one, else the CPU; ``cpu``, ``cuda`` and
    ``cuda:N`` as they are (a GPU torch does not see is a one-line error)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    import re

    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise VlnavError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    k = int(device[5:]) if ":" in device else 0
    if k >= n:
        raise VlnavError(
            f"device {device!r}: torch sees {n} CUDA GPU(s)"
            + ("" if n else " (a CPU-only torch build, or no GPU on this machine)")
        )
    return device


class PolicyAgent(DecisionAgent):
    """The trained small-LM policy, loaded from a checkpoint folder."""

    name = "policy"

    def __init__(
        self,
        checkpoint: str,
        max_decisions: int | None = None,
        cache: Any = None,
        threads: int | None = None,
        dtype: str = "float32",
        stop_bias: float | None = None,
        stop_gate: float | None = None,
        device: str = "cpu",
        **kw: Any,
    ) -> None:
        torch.set_num_threads(threads or 1)  # incremental forwards are small
        self.policy, meta = NavPolicy.load(checkpoint)
        if stop_bias is not None:  # overrides the checkpoint's
            from vlnav.config import check_range

            check_range("stop_bias", float(stop_bias), -20.0, 20.0)
            self.policy.config.stop_bias = float(stop_bias)
        if stop_gate is not None:  # overrides the checkpoint's
            from vlnav.config import check_range

            check_range("stop_gate", float(stop_gate), 0.0, 100.0)
            self.policy.config.stop_gate = float(stop_gate)
        if dtype not in ("float32", "bfloat16"):
            raise VlnavError(f"dtype {dtype!r}: expected float32 or bfloat16")
        # bfloat16 halves the decision time on CPUs with AVX512-BF16 / AMX, and on GPUs
        self.policy.to(device=resolve_device(device), dtype=getattr(torch, dtype))
        self.meta = meta
        cap = meta.get("captioner", {"name": "semantic", "kwargs": {}})
        features = None
        if self.policy.proj is not None:
            from vlnav.policy.features import PanoramaFeatures

            features = PanoramaFeatures.from_spec(meta["features"])
        super().__init__(
            make_captioner(cap["name"], **cap.get("kwargs", {})),
            choose=self._choose,
            max_decisions=max_decisions or meta.get("max_decisions", 15),
            features=features,
            waypoints=meta.get("waypoints", "straight"),  # what the policy was trained on
            cache=cache,
            **kw,
        )
        self.name = meta.get("name", "policy")

    def start_episode(self, episode: Any) -> None:
        self.ctx = EpisodeContext(self.policy, episode.instruction_text)

    def _choose(self, obs: TextObservation, decision: Decision) -> str:
        logp, _ = self.ctx.scores(decision)
        k = int(np.argmax(logp))
        label = STOP_LABEL if k == len(LABELS) else LABELS[k]
        self.ctx.commit(label)
        return label
