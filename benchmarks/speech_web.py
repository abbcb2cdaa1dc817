"""Measure the web app's voice (issue 12): plan time, start-line size, first frame vs whole clip, page A/V sync.

Runs the real server on the stand-in renderer (``standin_server.py``: the model's cost replaced by a
fixed sleep per frame), so it needs no weights; eSpeak NG must be installed for the spoken parts.

    PYTHONPATH=src:benchmarks:tests/server python benchmarks/speech_web.py [--browser]

``--browser`` also plays a 29.5 s uploaded clip in Debian's Chromium and prints the page's own
report: the clock it played on, the largest lateness of a frame against the audio clock, frames
skipped to keep up.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.plans import GenerateRequest, plan_clip
from lpstudio.speech import AudioClip, write_wav

FPS = 25.0
RENDER_FRAME_MS = 20.0
"""The stand-in's cost per frame (a ~50 frames/s renderer)."""
LONG_TEXT = (
    "오늘은 날씨가 정말 좋네요. 우리 같이 공원에 산책하러 갈까요? 저는 따뜻한 커피를 한 잔 마시고 싶어요. "
    "그리고 저녁에는 친구들과 맛있는 음식을 먹을 거예요. 내일도 오늘처럼 좋은 하루가 되면 좋겠어요."
)
BROWSER_CLIP_S = 29.5
BROWSER_FPS = 12.0
PAGE_TIMEOUT_MS = 120_000


def plans() -> None:
    limits = ServiceLimits()
    for label, body in (
        ("talk button", GenerateRequest(session="-", preset="talk")),
        ("long text", GenerateRequest(session="-", command=f"말해봐: {LONG_TEXT}")),
    ):
        plan_clip(body, fps=FPS, idle=True, limits=limits)  # loads the library
        t = time.perf_counter()
        plan = plan_clip(body, fps=FPS, idle=True, limits=limits)
        ms = (time.perf_counter() - t) * 1000
        assert plan.speech is not None and plan.audio_json is not None
        print(
            f"{label}: {plan.speech.clip.audio_ms / 1000:.1f} s of speech, {plan.frame_count} frames at {FPS:g} fps, "
            f"plan {ms:.0f} ms, start-line audio {len(plan.audio_json) / 1024:.0f} KiB"
        )


def stream() -> None:
    engine = StandInEngine(frame_ms=RENDER_FRAME_MS, prepare_ms=1)
    with live_server(create_app(engine, ServerSettings(crop=False, fps=FPS, idle_default=True))) as url:
        session = httpx.post(f"{url}/session").json()["session"]
        t0 = time.perf_counter()
        body = {"session": session, "command": f"말해봐: {LONG_TEXT}"}
        with httpx.stream("POST", f"{url}/generate", json=body, timeout=120) as res:
            lines = res.iter_lines()
            start = json.loads(next(lines))
            t_start = time.perf_counter() - t0
            next(lines)
            t_first = time.perf_counter() - t0
            for _ in lines:
                pass
            t_end = time.perf_counter() - t0
    print(
        f"long text stream: start line {t_start * 1000:.0f} ms, first frame {t_first * 1000:.0f} ms, "
        f"last line {t_end * 1000:.0f} ms ({start['frames']} frames, {start['audio']['duration_ms'] / 1000:.2f} s)"
    )


def browser() -> None:
    from browser_helpers import CHROMIUM, CHROMIUM_FLAGS
    from playwright.sync_api import sync_playwright

    rate = 16_000
    t = np.arange(int(BROWSER_CLIP_S * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1200), start=1))
    gate = (np.sin(2 * np.pi * 2.0 * t) > 0).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_wav(Path(tmp) / "speech.wav", AudioClip.from_mono((0.3 * tone * gate).astype(np.float32), rate))
        engine = StandInEngine(frame_ms=2, prepare_ms=5)
        settings = ServerSettings(crop=False, fps=BROWSER_FPS, idle_default=False)
        with live_server(create_app(engine, settings)) as url, sync_playwright() as p:
            chrome = p.chromium.launch(
                executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
            )
            page = chrome.new_page()
            page.goto(url)
            neutral = "() => document.getElementById('portrait').dataset.state === 'neutral'"
            page.wait_for_function(neutral, timeout=PAGE_TIMEOUT_MS)
            page.set_input_files("#audioUpload", str(path))
            page.wait_for_function("() => document.body.dataset.voice === 'playing'", timeout=PAGE_TIMEOUT_MS)
            page.wait_for_function("() => document.body.dataset.avSkewMs !== undefined", timeout=PAGE_TIMEOUT_MS * 2)
            report = page.evaluate("() => ({...document.body.dataset})")
            chrome.close()
    print(
        f"page, {BROWSER_CLIP_S:g} s upload at {BROWSER_FPS:g} fps: clock {report.get('avClock')}, "
        f"largest frame lateness {report.get('avSkewMs')} ms (one frame = {1000 / BROWSER_FPS:.0f} ms), "
        f"frames skipped {report.get('framesDropped')} of {int(np.ceil(BROWSER_CLIP_S * BROWSER_FPS))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true", help="also measure A/V sync on the page (Chromium)")
    args = parser.parse_args()
    plans()
    stream()
    if args.browser:
        browser()


if __name__ == "__main__":
    main()
