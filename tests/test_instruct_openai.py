"""The openai speaker against a real chat-completions server on 127.0.0.1, with its faults.

The server (vlnav.instruct.stub_server) is http.server in a thread on an ephemeral port;
faults are queued per request. Timeouts are 0.2 s and backoff bases 0.01 s, so every test
takes well under a few seconds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlnav.cli import main
from vlnav.instruct.cache import ResponseCache
from vlnav.instruct.config import InstructConfig, OpenAIConfig
from vlnav.instruct.openai_client import ChatClient, OpenAISpeaker, parse_retry_after
from vlnav.instruct.pipeline import run_instruct
from vlnav.instruct.speakers import CachedSpeaker, SpeakerError, SpeakerRequest, make_speaker
from vlnav.instruct.stub_server import StubChatServer

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(timeout=0.2, max_retries=3, backoff_base=0.01, backoff_max=0.5)
PAYLOAD = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "seed": 1}


@pytest.fixture
def server():
    with StubChatServer() as s:
        yield s


def client(server, **kw) -> ChatClient:
    return ChatClient(server.base_url, OpenAIConfig(**{**FAST, **kw}))


def config(server, **kw) -> InstructConfig:
    cfg = InstructConfig(speaker="openai:stub", concurrency=kw.pop("concurrency", 2))
    cfg.openai = OpenAIConfig(**{**FAST, "base_url": server.base_url, **kw})
    return cfg


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------------- the client


def test_success_returns_text_and_usage(server):
    text, usage = client(server).complete(PAYLOAD)
    assert text and usage["prompt_tokens"] == 1 and usage["completion_tokens"] > 0
    assert server.requests[0]["payload"] == PAYLOAD


@pytest.mark.parametrize(
    "fault", [("status", 500), ("status", 503), ("badjson",), ("close",), ("429", 0)]
)
def test_transient_faults_are_retried_then_succeed(server, fault):
    server.push(fault, fault)
    text, _ = client(server).complete(PAYLOAD)
    assert text
    assert [r["fault"] for r in server.requests] == [fault, fault, None]


def test_retry_after_is_honoured(server):
    server.push(("429", 0.3))
    t0 = time.monotonic()
    client(server, backoff_base=0.001).complete(PAYLOAD)
    gap = server.requests[1]["time"] - server.requests[0]["time"]
    assert gap >= 0.28 and time.monotonic() - t0 < 2.0


def test_retry_after_formats():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(date) <= 31


def test_hung_response_times_out_then_retries(server):
    server.push(("hang", 2.0))
    t0 = time.monotonic()
    text, _ = client(server).complete(PAYLOAD)
    assert text and time.monotonic() - t0 < 1.0  # gave up on the hung reply after 0.2 s
    assert len(server.requests) == 2


def test_persistent_failure_ends_with_one_line_error(server):
    server.push(*[("status", 500)] * 4)
    with pytest.raises(SpeakerError) as e:
        client(server, max_retries=3).complete(PAYLOAD)
    msg = one_line(e)
    assert "after 4 attempts" in msg and "HTTP 500" in msg and server.base_url in msg
    assert len(server.requests) == 4


def test_persistent_timeouts_end_with_one_line_error(server):
    server.push(*[("hang", 2.0)] * 2)
    with pytest.raises(SpeakerError) as e:
        client(server, max_retries=1).complete(PAYLOAD)
    assert "no reply within 0.2 s" in one_line(e)


def test_client_errors_are_not_retried(server):
    server.push(("status", 401))
    with pytest.raises(SpeakerError) as e:
        client(server).complete(PAYLOAD)
    assert "HTTP 401" in one_line(e) and "OPENAI_API_KEY" in str(e.value)
    assert len(server.requests) == 1


def test_connection_refused_is_retried_then_fails():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    c = ChatClient(f"http://127.0.0.1:{port}/v1", OpenAIConfig(**FAST))
    t0 = time.monotonic()
    with pytest.raises(SpeakerError) as e:
        c.complete(PAYLOAD)
    assert "ConnectionRefusedError" in one_line(e) and "after 4 attempts" in str(e.value)
    assert time.monotonic() - t0 < 2.0


def test_api_key_comes_from_the_named_variable(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    monkeypatch.setenv("VLNAV_OPENAI_BASE_URL", server.base_url)
    cfg = InstructConfig(speaker="openai:stub")
    cfg.openai = OpenAIConfig(api_key_env="MY_KEY", **FAST)
    sp = make_speaker("openai:stub", cfg)
    assert sp.client.headers["Authorization"] == "Bearer sk-test"
    assert sp.client.url == server.base_url + "/chat/completions"


def test_no_base_url_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("VLNAV_OPENAI_BASE_URL", raising=False)
    with pytest.raises(SpeakerError, match="no server URL") as e:
        make_speaker("openai:m", InstructConfig())
    one_line(e)
    with pytest.raises(SpeakerError, match="needs a model"):
        make_speaker("openai", InstructConfig())


def test_concurrency_is_bounded(server):
    server.latency = 0.05
    sp = OpenAISpeaker("stub", config(server, concurrency=3))
    reqs = [
        SpeakerRequest("instruction", k, [{"role": "user", "content": f"q{k}"}]) for k in range(12)
    ]
    done = []
    replies = sp.generate(reqs, lambda i, r: done.append(i))
    assert len(replies) == 12 and sorted(done) == list(range(12))
    assert 2 <= server.max_inflight <= 3
    # replies come back in request order
    by_prompt = {r["payload"]["messages"][0]["content"]: r for r in server.requests}
    assert len(by_prompt) == 12


def test_failure_in_one_request_stops_the_run_and_keeps_the_others(server, tmp_path):
    cache = ResponseCache(tmp_path)
    sp = CachedSpeaker(OpenAISpeaker("stub", config(server, concurrency=1, max_retries=1)), cache)
    reqs = [
        SpeakerRequest("instruction", k, [{"role": "user", "content": f"q{k}"}]) for k in range(4)
    ]
    server.push(("ok",), ("ok",), ("status", 500), ("status", 500))  # the 3rd fails for good
    with pytest.raises(SpeakerError):
        sp.generate(reqs)
    # the replies that arrived are kept: the first two, and the 4th when the one worker
    # finished it before the failure was handled (a busy machine wakes the caller late)
    kept = len(cache)
    assert kept in (2, 3)
    n = len(server.requests)
    replies = sp.generate(reqs)  # a rerun asks only for the rest
    assert len(replies) == 4 and len(server.requests) - n == 4 - kept
    assert [r.cached for r in replies] == [True, True, False, kept == 3]


# ------------------------------------------------------------------------ the pipeline


def test_pipeline_through_a_flaky_server(server, tiny_env, tiny_episodes, tmp_path):
    server.push(("status", 500), ("429", 0), ("badjson",), ("hang", 2.0), ("close",))
    res = run_instruct(
        config(server, concurrency=3), tiny_env, "val_unseen", tmp_path / "out", progress=False
    )
    assert res.stats["accepted"] == len(tiny_episodes)
    assert res.stats["requests"] == len(tiny_episodes)  # retries are inside a request
    assert len(server.answered) >= len(tiny_episodes)
    for ep in res.episodes:
        prov = ep.info["instruction_provenance"]
        assert prov["speaker"] == "openai:stub" and prov["model"] == "stub"
        assert len(prov["prompt_hash"]) == 16 and isinstance(prov["seed"], int)
    assert res.stats["tokens"]["prompt"] > 0 and res.stats["tokens"]["completion"] > 0


def test_rejected_replies_are_regenerated_and_counted(server, tiny_env, tiny_episodes, tmp_path):
    bad = iter(["Go to the piano and stop there in the kitchen please.", "Stop."])

    def reply_fn(payload):
        from vlnav.instruct.stub_server import stub_reply

        return next(bad, None) or stub_reply(payload)

    server.reply_fn = reply_fn
    res = run_instruct(
        config(server, concurrency=1), tiny_env, "val_unseen", tmp_path / "out", progress=False
    )
    assert res.stats["accepted"] == len(tiny_episodes)
    assert res.stats["rejected_by_reason"] == {
        "hallucinated_object": 1,
        "no_landmark": 2,
        "too_short": 1,
    }
    assert res.stats["requests"] == len(tiny_episodes) + 2
    rejected = [json.loads(line) for line in res.files["rejected"].read_text().splitlines()]
    assert [r["attempt"] for r in rejected] == [0, 0]


def test_imagine_mode_over_http(server, tiny_env, tiny_episodes, tmp_path):
    cfg = config(server)
    cfg.mode = "imagine"
    res = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "out", progress=False)
    assert res.stats["accepted"] == len(tiny_episodes)
    from vlnav.instruct.imagine import read_jsonl

    trajs = read_jsonl(res.files["imagined"])
    assert len(trajs) == len(tiny_episodes) and all(t.source == "imagined" for t in trajs)
    prompt = server.answered[0]["messages"][1]["content"]
    assert "Example 1:\nInstruction:" in prompt and "Now imagine a new example" in prompt


class KillAfter:
    """Wraps a speaker; raises KeyboardInterrupt after ``n`` replies (a simulated kill)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n
        self.name, self.model, self.uses_prompts = inner.name, inner.model, inner.uses_prompts

    def params(self, mode):
        return self.inner.params(mode)

    def generate(self, requests, on_done=None):
        count = 0

        def done(i, reply):
            nonlocal count
            on_done(i, reply)  # the cache saves it
            count += 1
            if count == self.n:
                raise KeyboardInterrupt

        return self.inner.generate(requests, done)

    def close(self):
        self.inner.close()


def test_killed_run_resumes_with_exactly_the_missing_items(
    server, tiny_env, tiny_episodes, tmp_path
):
    cfg = config(server, concurrency=1)
    full = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "full", progress=False)
    keyer = CachedSpeaker(OpenAISpeaker("stub", cfg), ResponseCache(tmp_path / "keys"))

    def keys(payloads):
        return [
            keyer.key(SpeakerRequest("instruction", p["seed"], p["messages"])) for p in payloads
        ]

    all_keys = keys(server.answered)
    assert len(set(all_keys)) == len(tiny_episodes)

    speaker = KillAfter(OpenAISpeaker("stub", cfg), 2)
    with pytest.raises(KeyboardInterrupt):
        run_instruct(
            cfg, tiny_env, "val_unseen", tmp_path / "part", speaker=speaker, progress=False
        )
    saved = {p.stem for p in (tmp_path / "part" / "cache").glob("*/*.json")}
    assert len(saved) == 2 and not (tmp_path / "part" / "val_unseen.json.gz").exists()

    n1 = len(server.answered)
    resumed = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "part", progress=False)
    again = keys(server.answered[n1:])
    assert sorted(again) == sorted(set(all_keys) - saved)  # exactly the missing items
    assert resumed.stats["cache_hits"] == 2 and resumed.stats["requests"] == len(tiny_episodes)
    for key in ("episodes", "trajectories"):
        assert resumed.files[key].read_bytes() == full.files[key].read_bytes()


def test_sigkilled_cli_run_resumes_to_the_same_file(server, tiny_env, tiny_episodes, tmp_path):
    """A real ``vlnav instruct`` process, killed with SIGKILL half-way, then run again."""
    server.latency = 0.1
    cfg = config(server, concurrency=1, timeout=2.0)
    full = run_instruct(cfg, tiny_env, "val_unseen", tmp_path / "full", progress=False)
    expected = {json.dumps(p, sort_keys=True) for p in server.answered}

    args = [
        sys.executable, "-m", "vlnav.cli", "instruct", "--episodes", "val_unseen",
        "--set", f"data_dir={tiny_env.data_dir}", "--speaker", "openai:stub",
        "--base-url", server.base_url, "--concurrency", "1", "--out", str(tmp_path / "cli"),
        "--set", "instruct.openai.timeout=2", "--set", "instruct.openai.max_retries=3",
        "--set", "instruct.openai.backoff_base=0.01", "--set", "instruct.openai.backoff_max=0.5",
        "--no-progress",
    ]  # fmt: skip
    n0 = len(server.answered)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = ResponseCache(tmp_path / "cli" / "cache")
    deadline = time.monotonic() + 30
    while len(cache) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = len(cache)
    assert 2 <= kept < len(tiny_episodes)

    saved = {p.stem for p in (tmp_path / "cli" / "cache").glob("*/*.json")}
    while server.inflight:  # the killed run's last request, answered to nobody
        time.sleep(0.01)
    n1 = len(server.answered)
    server.latency = 0.0
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    again = server.answered[n1:]
    # the rerun asked exactly for the items the killed run had not saved
    keyer = CachedSpeaker(OpenAISpeaker("stub", cfg), cache)
    keys = {keyer.key(SpeakerRequest("instruction", p["seed"], p["messages"])) for p in again}
    assert len(keys) == len(again) == len(tiny_episodes) - kept
    assert keys.isdisjoint(saved)
    assert {json.dumps(p, sort_keys=True) for p in server.answered[n0:]} == expected
    assert "cache hits" in r.stdout
    for name in ("val_unseen.json.gz", "val_unseen_trajectories.jsonl"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    assert full.stats["accepted"] == len(tiny_episodes)


def test_cli_failure_is_one_line(server, tiny_env, tiny_episodes, tmp_path, capsys):
    server.push(*[("status", 502)] * 10)
    rc = main(
        [
            "instruct", "--episodes", "val_unseen", "--set", f"data_dir={tiny_env.data_dir}",
            "--speaker", "openai:stub", "--base-url", server.base_url, "--out", str(tmp_path),
            "--set", "instruct.openai.max_retries=1", "--set", "instruct.openai.backoff_base=0.01",
            "--concurrency", "1", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vlnav: error: openai: ") and "HTTP 502" in err
