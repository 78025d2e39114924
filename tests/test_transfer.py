"""The transfer experiment: its config, cells, derived data, summary table and plot.

The whole command runs end to end in ``test_transfer_end_to_end`` (slow)."""

import json
from pathlib import Path

import numpy as np
import pytest

from vlnav.config import ConfigError
from vlnav.transfer import (
    TransferConfig,
    _derive,
    cell_train_config,
    format_summary,
    load_transfer_config,
    plot_transfer,
    summarise,
)

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_loads_and_bad_keys_fail(tmp_path):
    cfg = load_transfer_config(ROOT / "configs" / "transfer.yaml")
    assert set(cfg.domains) == {"A", "B", "C"} and len(cfg.seeds) >= 3
    for path in cfg.domains.values():
        assert (ROOT / path).is_file()
    assert min(cfg.trajectories) <= 100  # a low-data setting
    with pytest.raises(ConfigError, match="unknown config key 'sedes'"):
        load_transfer_config(None, ["sedes=[1]"])
    with pytest.raises(ConfigError, match="pixels"):
        TransferConfig(inputs=["pixels"])


def test_each_input_gets_its_captioner_features_and_fusion():
    cfg = TransferConfig(train={"policy": {"layers": 2}, "optim": {"steps": 7}})
    text = cell_train_config(cfg, "text", 20, 1, "learned:ck")
    feats = cell_train_config(cfg, "features", 20, 1, "learned:ck")
    both = cell_train_config(cfg, "both", 20, 1, "learned:ck")
    assert (text.captioner.name, text.features, text.policy.fusion) == ("learned:ck", None, "none")
    assert (feats.captioner.name, feats.features, feats.policy.fusion) == (
        "none",
        "learned:ck",
        "add",
    )
    assert (both.captioner.name, both.features) == ("learned:ck", "learned:ck")
    for c in (text, feats, both):
        assert c.data.max_episodes == 20 and c.seed == 1 and c.policy.layers == 2
        assert c.optim.steps == 7
    assert len({text.out, feats.out, both.out}) == 3
    with pytest.raises(ConfigError, match="train"):
        cell_train_config(TransferConfig(train={"optim": {"stepz": 1}}), "text", 5, 0, "x")


def test_derived_data_hides_what_an_input_does_not_see():
    cand = {"index": 2, "caption": {"text": "A kitchen.", "room": "kitchen", "mentions": []}}
    item = {"decisions": [{"obs": {"candidates": [cand]}, "label": "<C>", "features": [[1.0]]}]}
    pool = [item, json.loads(json.dumps(item))]
    text, feats, both = (_derive(pool, k, 1) for k in ("text", "features", "both"))
    assert len(text) == len(feats) == len(both) == 1
    assert text[0]["decisions"][0]["features"] is None
    assert text[0]["decisions"][0]["obs"]["candidates"][0]["caption"]["text"] == "A kitchen."
    assert feats[0]["decisions"][0]["obs"]["candidates"][0]["caption"]["text"] == ""
    assert feats[0]["decisions"][0]["features"] == [[1.0]]
    assert both[0] == item
    assert pool[0] == item  # the pool itself is untouched


def _cells(rng):
    out = []
    for inp, base in (("text", 0.5), ("features", 0.4)):
        for seed in range(3):
            for dom, drop in (("A", 0.0), ("B", 0.1), ("C", 0.2)):
                sr = base - drop + 0.02 * rng.standard_normal()
                out.append(
                    {
                        "input": inp,
                        "trajectories": 50,
                        "seed": seed,
                        "domain": dom,
                        "metrics": {"SR": sr, "SPL": sr * 0.8},
                    }
                )
    return out


def test_summary_means_spread_gap_table_and_plot(tmp_path):
    cells = _cells(np.random.default_rng(0))
    rows = summarise(cells, ["A", "B", "C"])
    assert [(r["input"], r["trajectories"]) for r in rows] == [("text", 50), ("features", 50)]
    t = rows[0]
    srs = [c["metrics"]["SR"] for c in cells if c["input"] == "text" and c["domain"] == "B"]
    assert t["domains"]["B"]["SR"] == pytest.approx(np.mean(srs))
    assert t["domains"]["B"]["SR_std"] == pytest.approx(np.std(srs))
    assert t["domains"]["B"]["seeds"] == 3
    assert t["gap"]["B"] == pytest.approx(t["domains"]["A"]["SR"] - t["domains"]["B"]["SR"])
    assert 0.05 < t["gap"]["B"] < 0.15 and 0.15 < t["gap"]["C"] < 0.25
    md = format_summary(rows, ["A", "B", "C"])
    assert md.splitlines()[0].startswith("| input | trajectories | SR A")
    assert "SR gap A-C" in md and md.count("\n") == 3
    png = plot_transfer(rows, ["A", "B", "C"], tmp_path / "t.png", chance={"SR": 0.02, "SPL": 0.01})
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 400
    assert img.std() > 10  # bars and text were drawn


@pytest.mark.slow
def test_transfer_end_to_end_and_resume(tmp_path):
    """The whole command on a tiny budget: captioner, expert pool, 3 inputs x 2 seeds,
    evaluated on A, B and C; a second run resumes from what the first wrote."""
    from vlnav.transfer import run_transfer

    data = tmp_path / "data"
    cfg = load_transfer_config(
        None,
        [
            f"out={tmp_path / 'run'}",
            f"env_overrides=[data_dir={data}, scenes.train=2, scenes.val_unseen=1, "
            "episodes.train_per_scene=4, episodes.val_unseen_per_scene=3, "
            "episodes.val_seen_per_scene=1]",
            "trajectories=[4]",
            "seeds=[0, 1]",
            "eval_episodes=2",
            "workers=1",
            "batch=2",
            f"captioner.checkpoint={tmp_path / 'captioner'}",
            "captioner.frames=200",
            "captioner.eval_frames=20",
            "captioner.max_steps=10",
            "train={threads: 1, policy: {layers: 1, hidden: 32, heads: 2, intermediate: 64, "
            "prompt: compact}, optim: {steps: 4, batch_size: 2, warmup: 1}, dagger: {rounds: 0}}",
        ],
    )
    cfg.domains = {k: str(ROOT / v) for k, v in cfg.domains.items()}
    cfg.train_env = str(ROOT / cfg.train_env)
    res = run_transfer(cfg, progress=False)
    assert len(res["cells"]) == 3 * 2 * 3
    assert {(c["input"], c["domain"]) for c in res["cells"]} == {
        (i, d) for i in ("text", "features", "both") for d in "ABC"
    }
    out = tmp_path / "run"
    for f in ("results.json", "results.md", "transfer.png"):
        assert (out / f).is_file()
    recs = (out / "cells" / "text-n4-s0" / "eval-B" / "records.jsonl").read_text().splitlines()
    assert len(recs) == 2
    assert "trace" in json.loads(recs[0])["extra"]
    meta = json.loads((out / "cells" / "text-n4-s0" / "policy" / "policy.json").read_text())
    assert meta["captioner"]["name"] == f"learned:{tmp_path / 'captioner'}"
    meta = json.loads((out / "cells" / "both-n4-s0" / "policy" / "policy.json").read_text())
    assert meta["features"]["encoder"] == f"learned:{tmp_path / 'captioner'}"
    # the features-only policy saw empty captions
    feats = json.loads(
        (out / "cells" / "features-n4-s0" / "eval-A" / "records.jsonl").read_text().splitlines()[0]
    )
    assert all(t["text"] in ("", "Stop") for t in feats["extra"]["trace"])
    mtime = (out / "cells" / "text-n4-s0" / "policy" / "policy.json").stat().st_mtime
    again = run_transfer(cfg, progress=False)  # resumes: nothing is retrained or re-evaluated
    assert (out / "cells" / "text-n4-s0" / "policy" / "policy.json").stat().st_mtime == mtime
    assert again["summary"] == res["summary"]
    assert 0.0 <= res["random"]["SR"] <= 1.0
    assert "random agent (chance level)" in (out / "results.md").read_text()
