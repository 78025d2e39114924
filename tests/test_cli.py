"""The command line: real subprocess runs on tiny budgets, and one-line errors."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlnav.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "vlnav.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_scenes_generate_is_deterministic(tmp_path):
    for d in ("a", "b"):
        r = run_cli("scenes", "generate", "--count", "2", "--seed", "4", "--out", str(tmp_path / d))
        assert r.returncode == 0, r.stderr
    for name in ("house_0000/house_0000.json", "house_0001/house_0001.glb"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_eval_oracle_on_tiny_data(tiny_env, tiny_episodes, tmp_path, capsys):
    rc = main(
        [
            "eval",
            "--agent",
            "oracle",
            "--set",
            f"data_dir={tiny_env.data_dir}",
            "--set",
            "sensor.width=64",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| oracle |" in out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    assert m["SR"] == 1.0 and m["episodes"] == len(tiny_episodes)


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vlnav: error: ") and "\n" not in err
    return err


def test_unknown_config_key_and_value(capsys):
    assert "unknown config key 'sensor.colour'" in one_line_error(
        capsys, ["eval", "--set", "sensor.colour=red"]
    )
    assert "agent.max_steps=0 is out of range" in one_line_error(
        capsys, ["eval", "--set", "agent.max_steps=0"]
    )
    assert "config file not found" in one_line_error(capsys, ["eval", "--env", "nope.yaml"])


def test_malformed_episode_file_keeps_earlier_results(tiny_env, tiny_episodes, tmp_path, capsys):
    out = tmp_path / "ev"
    args = [
        "eval",
        "--agent",
        "oracle",
        "--set",
        f"data_dir={tiny_env.data_dir}",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    before = (out / "records.jsonl").read_text()
    path = tiny_env.episodes_path("val_unseen")
    data = json.loads(gzip.decompress(path.read_bytes()))
    del data["episodes"][1]["goals"]
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    err = one_line_error(capsys, args)
    assert "goals" in err and "val_unseen.json.gz" in err
    assert (out / "records.jsonl").read_text() == before  # nothing already written is lost
    path.write_bytes(b"not gzip, not json")
    assert "val_unseen.json.gz" in one_line_error(capsys, args)


def test_unknown_scene_id(tiny_env, tiny_episodes, tmp_path, capsys):
    from vlnav.episodes import load_episodes, save_episodes

    path = tiny_env.episodes_path("val_unseen")
    eps = load_episodes(path)
    eps.episodes[0].scene_id = "mp3d/XYZ/XYZ.glb"
    save_episodes(path, eps)
    err = one_line_error(
        capsys,
        [
            "eval",
            "--agent",
            "oracle",
            "--set",
            f"data_dir={tiny_env.data_dir}",
            "--out",
            str(tmp_path),
        ],
    )
    assert "unknown scene id 'mp3d/XYZ/XYZ.glb'" in err


@pytest.mark.parametrize("cmd", [[], ["eval"], ["scenes", "generate"], ["quickstart"]])
def test_help(cmd):
    r = run_cli(*cmd, "--help")
    assert r.returncode == 0 and "usage: vlnav" in r.stdout


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    """The README's main command on a reduced budget: report, table and a playable video."""
    r = run_cli(
        "quickstart",
        "--out",
        str(tmp_path / "qs"),
        "--episodes",
        "10",
        "--videos",
        "2",
        "--set",
        f"data_dir={tmp_path / 'data'}",
        "--set",
        "scenes.train=3",
        "--set",
        "scenes.val_unseen=2",
        "--set",
        "episodes.val_unseen_per_scene=5",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    qs = tmp_path / "qs"
    rows = json.loads((qs / "metrics.json").read_text())["agents"]
    assert set(rows) == {"random", "forward", "oracle", "policy"}
    assert rows["oracle"]["SR"] >= 0.9 and rows["oracle"]["SR"] > rows["random"]["SR"]
    videos = sorted((qs / "videos").glob("*.mp4"))
    assert len(videos) == 2
    import imageio.v3 as iio

    frames = iio.imread(videos[0])
    assert frames.ndim == 4 and frames.shape[0] > 5
    html = (qs / "index.html").read_text()
    assert all(v.name in html for v in videos)
    assert "To your" in html and "candidates/view_" in html  # candidate views as text
    assert (qs / "policy-run" / "policy" / "policy.json").is_file()
    from vlnav.quickstart import _notes

    rec = json.loads((qs / "eval" / "policy" / "records.jsonl").read_text().splitlines()[0])
    notes = _notes(rec)  # what the policy videos print under the instruction at each step
    assert notes[0].startswith("chose: ") and len(notes) == len(rec["actions"]) + 1
    assert sorted((qs / "videos").glob("*.webm")) == [v.with_suffix(".webm") for v in videos]

    from test_report_browser import CHROMEDRIVER, CHROMIUM, check_report

    if CHROMIUM and CHROMEDRIVER:  # the real report renders (tests/test_report_browser.py)
        check_report(qs, ["random", "forward", "oracle", "policy"], qs / "screenshot.png")
