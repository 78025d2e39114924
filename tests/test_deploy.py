"""The deployable agent (vlnav.deploy) on real photographs, with no simulator: a tiny learned
captioner and a tiny policy, both trained and saved by the real code paths, decide from 12
views made of the photographs scikit-image ships; plus the example script and the errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the policy needs torch (pip install -e '.[llm]')")
skdata = pytest.importorskip("skimage.data", reason="scikit-image is in the dev extra")

from vlnav import VlnavError  # noqa: E402
from vlnav.config import EnvConfig, EpisodesConfig, ScenesConfig, SensorConfig  # noqa: E402
from vlnav.deploy import Action, Agent  # noqa: E402
from vlnav.policy.prompt import LABELS, STOP_LABEL  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Walk past the sofa into the kitchen and stop next to the white fridge."


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(policy checkpoint, captioner checkpoint): a 30-step learned captioner and a policy
    trained for 3 steps on its captions by ``Trainer`` (about 10 s on one thread)."""
    from vlnav.perception.learned import CaptionModelConfig, TrainCaptionerConfig, train_captioner
    from vlnav.train import Trainer, load_train_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("deploy")
    env = EnvConfig(
        data_dir=str(root / "data"),
        sensor=SensorConfig(width=32, height=32),
        scenes=ScenesConfig(train=1, val_unseen=1, seed=3),
        episodes=EpisodesConfig(train_per_scene=2, val_seen_per_scene=1, val_unseen_per_scene=1),
    )
    model = CaptionModelConfig(image_size=32, channels=[8, 16], d_model=32, layers=1, heads=2)
    cap_cfg = TrainCaptionerConfig(
        frames=48, eval_frames=0, minutes=0, max_steps=30, batch_size=8, warmup_steps=5,
        threads=1, model=model,
    )  # fmt: skip
    captioner = root / "captioner"
    train_captioner(env, cap_cfg, captioner, progress=False)
    cfg = load_train_config(
        None,
        [f"out={root / 'policy-run'}", f"captioner.name=learned:{captioner}",
         "captioner.kwargs={}", "data.max_episodes=2", "optim.steps=3", "optim.batch_size=2",
         "optim.warmup=1", "dagger.rounds=0", "policy.layers=1", "policy.hidden=32",
         "policy.heads=2", "policy.intermediate=64", "threads=1", "max_decisions=4"],
    )  # fmt: skip
    policy = Trainer(cfg, progress=False, env=env).run()
    return policy, captioner


def photo_views() -> list[np.ndarray]:
    """12 views of different sizes: three crops (left, middle, right) of four photographs."""
    views = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = getattr(skdata, name)()
        h, w = img.shape[:2]
        for k in range(3):
            x0 = k * (w - h * 3 // 4) // 2
            views.append(np.ascontiguousarray(img[:, x0 : x0 + h * 3 // 4]))
    return views


def assert_valid(action: Action, allowed=range(12)) -> None:
    assert isinstance(action, Action) and action.kind in ("move", "stop")
    assert isinstance(action.caption, str) and action.caption.strip()
    if action.kind == "move":
        assert action.label in LABELS and action.view in allowed
        assert action.label == LABELS[action.view]
        assert action.heading_deg == 30.0 * action.view and 0 <= action.heading_deg < 360
        assert action.direction in ("front", "back") or "degree" in action.direction
    else:
        assert action.label == STOP_LABEL and action.heading_deg is None and action.view is None


def test_acts_on_photographs(checkpoints):
    policy, captioner = checkpoints
    assert json.loads((policy / "policy.json").read_text())["captioner"]["name"].startswith(
        "learned:"
    )
    agent = Agent.from_checkpoint(policy)  # the captioner recorded in the checkpoint
    views = photo_views()
    assert len({v.shape for v in views}) == 4  # sizes differ between photographs
    agent.reset(INSTRUCTION)
    actions = []
    for step in range(agent.max_decisions + 1):
        actions.append(agent.act(np.roll(np.array(views, dtype=object), step).tolist()))
        assert_valid(actions[-1])
        if actions[-1].kind == "stop":
            break
    assert actions[-1].kind == "stop" and len(actions) <= agent.max_decisions + 1
    assert agent.history == actions
    lines = agent.describe().splitlines() if agent.observation else []
    assert all(line.startswith("To your ") for line in lines[:-1])

    again = Agent.from_checkpoint(policy, captioner=f"learned:{captioner}")
    again.reset(INSTRUCTION)
    replay = []
    for step in range(len(actions)):
        replay.append(again.act(np.roll(np.array(views, dtype=object), step).tolist()))
    assert replay == actions  # deterministic: same frames, same choices

    with pytest.raises(VlnavError, match="reset"):
        again.act(views)  # the episode ended with its Stop


def test_history_reaches_later_decisions_and_navigable_mask(checkpoints):
    """Later decisions are scored with the earlier ones in the KV cache (as in training);
    a navigable mask restricts the choice; the decision budget forces a Stop."""
    from vlnav.policy.agent import EpisodeContext
    from vlnav.policy.prompt import Decision

    policy, _ = checkpoints
    agent = Agent.from_checkpoint(policy, max_decisions=3)
    views = photo_views()
    only = [k in (2, 5) for k in range(12)]
    agent.reset(INSTRUCTION)
    a = agent.act(views, navigable=only)
    assert_valid(a, allowed=(2, 5))
    assert [c.index for c in agent.observation.candidates] == [2, 5]
    # the same scores as the simulator agents' EpisodeContext, decision after decision
    ctx = EpisodeContext(agent.policy, INSTRUCTION)
    agent.reset(INSTRUCTION)
    for _ in range(3):
        got = agent.act(views, navigable=None)
        obs = agent.observation
        ref, _ = ctx.scores(Decision(obs, STOP_LABEL))
        k = int(np.argmax(ref))
        assert got.label == (STOP_LABEL if k == 12 else LABELS[k])
        ctx.commit(got.label)
        if got.kind == "stop":
            break
    else:
        forced = agent.act(views)
        assert forced.kind == "stop" and forced.forced
    # the same frames scored with and without the earlier decisions in the cache
    agent.reset(INSTRUCTION)
    agent.act(views)
    after_one, _ = agent._ctx.scores(Decision(agent.observation, STOP_LABEL))
    fresh, _ = EpisodeContext(agent.policy, INSTRUCTION).scores(
        Decision(agent.observation, STOP_LABEL)
    )
    assert not np.allclose(after_one, fresh)


def test_one_line_errors(checkpoints, tmp_path):
    policy, captioner = checkpoints
    agent = Agent.from_checkpoint(policy)
    views = photo_views()
    with pytest.raises(VlnavError, match="reset"):
        agent.act(views)
    agent.reset(INSTRUCTION)
    bad = {
        "12 frames": views[:5],
        "dtype float64": [*views[:11], views[11].astype(float)],
        r"shape \(64, 64\)": [*views[:11], np.zeros((64, 64), np.uint8)],
        r"shape \(64, 64, 4\)": [np.zeros((64, 64, 4), np.uint8), *views[1:]],
        "numpy array": [*views[:11], "photo.jpg"],
        "at least 8x8": [*views[:11], np.zeros((4, 64, 3), np.uint8)],
        "list of 12 frames": "photos/",
    }
    for match, frames in bad.items():
        with pytest.raises(ValueError, match=match) as e:
            agent.act(frames)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="navigable needs 12"):
        agent.act(views, navigable=[True] * 3)
    with pytest.raises(ValueError, match="instruction"):
        agent.reset("")
    assert agent.history == []  # nothing was decided by the failed calls

    semantic = tmp_path / "semantic-policy"
    shutil.copytree(policy, semantic)
    meta = json.loads((semantic / "policy.json").read_text())
    meta["captioner"] = {"name": "semantic", "kwargs": {"max_objects": 2}}
    (semantic / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(VlnavError, match="pass a pixel-based captioner") as e:
        Agent.from_checkpoint(semantic)
    assert "\n" not in str(e.value)
    ok = Agent.from_checkpoint(semantic, captioner=f"learned:{captioner}")
    ok.reset(INSTRUCTION)
    assert_valid(ok.act(views))
    with pytest.raises(VlnavError, match="not pixels"):
        Agent.from_checkpoint(semantic, captioner="semantic")
    with pytest.raises(VlnavError, match="not found"):
        Agent.from_checkpoint(tmp_path / "nope")


def test_run_on_photos_script(checkpoints, tmp_path, capsys):
    """The example script on a folder of photographs (JPEG and PNG files)."""
    import cv2

    policy, _ = checkpoints
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, v in enumerate(photo_views()):
        ext = ".jpg" if k % 2 else ".png"
        cv2.imwrite(str(folder / f"view_{k:02d}{ext}"), cv2.cvtColor(v, cv2.COLOR_RGB2BGR))
    spec = importlib.util.spec_from_file_location(
        "run_on_photos", ROOT / "scripts/run_on_photos.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--checkpoint", str(policy), "--instruction", INSTRUCTION, "--all", str(folder)]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"instruction: {INSTRUCTION}")
    assert "step 1: " in out and "To your front is, " in out
    line = next(s for s in out.splitlines() if s.startswith("step 1: "))
    assert "Stop" in line or ("view_" in line and ": " in line)

    for p in sorted(folder.iterdir())[5:]:
        p.unlink()  # 5 photos: repeated to make 12, with a note
    assert script.main(argv) == 0
    assert "note: 5 photos is not a multiple of 12" in capsys.readouterr().out
    assert script.steps_of(list("abcde"))[0] == list("abcdeabcdeab")
    assert (
        script.main(["--checkpoint", str(policy), "--instruction", "x", str(tmp_path / "no")]) == 2
    )


def test_large_photos_are_downscaled_first():
    from vlnav.deploy import _downscale

    big = np.zeros((3000, 4000, 3), np.uint8)
    assert _downscale(big).shape == (512, 683, 3)
    small = photo_views()[0]
    assert _downscale(small) is small
