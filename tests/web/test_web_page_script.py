"""The page's script section in Debian's Chromium: a two-voice script narrated over REST, its track list
seeking the audio and following it, the subtitles offered as downloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from test_web_page import page_for  # noqa: F401  # the page fixture of the page tests (the browser is in conftest)
from web_helpers import CHROMIUM, LiveServer

pytestmark = [
    pytest.mark.slow,  # a headless browser against a live server
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


def test_a_script_plays_with_its_track_list(
    server: LiveServer,
    page_for: Callable,  # noqa: F811  # the fixture imported above
    clip_bytes: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    with httpx2.Client(base_url=server.url, timeout=120) as client:
        for name, pitch in (("Page Ann", 240.0), ("Page Ben", 120.0)):
            files = {"audio": ("clip.wav", clip_bytes(pitch), "audio/wav")}
            answer = client.post("/api/voices", files=files, data={"transcript": "hello there", "name": name})
            assert answer.status_code in (200, 201), answer.text
    page = page_for()
    page.goto(server.url + "/")
    page.wait_for_selector("#stats dt")
    page.fill("#script-text", "Page Ann: Hello, Ben.\n[pause 500ms]\nPage Ben: Hello, Ann. How are you?")
    page.click("#script-button")
    page.wait_for_selector("#script-downloads:not([hidden])")
    lines = page.locator("#script-lines .script-line")
    assert lines.count() == 2
    assert "Page Ann: Hello, Ben." in lines.nth(0).text_content()
    assert page.get_attribute("#script-srt", "href").startswith("blob:")
    page.wait_for_function("() => document.getElementById('script-audio').duration > 0")

    # a line of the track list seeks the audio there, and the list marks the line being played
    page.evaluate("document.getElementById('script-audio').muted = true")
    lines.nth(1).click()
    page.wait_for_selector("#script-lines li.current")
    current = page.locator("#script-lines li.current .script-line").text_content()
    assert "Page Ben" in current
    page.screenshot(path=str(tmp_path / "script.png"), full_page=True)
    assert page.errors == []
