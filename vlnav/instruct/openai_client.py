"""The ``openai:<model>`` speaker: any OpenAI-compatible chat-completions server.

vLLM (``vllm serve``), Ollama (``/v1``), the llama.cpp server and hosted APIs all answer
``POST {base_url}/chat/completions``. The client uses only the standard library
(``http.client``) and is built for long unattended runs:

* bounded concurrency: ``concurrency`` requests in flight, one keep-alive connection per
  worker thread;
* a per-request timeout covering connect, headers and body (``timeout``);
* retries on HTTP 429 / 408 / 5xx, timeouts, refused or dropped connections and malformed
  replies, waiting ``backoff_base * 2^n`` seconds (x 0.5..1 jitter, at most ``backoff_max``)
  or what the server's ``Retry-After`` asks; other HTTP errors (400, 401, 404, ...) stop
  the run at once; a request that still fails after ``max_retries`` retries stops the run
  with a one-line error (everything already answered is in the cache: rerun to resume);
* the on-disk cache and resume come from :class:`~vlnav.instruct.speakers.CachedSpeaker`,
  which the pipeline wraps around every prompt-based speaker.

The base URL comes from ``--base-url``, ``instruct.openai.base_url`` or the
``VLNAV_OPENAI_BASE_URL`` environment variable; the API key from the environment variable
named by ``instruct.openai.api_key_env`` (default ``OPENAI_API_KEY``; unset: no key sent).
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from vlnav.instruct.config import InstructConfig, OpenAIConfig
from vlnav.instruct.speakers import OnDone, SpeakerError, SpeakerReply, SpeakerRequest

BASE_URL_ENV = "VLNAV_OPENAI_BASE_URL"
RETRY_STATUS = frozenset({408, 409, 425, 429})
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Cancelled(Exception):
    pass


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ChatClient:
    """A thread-safe chat-completions client with timeouts, retries and backoff.

    Example:
        >>> client = ChatClient("http://127.0.0.1:8000/v1", OpenAIConfig(timeout=30))
        >>> text, usage = client.complete({"model": "m", "messages": [...]})
    """

    def __init__(self, base_url: str, config: OpenAIConfig, api_key: str | None = None) -> None:
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SpeakerError(
                f"openai: bad base URL {base_url!r} (expected http(s)://host[:port]/v1)"
            )
        self.cfg = config
        self.scheme, self.host = url.scheme, url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = (url.path or "") + "/chat/completions"
        self.url = f"{url.scheme}://{url.netloc}{self.path}"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()
        self.stop = threading.Event()  # set to make waiting requests give up (a failed run)

    # ------------------------------------------------------------------ transport
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.scheme == "https":
                conn = http.client.HTTPSConnection(
                    self.host,
                    self.port,
                    timeout=self.cfg.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.cfg.timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, body: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One POST; the whole exchange must finish within ``timeout`` seconds."""
        deadline = time.monotonic() + self.cfg.timeout

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            return left

        conn = self._connection()
        self._local.reused = conn.sock is not None
        if conn.sock is None:
            conn.timeout = remaining()
            conn.connect()
            # headers and body go in separate segments: without this, Nagle's algorithm and
            # delayed ACKs add ~40 ms to every request
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(remaining())
        conn.request("POST", self.path, body, self.headers)
        if conn.sock is not None:
            conn.sock.settimeout(remaining())
        resp = conn.getresponse()
        chunks = []
        while True:
            if conn.sock is not None:
                conn.sock.settimeout(remaining())
            chunk = resp.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
        if resp.will_close:
            self._drop_connection()
        return resp.status, resp.headers, b"".join(chunks)

    # -------------------------------------------------------------------- requests
    def _attempt(self, body: bytes) -> tuple[str, dict[str, int]]:
        for fresh in (False, True):
            try:
                status, headers, data = self._post(body)
                break
            except TimeoutError:
                self._drop_connection()
                raise _Retryable(f"no reply within {self.cfg.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as e:
                reused = getattr(self._local, "reused", False)
                self._drop_connection()
                if reused and not fresh and isinstance(e, _STALE):
                    continue  # the server closed an idle keep-alive connection: reconnect now
                raise _Retryable(
                    f"connection failed ({type(e).__name__}: {_one_line(e, 80)})"
                ) from None
        if status == 200:
            try:
                reply = json.loads(data.decode("utf-8"))
                text = reply["choices"][0]["message"]["content"]
                if not isinstance(text, str):
                    raise TypeError("content is not a string")
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise _Retryable(
                    f"malformed reply ({type(e).__name__}: {_one_line(e, 60)})"
                ) from None
            usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
            return text, {
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
            }
        detail = _error_message(data)
        if status in RETRY_STATUS or status >= 500:
            raise _Retryable(
                f"HTTP {status}{detail}", parse_retry_after(headers.get("Retry-After"))
            )
        hint = {
            401: f" (is ${self.cfg.api_key_env} set to a valid key?)",
            404: " (check the base URL, which usually ends in /v1, and the model name)",
        }.get(status, "")
        raise SpeakerError(f"openai: {self.url} answered HTTP {status}{detail}{hint}")

    def complete(self, payload: dict[str, Any]) -> tuple[str, dict[str, int]]:
        """The reply text and token usage for one chat-completions payload.

        Retries as described in the module doc; raises :class:`SpeakerError` (one line) when
        the request fails for good.
        """
        body = json.dumps(payload).encode("utf-8")
        last = ""
        tries = self.cfg.max_retries + 1
        for attempt in range(tries):
            if self.stop.is_set():
                raise _Cancelled()
            try:
                return self._attempt(body)
            except _Retryable as e:
                last = str(e)
                if attempt == tries - 1:
                    break
                delay = self.cfg.backoff_base * (2**attempt) * random.uniform(0.5, 1.0)
                if e.retry_after is not None:
                    delay = e.retry_after
                if self.stop.wait(min(delay, self.cfg.backoff_max)):
                    raise _Cancelled() from None
        raise SpeakerError(
            f"openai: {self.url}: no valid reply after {tries} attempts (last: {last})"
        )

    def close(self) -> None:
        self._drop_connection()


def _error_message(data: bytes) -> str:
    try:
        err = json.loads(data.decode("utf-8")).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        msg = data.decode("utf-8", "replace")
    return f": {_one_line(msg, 120)}" if msg else ""


class OpenAISpeaker:
    """Speaker over an OpenAI-compatible chat-completions server (see the module doc)."""

    uses_prompts = True

    def __init__(
        self, model: str | None, config: InstructConfig, base_url: str | None = None
    ) -> None:
        if not model:
            raise SpeakerError("speaker 'openai' needs a model: --speaker openai:<model>")
        self.cfg = config.openai
        self.model = model
        self.name = f"openai:{model}"
        self.concurrency = config.concurrency
        url = base_url or self.cfg.base_url or os.environ.get(BASE_URL_ENV, "")
        if not url:
            raise SpeakerError(
                f"openai: no server URL: pass --base-url, set instruct.openai.base_url or "
                f"${BASE_URL_ENV} (e.g. http://127.0.0.1:8000/v1)"
            )
        self.client = ChatClient(url, self.cfg, os.environ.get(self.cfg.api_key_env) or None)

    def params(self, mode: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "max_tokens": self.cfg.imagine_max_tokens if mode == "imagine" else self.cfg.max_tokens,
            "send_seed": self.cfg.send_seed,
        }

    def _payload(self, r: SpeakerRequest) -> dict[str, Any]:
        p = self.params(r.mode)
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": r.messages,
            "temperature": p["temperature"],
            "top_p": p["top_p"],
            "max_tokens": p["max_tokens"],
            "n": 1,
        }
        if self.cfg.send_seed:
            payload["seed"] = r.seed
        return payload

    def _one(self, r: SpeakerRequest) -> SpeakerReply:
        text, usage = self.client.complete(self._payload(r))
        return SpeakerReply(text, usage["prompt_tokens"], usage["completion_tokens"])

    def generate(
        self, requests: Sequence[SpeakerRequest], on_done: OnDone | None = None
    ) -> list[SpeakerReply]:
        """Replies in request order; ``on_done`` is called from this thread as each arrives."""
        replies: list[SpeakerReply | None] = [None] * len(requests)
        self.client.stop.clear()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="vlnav-openai")
        try:
            futures: dict[Future, int] = {
                pool.submit(self._one, r): i for i, r in enumerate(requests)
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = None
                for fut in sorted(done, key=futures.__getitem__):
                    if fut.exception() is not None:
                        failed = failed or fut.exception()
                        continue
                    i = futures[fut]
                    replies[i] = fut.result()
                    if on_done:
                        on_done(i, replies[i])
                if failed is not None:
                    raise failed  # after saving every reply that arrived
        except BaseException:
            self.client.stop.set()
            for fut in futures:
                fut.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [r for r in replies if r is not None]

    def close(self) -> None:
        self.client.close()
