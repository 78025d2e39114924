import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vlnav  # noqa: F401  (registers vlnav/VLN-v0)
from vlnav import VlnavError
from vlnav.env import VLNEnv


@pytest.fixture
def env(tiny_env, tiny_episodes):
    e = gym.make("vlnav/VLN-v0", env_config=tiny_env, split="val_unseen")
    yield e
    e.close()


def test_check_env_passes(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_observations_and_info(env):
    obs, info = env.reset(seed=3)
    assert set(obs) == {"rgb", "depth", "semantic", "instruction"}
    assert obs["rgb"].shape == (64, 64, 3)
    assert isinstance(obs["instruction"], str) and obs["instruction"]
    assert env.observation_space.contains(obs)
    assert info["distance_to_goal"] > 0
    obs, reward, terminated, truncated, info = env.step(1)
    assert not terminated and not truncated
    assert isinstance(reward, float)
    _, _, terminated, _, info = env.step(0)
    assert terminated and info["success"] == (info["distance_to_goal"] <= 3.0)


def rollout(env, seed):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    traj = [info["position"]]
    for _ in range(15):
        obs, r, term, trunc, info = env.step(int(rng.choice([1, 2, 3])))
        traj.append(info["position"])
    return info["episode_id"], traj, obs["rgb"]


def test_same_seed_same_rollout(env):
    a, b = rollout(env, 5), rollout(env, 5)
    assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])


def test_oracle_actions_reach_the_goal(env):
    from vlnav.agents import OracleAgent

    obs, info = env.reset(seed=0, options={"episode_index": 2})
    base = env.unwrapped
    agent = OracleAgent()
    agent.reset(base.episode, base.sim, 0)
    total = 0.0
    for _ in range(300):
        a = agent.act(obs, base.sim.agent_state())
        obs, r, term, trunc, info = env.step(a)
        total += r
        if term:
            break
    assert info["success"] and total > 10.0


def test_bad_episode_index_and_action(tiny_env, tiny_episodes):
    e = VLNEnv(tiny_env, split="val_unseen")
    with pytest.raises(VlnavError, match="episode_index 99 out of range"):
        e.reset(options={"episode_index": 99})
    e.reset(seed=0)
    with pytest.raises(VlnavError, match="invalid action 7"):
        e.step(7)
    e.close()
