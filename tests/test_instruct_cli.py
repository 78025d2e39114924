"""``vlnav instruct`` on generated houses: every instruction names a landmark of its own path
and no object that its path's rooms lack; the outputs are the R2R-CE format."""

import gzip
import json
import math

import pytest

from vlnav.cli import main
from vlnav.config import EnvConfig, EpisodesConfig, ScenesConfig
from vlnav.episodes import load_episodes, tokenize
from vlnav.instruct.imagine import read_jsonl
from vlnav.instruct.lexicon import Lexicon
from vlnav.sampler import prepare_data
from vlnav.scenes.spec import SceneSpec


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    """Three generated houses (two for train), 10 train episodes per house."""
    env = EnvConfig(
        data_dir=str(tmp_path_factory.mktemp("instruct_data")),
        scenes=ScenesConfig(train=2, val_unseen=1, seed=3),
        episodes=EpisodesConfig(
            train_per_scene=10, val_seen_per_scene=2, val_unseen_per_scene=4, speaker="route"
        ),
    )
    prepare_data(env, progress=False)
    return env


def env_args(env):
    return [
        "--set", f"data_dir={env.data_dir}", "--set", "scenes.train=2",
        "--set", "scenes.val_unseen=1", "--set", "episodes.speaker=route",
    ]  # fmt: skip


def path_facts(spec: SceneSpec, path, near: float = 3.0):
    """Independently of vlnav.instruct.summary: the object categories of the rooms the path
    passes through, and those within ``near`` metres of the path (its landmarks)."""
    rooms = set()
    samples = []
    for a, b in zip(path[:-1], path[1:]):
        n = max(1, int(math.dist(a, b) / 0.1))
        samples += [[a[k] + (b[k] - a[k]) * t / n for k in range(3)] for t in range(n + 1)]
    for p in samples:
        r = spec.room_at(p[0], p[2])
        if r is not None:
            rooms.add(r.id)
    in_rooms = [o for o in spec.objects if o.room in rooms]

    def dist(o, p):
        dx = max(o.bbox_min[0] - p[0], 0, p[0] - o.bbox_max[0])
        dz = max(o.bbox_min[2] - p[2], 0, p[2] - o.bbox_max[2])
        return math.hypot(dx, dz)

    landmarks = {o.category for o in in_rooms if min(dist(o, p) for p in samples) <= near}
    return {o.category for o in in_rooms}, landmarks, {r.type for r in spec.rooms if r.id in rooms}


def test_template_fills_a_split(houses, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["instruct", "--episodes", "train", *env_args(houses), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "accepted 20, dropped 0" in printed.out and "tokens used" in printed.out
    assert "rejected replies" in printed.out
    assert "instruct train" in printed.err  # the progress bar

    source = load_episodes(houses.episodes_path("train"))
    written = load_episodes(out / "train.json.gz")
    assert len(written.episodes) == len(source.episodes) == 20
    lex = Lexicon.default()
    specs = {}
    for old, ep in zip(source.episodes, written.episodes):
        assert ep.episode_id == old.episode_id and ep.reference_path == old.reference_path
        assert ep.instruction_text != old.instruction_text
        assert ep.instruction_tokens == tokenize(ep.instruction_text, written.vocab)
        prov = ep.info["instruction_provenance"]
        assert prov["speaker"] == "template" and prov["model"] == "template-v1"
        assert set(prov) == {"speaker", "model", "prompt_hash", "seed", "attempt"}
        name = ep.scene_id.split("/")[0]
        if name not in specs:
            specs[name] = SceneSpec.load(houses.scenes_dir / name / f"{name}.json")
        present, landmarks, rooms = path_facts(specs[name], ep.reference_path)
        mentions = lex.mentions(ep.instruction_text)
        objects = [m for m in mentions if m.kind == "object"]
        assert any(m.targets & landmarks for m in objects), ep.instruction_text
        assert all(m.targets & present for m in objects), ep.instruction_text
        assert all(m.targets & rooms for m in mentions if m.kind == "room"), ep.instruction_text
    # the file is the R2R-CE format: vocab, tokens padded to 200
    raw = json.loads(gzip.decompress((out / "train.json.gz").read_bytes()))
    assert raw["instruction_vocab"]["word_list"][:2] == ["<pad>", "<unk>"]
    assert all(len(e["instruction"]["instruction_tokens"]) == 200 for e in raw["episodes"])
    trajs = read_jsonl(out / "train_trajectories.jsonl")
    assert [t.instruction for t in trajs] == [e.instruction_text for e in written.episodes]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["accepted"] == 20 and summary["speaker"] == "template"


def test_same_seed_same_file_other_seed_other_texts(houses, tmp_path):
    for d, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        args = ["instruct", *env_args(houses), "--out", str(tmp_path / d), "--seed", seed]
        assert main([*args, "--limit", "6", "--no-progress"]) == 0
    a, b, c = ((tmp_path / d / "train.json.gz").read_bytes() for d in "abc")
    assert a == b and a != c
    assert len(load_episodes(tmp_path / "a" / "train.json.gz").episodes) == 6


def test_imagine_mode_with_the_template(houses, tmp_path, capsys):
    out = tmp_path / "im"
    args = ["instruct", "--episodes", "val_unseen", *env_args(houses), "--out", str(out)]
    assert main([*args, "--mode", "imagine", "--no-progress"]) == 0
    trajs = read_jsonl(out / "val_unseen_imagined.jsonl")
    assert len(trajs) == 4 and all(t.steps[-1].action == "stop" for t in trajs)
    assert all(t.provenance["speaker"] == "template" for t in trajs)


def test_episode_file_path_and_overrides(houses, tmp_path):
    path = houses.episodes_path("val_seen")
    args = ["instruct", "--episodes", str(path), *env_args(houses), "--out", str(tmp_path)]
    args += ["--set", "instruct.validate.min_words=12", "--set", "instruct.max_attempts=2"]
    assert main([*args, "--no-progress"]) == 0
    s = json.loads((tmp_path / "val_seen_summary.json").read_text())
    assert s["max_attempts"] == 2 and s["items"] == 4


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vlnav: error: ")
    return err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--speaker", "gpt"], "speaker='gpt' is not one of template"),
        (["--speaker", "openai"], "needs a model"),
        (["--episodes", "nope.json.gz"], "episode file not found: nope.json.gz"),
        (["--set", "instruct.max_attempts=0"], "max_attempts=0 is out of range"),
        (["--set", "instruct.colour=red"], "unknown config key 'colour'"),
    ],
)
def test_one_line_errors(houses, tmp_path, capsys, extra, message):
    err = one_line_error(
        capsys, ["instruct", *env_args(houses), "--out", str(tmp_path), "--no-progress", *extra]
    )
    assert message in err


def test_env_episodes_written_by_an_llm_server(tmp_path, monkeypatch):
    """episodes.speaker: openai:<model> makes `vlnav episodes sample` ask a chat server."""
    from vlnav.episodes import load_episodes
    from vlnav.instruct.stub_server import StubChatServer

    with StubChatServer() as server:
        monkeypatch.setenv("VLNAV_OPENAI_BASE_URL", server.base_url)
        env = EnvConfig(
            data_dir=str(tmp_path / "data"),
            scenes=ScenesConfig(train=1, val_unseen=1, seed=5),
            episodes=EpisodesConfig(
                train_per_scene=3, val_seen_per_scene=1, val_unseen_per_scene=2,
                speaker="openai:stub-model",
            ),
        )  # fmt: skip
        prepare_data(env, progress=False)
    eps = load_episodes(env.episodes_path("train")).episodes
    assert eps and all(
        e.info["instruction_provenance"]["speaker"].startswith("openai") for e in eps
    )
