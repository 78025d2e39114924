"""A local OpenAI-compatible chat-completions server with scripted faults (tests, benchmark).

It answers ``POST /v1/chat/completions`` at once with a plausible reply built from the
prompt (an instruction naming a landmark the prompt lists, or an imagined trajectory), so
that timing the ``openai`` speaker against it measures the client's own overhead. Faults
are queued with :meth:`StubChatServer.push`: ``("status", 500)``, ``("429", seconds)`` (a
429 with ``Retry-After``), ``("hang", seconds)`` (answer only after that long),
``("badjson",)``, ``("close",)`` (drop the connection without answering); each queued fault
is used by one request, later requests are answered normally. Only binds to 127.0.0.1.

Example:
    >>> with StubChatServer() as server:
    ...     server.push(("status", 500))
    ...     url = server.base_url  # http://127.0.0.1:<port>/v1
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COLOURS = ("white", "grey", "black", "brown", "red", "blue", "green", "beige", "navy", "teal")
THINGS = (("bedroom", "bed"), ("kitchen", "fridge"), ("living room", "sofa"), ("office", "desk"))


def _listed(prompt: str, label: str) -> list[str]:
    m = re.search(rf"{re.escape(label)}:?\s*(.+?)\.?\s*$", prompt, re.MULTILINE)
    return [s.strip() for s in m.group(1).split(",")] if m else []


def stub_reply(payload: dict[str, Any]) -> str:
    """A deterministic reply to a vlnav prompt: different seeds give different texts."""
    messages = payload.get("messages") or [{"content": ""}]
    prompt = messages[-1].get("content", "")
    rng = random.Random(f"{payload.get('seed')}|{prompt}")
    if "Now imagine a new example" in prompt:
        return imagined_reply(rng)
    rooms = _listed(prompt, "Rooms along the path, in order")
    landmarks = [x for x in _listed(prompt, "Landmarks you may mention") if x != "none"]
    start = rooms[0] if rooms else "room"
    goal = rooms[-1] if rooms else "room"
    thing = rng.choice(landmarks) if landmarks else "door"
    verb = rng.choice(["Walk out of", "Leave", "Exit", "Head out of", "Go out of"])
    stop = rng.choice(["stop next to", "wait by", "stop near", "walk up to", "stop beside"])
    then = rng.choice(["then keep going", "and continue", "then walk on", "and carry on"])
    return f"{verb} the {start}, {then} into the {goal} and {stop} the {thing} there."


def imagined_reply(rng: random.Random) -> str:
    """A well-formed imagined trajectory in vlnav's text format."""
    (r1, t1), (r2, t2) = rng.sample(THINGS, 2)
    c1, c2 = rng.sample(COLOURS, 2)
    steps = rng.randint(2, 4)
    lines = [
        f"Instruction: Walk past the {c1} {t1} and out of the {r1}, then go into the {r2} "
        f"and stop next to the {c2} {t2}."
    ]
    for s in range(1, steps + 1):
        lines.append(f"Step {s}:")
        lines.append(f"1. To your front is, a {r1} with a {c1} {t1}")
        lines.append(f"2. To your 90 degree left is, a {r2} with a {c2} {t2}")
        lines.append("Action: stop" if s == steps else f"Action: {rng.randint(1, 2)}")
    return "\n".join(lines)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: StubChatServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (a timeout test)
            self.close_connection = True

    def do_POST(self) -> None:
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        with srv.lock:
            fault = srv.faults.popleft() if srv.faults else None
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._answer(srv, raw, fault)
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _answer(self, srv: StubChatServer, raw: bytes, fault: tuple | None) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "body is not JSON"}}')
            return
        with srv.lock:
            srv.requests.append({"time": time.monotonic(), "payload": payload, "fault": fault})
        kind = fault[0] if fault else "ok"
        if kind == "status":
            self._send(
                fault[1], json.dumps({"error": {"message": f"stub fault {fault[1]}"}}).encode()
            )
            return
        if kind == "429":
            self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": str(fault[1])})
            return
        if kind == "badjson":
            self._send(200, b'{"choices": [{"message": {"content": "unterminated')
            return
        if kind == "close":
            self.close_connection = True
            self.connection.close()
            return
        if kind == "hang":
            srv.release.wait(fault[1])
        elif srv.latency:
            time.sleep(srv.latency)
        text = srv.reply_fn(payload)
        n_prompt = sum(len(str(m.get("content", "")).split()) for m in payload.get("messages", []))
        body = {
            "id": f"stub-{len(srv.requests)}",
            "object": "chat.completion",
            "model": payload.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(text.split()),
                "total_tokens": n_prompt + len(text.split()),
            },
        }
        with srv.lock:
            srv.answered.append(payload)
        self._send(200, json.dumps(body).encode())


class StubChatServer(ThreadingHTTPServer):
    """A chat-completions server on 127.0.0.1 (ephemeral port) running in a thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self, reply_fn: Callable[[dict[str, Any]], str] = stub_reply, latency: float = 0.0
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply_fn, self.latency = reply_fn, latency
        self.lock = threading.Lock()
        self.faults: deque[tuple] = deque()
        self.requests: list[dict[str, Any]] = []  # every request received, with its fault
        self.answered: list[dict[str, Any]] = []  # payloads answered with a completion
        self.inflight = self.max_inflight = 0
        self.release = threading.Event()  # ends "hang" faults early (at shutdown)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def push(self, *faults: tuple) -> None:
        with self.lock:
            self.faults.extend(faults)

    def start(self) -> StubChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()

    def __enter__(self) -> StubChatServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m vlnav.instruct.stub_server``: serve until killed; prints the base URL."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    a = p.parse_args(argv)
    server = StubChatServer(latency=a.latency)
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
