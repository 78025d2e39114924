import json

import pytest

from vlnav import VlnavError
from vlnav.evaluate import evaluate, read_records


def test_oracle_succeeds_and_random_is_recorded(tiny_env, tiny_episodes, tmp_path):
    res = evaluate(tiny_env, "oracle", "val_unseen", out_dir=tmp_path / "o", progress=False)
    assert res.metrics["episodes"] == len(tiny_episodes)
    assert res.metrics["SR"] == 1.0
    assert res.metrics["SPL"] > 0.9
    assert res.metrics["nDTW"] > 0.8
    assert (tmp_path / "o" / "metrics.md").read_text().count("oracle") == 1
    rnd = evaluate(tiny_env, "random", "val_unseen", out_dir=tmp_path / "r", progress=False)
    assert rnd.metrics["SPL"] < res.metrics["SPL"]


def test_resume_skips_finished_and_drops_partial_line(tiny_env, tiny_episodes, tmp_path):
    out = tmp_path / "run"
    evaluate(tiny_env, "oracle", "val_unseen", episodes=3, out_dir=out, progress=False)
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # simulate a kill in the middle of writing a fourth record
    with open(out / "records.jsonl", "a") as fh:
        fh.write(lines[0][: len(lines[0]) // 2])
    res = evaluate(tiny_env, "oracle", "val_unseen", out_dir=out, progress=False)
    lines2 = (out / "records.jsonl").read_text().splitlines()
    assert lines2[:3] == lines  # nothing already written is lost or rewritten
    assert len(lines2) == len(tiny_episodes)
    ids = [json.loads(x)["episode_id"] for x in lines2]
    assert len(set(ids)) == len(ids)  # nothing duplicated
    assert res.metrics["episodes"] == len(tiny_episodes)


def test_a_folder_is_resumed_only_by_the_run_that_wrote_it(tiny_env, tiny_episodes, tmp_path):
    """run.json names what wrote the records: another agent, setting or checkpoint is
    refused (nothing lost), or set aside with restart=True; the same run resumes."""
    from vlnav.evaluate import checkpoint_digest, run_identity

    out = tmp_path / "run"
    evaluate(tiny_env, "oracle", "val_unseen", episodes=2, out_dir=out, progress=False)
    before = (out / "records.jsonl").read_text()
    with pytest.raises(VlnavError, match=r"holds the records of a run with another agent"):
        evaluate(tiny_env, "random", "val_unseen", out_dir=out, progress=False)
    assert (out / "records.jsonl").read_text() == before  # nothing lost
    # the same run, with more episodes and another worker count, resumes
    res = evaluate(tiny_env, "oracle", "val_unseen", episodes=3, out_dir=out, progress=False)
    assert res.metrics["episodes"] == 3
    assert (out / "records.jsonl").read_text().startswith(before)
    res = evaluate(tiny_env, "random", "val_unseen", out_dir=out, progress=False, restart=True)
    assert (out / "records.jsonl.old").read_text().startswith(before)
    assert {r["agent"] for r in res.records} == {"random"}
    assert json.loads((out / "run.json").read_text())["agent"] == "random"
    evaluate(
        tiny_env, "oracle", "val_unseen", episodes=1, out_dir=out, progress=False, restart=True
    )
    assert (out / "records.jsonl.old").read_text().startswith(before)  # still there
    assert len((out / "records.jsonl.old2").read_text().splitlines()) == len(tiny_episodes)
    # records of an unknown run (no run.json) are not trusted either
    (out / "run.json").unlink()
    with pytest.raises(VlnavError, match=r"an unknown run \(no readable run.json\)"):
        evaluate(tiny_env, "random", "val_unseen", out_dir=out, progress=False)
    # a checkpoint's digest follows its bytes, and is part of the identity
    ck = tmp_path / "ck"
    (ck / "lm").mkdir(parents=True)
    (ck / "policy.json").write_text("{}")
    (ck / "lm" / "model.safetensors").write_bytes(b"weights-1")
    first = checkpoint_digest(ck)
    assert checkpoint_digest(ck) == first
    a = run_identity(tiny_env, "policy", "val_unseen", {"checkpoint": str(ck), "stop_bias": 1.0})
    (ck / "lm" / "model.safetensors").write_bytes(b"weights-2")
    assert checkpoint_digest(ck) != first
    b = run_identity(tiny_env, "policy", "val_unseen", {"checkpoint": str(ck), "stop_bias": 1.0})
    assert a["agent_kwargs"] != b["agent_kwargs"] and a["env_digest"] == b["env_digest"]
    on_gpu = {"checkpoint": str(ck), "stop_bias": 1.0, "device": "cuda"}
    assert run_identity(tiny_env, "policy", "val_unseen", on_gpu) == b  # a device resumes
    with pytest.raises(VlnavError, match="checkpoint not found"):
        checkpoint_digest(tmp_path / "nope")


def test_corrupt_record_in_the_middle_is_an_error(tmp_path):
    p = tmp_path / "records.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(VlnavError, match="line 2 is not a JSON record"):
        read_records(p)


def test_unknown_agent_and_missing_split(tiny_env, tiny_episodes, tmp_path):
    with pytest.raises(VlnavError, match="unknown agent 'walker'"):
        evaluate(tiny_env, "walker", "val_unseen", out_dir=tmp_path, progress=False)
    with pytest.raises(VlnavError, match="no episodes for split 'test'"):
        evaluate(tiny_env, "oracle", "test", out_dir=tmp_path, progress=False)


def test_two_workers_give_the_same_records(tiny_env, tiny_episodes, tmp_path):
    one = evaluate(tiny_env, "random", "val_unseen", out_dir=tmp_path / "a", progress=False)
    two = evaluate(
        tiny_env, "random", "val_unseen", workers=2, out_dir=tmp_path / "b", progress=False
    )
    assert [r["positions"] for r in one.records] == [r["positions"] for r in two.records]
    assert one.metrics == two.metrics


@pytest.mark.parametrize("waypoints", ["straight", "path"])
def test_batched_policy_evaluation_matches_one_at_a_time(
    tiny_env, tiny_episodes, tmp_path, waypoints
):
    """Many episodes stepped together, decisions batched: the same trajectories (path moves
    too, which query the simulator at every action)."""
    torch = pytest.importorskip("torch", reason="the policy needs torch")
    from vlnav.policy.model import NavPolicy, PolicyConfig, build_tokenizer
    from vlnav.train import _asset_words

    tok = build_tokenizer(["a doorway . stop"], _asset_words())
    torch.manual_seed(3)
    cfg = PolicyConfig(layers=2, hidden=32, heads=2, intermediate=64, prompt="compact")
    pol = NavPolicy.create(cfg, tok).eval()
    with torch.no_grad():  # a random policy that spreads its choices over the candidates
        for p in pol.parameters():
            p.mul_(8.0)
    ckpt = tmp_path / "policy"
    meta = {"captioner": {"name": "semantic", "kwargs": {}}, "max_decisions": 4}
    pol.save(ckpt, {**meta, "waypoints": waypoints})
    kw = {"agent_kwargs": {"checkpoint": str(ckpt)}, "progress": False}
    one = evaluate(tiny_env, "policy", "val_unseen", out_dir=tmp_path / "one", **kw)
    many = evaluate(tiny_env, "policy", "val_unseen", out_dir=tmp_path / "b", batch=3, **kw)
    assert len(many.records) == len(one.records) == len(tiny_episodes)
    labels = set()
    for a, b in zip(one.records, many.records):
        assert a["episode_id"] == b["episode_id"]
        assert a["actions"] == b["actions"]
        assert a["positions"] == b["positions"]
        labels.update(t["label"] for t in a["extra"]["trace"])
    assert len(labels) > 2  # the rollouts took several different choices
    assert many.metrics == one.metrics
    from vlnav.policy.agent import PolicyAgent

    assert PolicyAgent(str(ckpt)).waypoints == waypoints
    # bfloat16 weights (faster on CPUs with AVX512-BF16): a full, valid run
    kw["agent_kwargs"]["dtype"] = "bfloat16"
    half = evaluate(tiny_env, "policy", "val_unseen", out_dir=tmp_path / "h", batch=3, **kw)
    assert len(half.records) == len(tiny_episodes)
    assert all(r["actions"] and set(r["actions"]) <= {0, 1, 2, 3} for r in half.records)
    with pytest.raises(VlnavError, match="needs --policy"):
        evaluate(tiny_env, "oracle", "val_unseen", out_dir=tmp_path / "x", batch=4)


def test_policy_evaluation_on_a_gpu_takes_the_cpus_actions(tiny_env, tiny_episodes, tmp_path):
    """``vlnav eval --policy ... --device cuda``: the policy's calls on a GPU, batched, give
    the CPU's trajectories (float32)."""
    torch = pytest.importorskip("torch", reason="the policy needs torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch sees none here)")
    from vlnav.policy.model import NavPolicy, PolicyConfig, build_tokenizer
    from vlnav.train import _asset_words

    tok = build_tokenizer(["a doorway . stop"], _asset_words())
    torch.manual_seed(3)
    pol = NavPolicy.create(PolicyConfig(layers=2, hidden=32, heads=2, intermediate=64), tok)
    with torch.no_grad():  # a random policy that spreads its choices over the candidates
        for p in pol.parameters():
            p.mul_(8.0)
    ckpt = tmp_path / "policy"
    pol.eval().save(ckpt, {"captioner": {"name": "semantic", "kwargs": {}}, "max_decisions": 4})
    runs = {}
    for dev in ("cpu", "cuda"):
        kw = {"agent_kwargs": {"checkpoint": str(ckpt), "device": dev}, "progress": False}
        runs[dev] = evaluate(
            tiny_env, "policy", "val_unseen", out_dir=tmp_path / dev, batch=3, **kw
        )
    assert len(runs["cuda"].records) == len(tiny_episodes)
    for a, b in zip(runs["cpu"].records, runs["cuda"].records):
        assert a["actions"] == b["actions"]


def test_shards_merge_into_the_whole_run(tiny_env, tiny_episodes, tmp_path):
    from vlnav.evaluate import merge_records

    whole = evaluate(tiny_env, "oracle", "val_unseen", out_dir=tmp_path / "all", progress=False)
    parts = [
        evaluate(tiny_env, "oracle", "val_unseen", out_dir=tmp_path / f"s{k}", progress=False,
                 shard=(k, 2))
        for k in range(2)
    ]  # fmt: skip
    assert [len(p.records) for p in parts] == [3, 2]
    assert not {r["episode_id"] for r in parts[0].records} & {
        r["episode_id"] for r in parts[1].records
    }
    merged = merge_records([tmp_path / "s1", tmp_path / "s0"], tmp_path / "merged")
    assert [r["episode_id"] for r in merged.records] == [r["episode_id"] for r in whole.records]
    assert merged.metrics == whole.metrics
    assert json.loads((tmp_path / "merged" / "metrics.json").read_text())["agent"] == "oracle"
    with pytest.raises(VlnavError, match="shard 2/2"):
        evaluate(tiny_env, "oracle", "val_unseen", out_dir=tmp_path / "x", shard=(2, 2))
    with pytest.raises(VlnavError, match="no records.jsonl"):
        merge_records([tmp_path / "nothing"], tmp_path / "m2")
