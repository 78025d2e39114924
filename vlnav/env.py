"""The gymnasium environment ``vlnav/VLN-v0``: one R2R-CE episode per reset.

Observations: ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres, ``semantic``
(H, W) int32 instance ids, ``instruction`` text. Actions: ``Discrete(4)`` = STOP,
MOVE_FORWARD, TURN_LEFT, TURN_RIGHT. Reward: the decrease in geodesic distance to the goal,
plus ``success_reward`` for stopping inside the success radius. ``info`` carries
``distance_to_goal``, ``success``, ``episode_id`` and ``scene_id``.

Example:
    >>> import gymnasium as gym
    >>> env = gym.make("vlnav/VLN-v0", env_config="envs/procedural.yaml", split="val_seen")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(1)
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vlnav import VlnavError
from vlnav.config import EnvConfig, load_config
from vlnav.episodes import Episode, EpisodeSet, load_episodes
from vlnav.sim.base import STOP, make_simulator

INSTRUCTION_CHARSET = frozenset(string.printable)
INSTRUCTION_MAX_LEN = 1024
MAX_DEPTH = 100.0  # metres; the renderer's far plane is closer


class VLNEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        env_config: EnvConfig | str | Path | None = None,
        split: str = "train",
        episodes: EpisodeSet | list[Episode] | str | Path | None = None,
        overrides: tuple[str, ...] | list[str] = (),
        render_mode: str | None = None,
        success_reward: float = 10.0,
        prepare: bool = True,
    ) -> None:
        if isinstance(env_config, EnvConfig):
            self.config = env_config
        else:
            self.config = load_config(EnvConfig, env_config, overrides)
        if episodes is None:
            if prepare and self.config.scenes.procedural:
                from vlnav.sampler import prepare_data

                prepare_data(self.config, progress=False)
            episodes = self.config.episodes_path(split)
        if isinstance(episodes, (str, Path)):
            episodes = load_episodes(episodes)
        self.episodes = list(episodes.episodes if isinstance(episodes, EpisodeSet) else episodes)
        if not self.episodes:
            raise VlnavError("VLNEnv needs at least one episode")
        self.render_mode = render_mode
        self.success_reward = success_reward
        s = self.config.sensor
        obs_spaces: dict[str, spaces.Space] = {}
        if "rgb" in s.sensors:
            obs_spaces["rgb"] = spaces.Box(0, 255, (s.height, s.width, 3), np.uint8)
        if "depth" in s.sensors:
            obs_spaces["depth"] = spaces.Box(0.0, MAX_DEPTH, (s.height, s.width), np.float32)
        if "semantic" in s.sensors:
            obs_spaces["semantic"] = spaces.Box(
                0, np.iinfo(np.int32).max, (s.height, s.width), np.int32
            )
        obs_spaces["instruction"] = spaces.Text(
            max_length=INSTRUCTION_MAX_LEN, min_length=0, charset=INSTRUCTION_CHARSET
        )
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Discrete(4)
        self.sim = make_simulator(self.config.backend, self.config)
        self.episode: Episode | None = None
        self._steps = 0
        self._dist = 0.0
        self._last_obs: dict[str, Any] = {}

    # -------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "episode_index" in options:
            index = int(options["episode_index"])
            if not 0 <= index < len(self.episodes):
                raise VlnavError(f"episode_index {index} out of range [0, {len(self.episodes)})")
        else:
            index = int(self.np_random.integers(len(self.episodes)))
        self.episode = ep = self.episodes[index]
        raw = self.sim.reset(ep.scene_id, ep.start_position, ep.start_rotation)
        self._steps = 0
        self._dist = self._distance()
        return self._obs(raw), self._info(False)

    def step(self, action: Any):
        if self.episode is None:
            raise VlnavError("call reset() before step()")
        action = int(action)
        if not self.action_space.contains(action):
            raise VlnavError(f"invalid action {action!r} (expected 0..3)")
        self._steps += 1
        raw = self.sim.step(action)
        dist = self._distance()
        reward = self._dist - dist
        self._dist = dist
        terminated = action == STOP
        success = terminated and dist <= self.config.episodes.success_radius
        if success:
            reward += self.success_reward
        truncated = not terminated and self._steps >= self.config.agent.max_steps
        return self._obs(raw), float(reward), terminated, truncated, self._info(success)

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last_obs.get("rgb")
        return None

    def close(self) -> None:
        self.sim.close()

    # -------------------------------------------------------------- helpers
    def _distance(self) -> float:
        assert self.episode is not None
        return float(
            self.sim.geodesic_distance(self.sim.agent_state().position, self.episode.goal_position)
        )

    def _obs(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        assert self.episode is not None
        text = "".join(c for c in self.episode.instruction_text if c in INSTRUCTION_CHARSET)
        obs = {k: raw[k] for k in self.observation_space.spaces if k in raw}
        obs["instruction"] = text[:INSTRUCTION_MAX_LEN]
        self._last_obs = obs
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        assert self.episode is not None
        return {
            "distance_to_goal": self._dist,
            "success": bool(success),
            "episode_id": self.episode.episode_id,
            "scene_id": self.episode.scene_id,
            "steps": self._steps,
            "position": list(self.sim.agent_state().position),
        }
