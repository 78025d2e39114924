"""The quickstart's HTML report, opened in headless Chromium: it renders with its images and
videos present, its metrics table lists the baselines, and none of its links is broken.

Chromium is driven through Selenium and the chromedriver of the same Debian release
(``apt-get install chromium chromium-driver``; ``scripts/setup.sh`` installs both). The page
is served from a localhost ``http.server`` thread, as a user's browser would load it.
``check_report`` is shared with the slow end-to-end quickstart test (``tests/test_cli.py``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")
NO_CHROMIUM = "chromium not installed (apt-get install chromium chromium-driver)"
# without the background-networking flags Chromium's own requests fail on a closed network
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
)

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_CHROMIUM)

# Waits until every image has loaded (or failed) and every video has its first frame (or an
# error), then reports them; then loads each <video> <source> on its own in a fresh element,
# so the fallback formats are checked too, not only the one the browser picked.
MEDIA_JS = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + arguments[0];
const imgs = [...document.images], vids = [...document.querySelectorAll('video')];
function settled() {
  return document.readyState === 'complete' && imgs.every(i => i.complete) &&
         vids.every(v => (v.readyState >= 2 && v.networkState !== 2) || v.error ||
                         v.networkState === 3);  // 2: still loading (a spinner shows)
}
function probe(src) {
  return new Promise(resolve => {
    const v = document.createElement('video');
    v.muted = true; v.preload = 'auto';
    const finish = ok => resolve({src, ok, readyState: v.readyState, width: v.videoWidth,
                                  error: v.error ? v.error.code : null});
    v.addEventListener('loadeddata', () => finish(true));
    v.addEventListener('error', () => finish(false));
    setTimeout(() => finish(false), Math.max(1000, deadline - Date.now()));
    v.src = src;
  });
}
(function poll() {
  if (!settled() && Date.now() < deadline) { setTimeout(poll, 100); return; }
  const sources = [...document.querySelectorAll('video source')].map(s => s.src);
  Promise.all(sources.map(probe)).then(probes => done({
    images: imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                            width: i.naturalWidth, height: i.naturalHeight})),
    videos: vids.map(v => ({src: v.currentSrc, readyState: v.readyState, width: v.videoWidth,
                            height: v.videoHeight, duration: v.duration,
                            error: v.error ? v.error.code : null})),
    sources: probes,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    agents: [...document.querySelectorAll('#metrics tr[data-agent]')].map(r => r.dataset.agent),
    title: document.title,
    height: document.documentElement.scrollHeight,
  }));
})();
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    """A browser drops video range requests it no longer needs: not an error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium under chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="vlnav-chromium-") as profile:
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def check_report(folder: Path, agents: list[str], screenshot: Path | None = None) -> dict:
    """Open ``folder/index.html`` in headless Chromium and assert that it renders: every image
    decoded, every video (and every video source) has its first frame, the metrics table has a
    row per agent, every link and media URL answers 200. Returns what the page reported."""
    pytest.importorskip("selenium", reason="selenium is in the dev extra: pip install -e '.[dev]'")
    with serve(folder) as base, chromium() as driver:
        driver.set_script_timeout(60)
        driver.get(base + "index.html")
        page = driver.execute_async_script(MEDIA_JS, 30_000)
        if screenshot is not None:
            driver.set_window_size(1280, min(int(page["height"]) + 40, 12_000))
            time.sleep(1.0)  # let the video controls' loading spinner fade after the resize
            driver.save_screenshot(str(screenshot))
        urls = {*page["links"], *(i["src"] for i in page["images"])}
        urls |= {s["src"] for s in page["sources"]}
        status = {u: _status(u) for u in urls if u.startswith(base)}

    assert page["title"].startswith("vlnav report")
    assert page["agents"] == agents
    assert page["images"], "the report has no images"
    for img in page["images"]:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert page["videos"], "the report has no videos"
    for v in page["videos"]:
        assert v["error"] is None and v["readyState"] >= 2 and v["width"] > 0, v
        assert v["duration"] > 0, v
    assert len(page["sources"]) >= 2 * len(page["videos"])  # WebM and MP4 of each
    for s in page["sources"]:
        assert s["ok"] and s["readyState"] >= 2 and s["width"] > 0, s
    broken = {u: c for u, c in status.items() if c != 200}
    assert not broken, f"broken links: {broken}"
    return page


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read(1)
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _tiny_policy(path: Path) -> Path:
    """An untrained 1-layer policy saved as ``vlnav train`` saves one (semantic captions)."""
    torch = pytest.importorskip("torch", reason="the policy needs torch (pip install -e '.[llm]')")
    from vlnav.policy.model import NavPolicy, PolicyConfig, build_tokenizer

    words = "to your front back degree left right is a with and on the ahead doorway close"
    tok = build_tokenizer([words, "living room kitchen red sofa white fridge wall"], [])
    torch.manual_seed(0)
    cfg = PolicyConfig(layers=1, hidden=32, heads=2, intermediate=64, max_len=2048)
    meta = {"name": "tiny", "captioner": {"name": "semantic", "kwargs": {"max_objects": 2}}}
    NavPolicy.create(cfg, tok).eval().save(path, extra={**meta, "max_decisions": 4})
    return path


def test_report_renders_in_chromium(tiny_env, tiny_episodes, tmp_path):
    """A report from real short episodes (the baselines and a tiny policy, two episodes
    each) renders fully; the policy's video highlights the candidate it chose."""
    import imageio.v3 as iio
    import numpy as np

    from vlnav.evaluate import evaluate
    from vlnav.quickstart import write_report
    from vlnav.viz import PANEL_HIGHLIGHT

    out = tmp_path / "report"
    agents = ["random", "forward", "oracle", "policy"]
    policy = {"checkpoint": str(_tiny_policy(tmp_path / "policy"))}
    results = {
        a: evaluate(
            tiny_env, a, "val_unseen", 2, 1, out / "eval" / a,
            agent_kwargs=policy if a == "policy" else None, progress=False,
        )
        for a in agents
    }  # fmt: skip
    assert results["policy"].records[0]["extra"]["trace"]  # decisions to show
    index = write_report(tiny_env, results, out, videos=2)
    assert index == out / "index.html"
    assert json.loads((out / "metrics.json").read_text())["agents"].keys() == set(agents)
    html = index.read_text()
    assert "metrics.json" in html and "plots/metrics.svg" in html and "candidates/view_" in html

    page = check_report(out, agents, screenshot=tmp_path / "report.png")

    assert (tmp_path / "report.png").stat().st_size > 10_000
    shown = {urllib.parse.urlparse(v["src"]).path for v in page["videos"]}
    assert shown == {"/videos/policy_ep0.webm", "/videos/oracle_ep0.webm"}  # VP9 first
    plots = [i for i in page["images"] if "/plots/" in i["src"]]
    assert len(plots) == 2 and all(p["width"] >= 600 for p in plots)
    # the frames: ego view (256) | map | candidate captions, the chosen one highlighted
    assert all(v["width"] > 3 * 256 for v in page["videos"])
    frame = iio.imread(out / "videos" / "policy_ep0.mp4", index=0, plugin="FFMPEG")
    near = np.abs(frame[:256].astype(int) - PANEL_HIGHLIGHT).max(axis=2) < 16
    assert near.sum() > 500 and np.flatnonzero(near.any(axis=0)).min() > 256 * 2
