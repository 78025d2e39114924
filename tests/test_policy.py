"""The small-LM policy: prompt, scoring, KV-cache consistency, batching, checkpoints, training."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the policy needs torch (pip install -e '.[llm]')")

from vlnav import VlnavError  # noqa: E402
from vlnav.perception.base import Caption  # noqa: E402
from vlnav.perception.candidates import Candidate, TextObservation  # noqa: E402
from vlnav.policy.agent import EpisodeContext  # noqa: E402
from vlnav.policy.batched import BatchDecider  # noqa: E402
from vlnav.policy.controller import candidate_actions  # noqa: E402
from vlnav.policy.model import NavPolicy, PolicyConfig, build_tokenizer, collate  # noqa: E402
from vlnav.policy.prompt import (  # noqa: E402
    LABELS,
    STOP_LABEL,
    Decision,
    candidate_line,
    labels_of,
    step_text,
)
from vlnav.sim.base import MOVE_FORWARD, TURN_LEFT, TURN_RIGHT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ["kitchen", "bedroom", "hallway", "office"]
THINGS = ["red sofa", "white fridge", "black desk", "green plant"]


def make_obs(rng, n=4):
    idx = sorted(rng.choice(12, size=n, replace=False).tolist())
    cands = [
        Candidate(
            k,
            30.0 * k,
            0.0,
            [0.0, 0.0, 0.0],
            2.0,
            Caption(f"A {rng.choice(ROOMS)} with a {rng.choice(THINGS)} ahead."),
        )
        for k in idx
    ]
    return TextObservation("s", [0.0, 0.0, 0.0], 0.0, cands)


def make_episode(rng, steps=3):
    ds = []
    for _ in range(steps):
        obs = make_obs(rng)
        ds.append(Decision(obs, LABELS[obs.candidates[0].index]))
    ds[-1].label = STOP_LABEL
    return f"walk to the {rng.choice(ROOMS)} and stop by the {rng.choice(THINGS)}.", ds


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    return [make_episode(rng, steps=int(rng.integers(2, 5))) for _ in range(6)]


def tiny_policy(corpus, fusion="none", feature_dim=0, head="pointer"):
    texts = [i for i, _ in corpus] + [
        c.caption.text for _, ds in corpus for d in ds for c in d.obs.candidates
    ]
    tok = build_tokenizer(texts, ["left", "right", "front", "back", "degree"])
    torch.manual_seed(0)
    cfg = PolicyConfig(
        layers=2,
        hidden=32,
        heads=2,
        intermediate=64,
        max_len=2048,
        fusion=fusion,
        feature_dim=feature_dim,
    )
    return NavPolicy.create(cfg, tok).eval()


def test_prompt_format_and_labels():
    obs = make_obs(np.random.default_rng(1))
    text = step_text(obs)
    assert text.startswith("<step> ") and text.endswith("stop . <STOP> <ans>")
    for c in obs.candidates:
        assert f"to your {c.direction} is ," in text and f" {LABELS[c.index]}" in text
    assert labels_of(obs) == [LABELS[c.index] for c in obs.candidates] + [STOP_LABEL]


def test_compact_prompt_keeps_the_content_words_and_is_shorter(corpus):
    obs = make_obs(np.random.default_rng(1))
    full, compact = step_text(obs), step_text(obs, "compact")
    assert compact.startswith("<step> ") and compact.endswith("stop . <STOP> <ans>")
    assert len(compact.split()) < 0.7 * len(full.split())
    for c in obs.candidates:
        line = candidate_line(c, "compact")
        assert line.endswith(LABELS[c.index]) and "to your" not in line
        content = [w for w in c.caption.text.lower().rstrip(".").split() if w not in ("a", "with")]
        assert all(w in line.split() for w in content)
    # the policy encodes the style its config names, and scores the same labels
    pol = tiny_policy(corpus)
    pol.config.prompt = "compact"
    ids, _, avail = pol.encode_step(Decision(obs, STOP_LABEL))
    assert pol.tokenizer.decode(ids).split() == compact.split()
    assert sum(avail) == len(obs.candidates) + 1
    with pytest.raises(Exception, match="prompt"):
        PolicyConfig(prompt="verbose")


def test_distances_prompt_adds_each_objects_metres():
    from vlnav.perception.base import Mention

    cap = Caption(
        "A kitchen with a white fridge on the left and a red sofa ahead, a doorway on the right.",
        [Mention("fridge", "white", 2.4, "left"), Mention("sofa", "red", 0.6, "ahead")],
        room="kitchen",
        doorway=True,
    )
    c = Candidate(3, 90.0, 0.0, [0.0, 0.0, 0.0], 2.0, cap)
    line = candidate_line(c, "distances")
    assert line == "kitchen white fridge left 2 , red sofa ahead 1 , doorway right <D>"
    # a caption without structured mentions (a pixel captioner's) reads as compact
    plain = Candidate(3, 90.0, 0.0, [0.0, 0.0, 0.0], 2.0, Caption("A kitchen with a fridge."))
    assert candidate_line(plain, "distances") == candidate_line(plain, "compact")


def test_controller_turns_the_short_way_then_walks():
    assert candidate_actions(0, 1.0) == [MOVE_FORWARD] * 4
    assert candidate_actions(2, 0.5) == [TURN_LEFT] * 4 + [MOVE_FORWARD] * 2  # 60 left
    assert candidate_actions(11, 0.25) == [TURN_RIGHT] * 2 + [MOVE_FORWARD]  # 30 right
    assert candidate_actions(6, 0.25)[:12] == [TURN_LEFT] * 12  # turn around


def test_scores_only_available_labels_and_kv_cache_matches_full_pass(corpus):
    pol = tiny_policy(corpus)
    instr, ds = corpus[2]
    ctx = EpisodeContext(pol, instr)
    incremental = []
    for d in ds:
        logp, avail = ctx.scores(d)
        assert np.isneginf(logp[~np.array(avail)]).all()  # never an invalid action
        assert np.exp(logp[np.array(avail)]).sum() == pytest.approx(1.0, abs=1e-5)
        incremental.append(logp)
        ctx.commit(d.label)
    # the same decisions scored in one teacher-forced pass over the whole episode
    item = pol.episode_tensors(instr, ds)
    batch = collate([item], pol.tokenizer.pad_token_id)
    with torch.no_grad():
        out = pol.lm(input_ids=batch["input_ids"], output_hidden_states=True)
        hid = out.hidden_states[-1][0]
        logits = pol._label_logits(hid[batch["ans_pos"]], hid[batch["labpos"]])
        logits = logits.masked_fill(~batch["avail"], float("-inf"))
        full = torch.log_softmax(logits, -1).numpy()
    for a, b in zip(incremental, full):
        fin = np.isfinite(b)
        assert np.allclose(a[fin], b[fin], atol=1e-4)


def test_batched_decisions_equal_single_episode_decisions(corpus):
    pol = tiny_policy(corpus)
    ref = []
    for instr, ds in corpus:
        ctx, r = EpisodeContext(pol, instr), []
        for d in ds:
            r.append(ctx.scores(d)[0])
            ctx.commit(d.label)
        ref.append(r)
    bd = BatchDecider(pol, len(corpus))
    for i, (instr, _) in enumerate(corpus):
        bd.start(i, instr)
    for t in range(max(len(ds) for _, ds in corpus)):
        active = {i: ds[t] for i, (_, ds) in enumerate(corpus) if t < len(ds)}
        out = bd.decide(active)
        for i, d in active.items():
            fin = np.isfinite(ref[i][t])
            assert np.allclose(out[i][1][fin], ref[i][t][fin], atol=1e-4)
            bd.pending[i] = [int(pol.label_ids[pol.label_index(d.label)])]  # teacher forcing


def test_training_reduces_the_loss(corpus):
    pol = tiny_policy(corpus).train()
    items = [pol.episode_tensors(i, d) for i, d in corpus]
    opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, _ = pol(collate(items, pol.tokenizer.pad_token_id))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("fusion", ["add", "prefix"])
def test_fusion_changes_scores_and_trains(corpus, fusion):
    rng = np.random.default_rng(0)
    for _, ds in corpus:
        for d in ds:
            d.features = rng.standard_normal((12, 8)).astype(np.float32)
    pol = tiny_policy(corpus, fusion=fusion, feature_dim=8)
    item = pol.episode_tensors(*corpus[0])
    if fusion == "prefix":
        assert item["input_ids"].count(pol.img_id) == sum(
            len(d.obs.candidates) for d in corpus[0][1]
        )
    batch = collate([item], pol.tokenizer.pad_token_id)
    loss, _ = pol(batch)
    loss.backward()
    assert pol.proj.weight.grad is not None and pol.proj.weight.grad.abs().sum() > 0
    for _, ds in corpus:
        for d in ds:
            d.features = None


def test_checkpoint_round_trip_and_bad_checkpoints(corpus, tmp_path):
    pol = tiny_policy(corpus)
    pol.save(tmp_path / "ck", extra={"name": "tiny"})
    loaded, meta = NavPolicy.load(tmp_path / "ck")
    assert meta["name"] == "tiny"
    ctx_a, ctx_b = EpisodeContext(pol, corpus[0][0]), EpisodeContext(loaded, corpus[0][0])
    a, b = ctx_a.scores(corpus[0][1][0])[0], ctx_b.scores(corpus[0][1][0])[0]
    assert np.allclose(a, b, equal_nan=True)
    with pytest.raises(VlnavError, match="policy checkpoint not found"):
        NavPolicy.load(tmp_path / "nope")
    pol.lm.save_pretrained(tmp_path / "other")  # another model: no policy.json
    with pytest.raises(VlnavError, match="is not a vlnav policy checkpoint"):
        NavPolicy.load(tmp_path / "other")
    (tmp_path / "ck" / "lm" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(VlnavError, match="cannot load the policy LM from"):
        NavPolicy.load(tmp_path / "ck")


def _train_cmd(data_dir, out, *extra):
    return [
        sys.executable, "-m", "vlnav.cli", "train", str(ROOT / "configs/langnav-small.yaml"),
        "--set", f"env_overrides=[data_dir={data_dir}, scenes.train=2, scenes.val_unseen=1, "
        "episodes.train_per_scene=4, episodes.val_seen_per_scene=1, "
        "episodes.val_unseen_per_scene=2]",
        "--set", f"out={out}", "--set", "data.max_episodes=8", "--set", "optim.steps=8",
        "--set", "optim.batch_size=2", "--set", "optim.warmup=2", "--set", "dagger.rounds=1",
        "--set", "dagger.episodes=2", "--set", "dagger.steps=4", "--set", "checkpoint_every=1",
        "--set", "policy.layers=1", "--set", "policy.hidden=32", "--set", "policy.heads=2",
        "--set", "policy.intermediate=64", "--set", "threads=1", *extra,
    ]  # fmt: skip


def _weights(ck):
    from safetensors.torch import load_file

    return load_file(str(Path(ck) / "lm" / "model.safetensors"))


@pytest.mark.slow
def test_training_killed_and_resumed_ends_at_the_same_weights(tmp_path):
    data = tmp_path / "data"
    full = subprocess.run(
        _train_cmd(data, tmp_path / "full"), cwd=ROOT, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr[-2000:]
    # the same run, killed once it has checkpointed a few imitation steps, then restarted
    proc = subprocess.Popen(
        _train_cmd(data, tmp_path / "cut"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = tmp_path / "cut" / "state" / "state.pt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.is_file() and torch.load(state, weights_only=False)["step"] >= 3:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    step = torch.load(state, weights_only=False)["step"]
    assert 3 <= step < 12, "the kill should land mid-run"
    resumed = subprocess.run(
        _train_cmd(data, tmp_path / "cut"), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _weights(tmp_path / "full" / "policy"), _weights(tmp_path / "cut" / "policy")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    cfg = json.loads((tmp_path / "cut" / "policy" / "policy.json").read_text())
    assert cfg["kind"] == "vlnav-policy"


@pytest.mark.slow
def test_two_training_processes_take_the_same_steps_as_one(tmp_path):
    """Scale-out: ``torchrun --nproc_per_node 2 -m vlnav.cli train`` (two CPU processes, gloo
    DDP; the same code path as several GPUs or nodes) collects the data once and ends at the
    weights a single process reaches."""
    data = tmp_path / "data"
    one = subprocess.run(
        _train_cmd(data, tmp_path / "one"), cwd=ROOT, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-2000:]
    cmd = _train_cmd(data, tmp_path / "two")
    ddp = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *cmd[1:]]
    two = subprocess.run(ddp, cwd=ROOT, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 processes" in two.stdout
    for name in ("expert.jsonl", "dagger1.jsonl"):  # written once, not once per process
        a = (tmp_path / "one" / "data" / name).read_text().splitlines()
        b = (tmp_path / "two" / "data" / name).read_text().splitlines()
        assert len(a) == len(b) > 0
    a, b = _weights(tmp_path / "one" / "policy"), _weights(tmp_path / "two" / "policy")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k
