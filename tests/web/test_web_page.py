"""The page in a real browser: Debian's Chromium, headless, driven by Playwright (its own browser
download is never used). Screenshots land in each test's temporary folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web_helpers import BROWSER_TIMEOUT_MS, CHROMIUM, TOKEN, LiveServer, live_server, make_web_app

pytestmark = [
    pytest.mark.slow,  # a headless browser against a live server
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
    ),
]


@pytest.fixture
def page_for(browser) -> Iterator[Callable]:
    """`page_for(width=1280)`: a fresh browser context (no cookies) and a page that records failures."""
    contexts = []

    def make(width: int = 1280, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield make
    for context in contexts:
        context.close()


def voice_item(page, name: str):
    return page.locator("#voice-list li.voice", has=page.locator(".voice-name", has_text=name))


def test_clone_speak_rename_delete(
    server: LiveServer, page_for: Callable, tmp_path: Path, clip_writer: Callable[..., Path]
) -> None:
    clip = clip_writer(tmp_path / "speaker.wav", pitch=190.0)
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"these are notes, not audio" * 20)
    page = page_for()
    page.goto(server.url + "/")
    page.wait_for_selector("#stats dt")  # statistics loaded

    # a file that is not audio: the server's sentence is shown
    page.set_input_files("#clone-file", str(junk))
    page.click("#clone-button")
    page.wait_for_selector("#alert:not([hidden])")
    assert "could not be decoded as audio" in page.text_content("#alert")

    # clone through the page's file input
    page.set_input_files("#clone-file", str(clip))
    page.fill("#clone-name", "page-voice")
    page.fill("#clone-transcript", "hello there")
    page.click("#clone-button")
    item = voice_item(page, "page-voice")
    item.wait_for()
    assert "highlight" in item.get_attribute("class")
    assert "hello there" in item.text_content() and "2.2 s" in item.text_content()
    assert page.is_hidden("#alert")
    page.screenshot(path=str(tmp_path / "cloned.png"), full_page=True)

    # speak: the audio element gets a playable source with a real duration
    assert page.input_value("#speak-voice") == item.get_attribute("data-voice-id")
    page.fill("#speak-text", "Hello there. How are you today?")
    page.click("#speak-button")
    page.wait_for_function(
        "() => { const a = document.getElementById('speech-audio');"
        " return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0 && isFinite(a.duration); }"
    )
    duration = page.evaluate("document.getElementById('speech-audio').duration")
    assert 0.2 < duration < 30
    assert page.is_visible("#speech-download")
    assert page.get_attribute("#speech-download", "download") == "speech.wav"
    page.select_option("#speak-format", "ogg")
    page.click("#speak-button")
    page.wait_for_function("() => document.getElementById('speech-download').download === 'speech.ogg'")
    page.wait_for_function("() => document.getElementById('speech-audio').duration > 0")
    page.screenshot(path=str(tmp_path / "spoken.png"), full_page=True)

    # rename (prompt) and delete (confirmation)
    page.once("dialog", lambda dialog: dialog.accept("renamed-voice"))
    item.get_by_role("button", name="Rename page-voice").click()
    voice_item(page, "renamed-voice").wait_for()
    page.once("dialog", lambda dialog: dialog.dismiss())  # cancelling the confirmation keeps the voice
    voice_item(page, "renamed-voice").get_by_role("button", name="Delete renamed-voice").click()
    page.wait_for_timeout(300)
    assert voice_item(page, "renamed-voice").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    voice_item(page, "renamed-voice").get_by_role("button", name="Delete renamed-voice").click()
    voice_item(page, "renamed-voice").wait_for(state="detached")
    page.screenshot(path=str(tmp_path / "deleted.png"), full_page=True)
    assert page.errors == []


def test_pronunciation_editor_previews_adds_and_removes(server: LiveServer, page_for: Callable, tmp_path: Path) -> None:
    """The page's small dictionary editor: preview a word with a reading, add it, see it, remove it."""
    page = page_for()
    page.goto(server.url + "/")
    page.wait_for_selector("#stats dt")
    page.fill("#pronounce-text", "重庆")
    page.fill("#pronounce-reading", "chong2 qing4")
    page.click("#pronounce-preview")
    page.wait_for_function("() => document.getElementById('pronounce-status').textContent.includes('<|CH|>')")
    assert page.text_content("#pronounce-status") == "read as (text): <|CH|><|ONG2|><|Q|><|ING4|>。"
    page.fill("#pronounce-reading", "chong9")  # refused, with the server's sentence naming the entry
    page.click("#pronounce-add")
    page.wait_for_selector("#alert:not([hidden])")
    assert "重庆" in page.text_content("#alert") and "tone 9" in page.text_content("#alert")
    page.fill("#pronounce-reading", "chong2 qing4")
    page.click("#pronounce-add")
    entry = page.locator("#pronounce-list li", has_text="重庆 → chong2 qing4 (pinyin)")
    entry.wait_for()
    page.screenshot(path=str(tmp_path / "pronunciation.png"), full_page=True)
    entry.get_by_role("button", name="Remove the entry 重庆").click()
    entry.wait_for(state="detached")
    assert page.errors == []


def test_every_control_is_labelled_and_a_narrow_window_fits(
    server: LiveServer, page_for: Callable, tmp_path: Path
) -> None:
    page = page_for(width=400, height=800)
    page.goto(server.url + "/")
    page.wait_for_selector("#stats dt")
    unlabelled = page.evaluate(
        "() => [...document.querySelectorAll('input, select, textarea, button')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())"
        ".map(e => e.id || e.outerHTML)"
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.focus("#clone-file")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "clone-name"
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)


def test_token_protected_server(
    tmp_path: Path, tiny_checkpoint: Path, page_for: Callable, clip_writer: Callable[..., Path]
) -> None:
    app = make_web_app(tmp_path / "server", tiny_checkpoint, token=TOKEN)
    try:
        with live_server(app) as live:
            entry = live.service.entry_url()
            stranger = page_for()
            stranger.goto(live.url + "/")
            assert stranger.url == live.url + "/login"  # no cookie: sent to sign in
            stranger.screenshot(path=str(tmp_path / "sign-in.png"))

            page = page_for()
            page.goto(entry)  # the one-time link the server prints
            assert page.url == live.url + "/"
            page.wait_for_selector("#stats dt")
            assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts never see the session
            page.set_input_files("#clone-file", str(clip_writer(tmp_path / "clip.wav")))
            page.fill("#clone-transcript", "hello there")
            page.fill("#clone-name", "guarded")
            page.click("#clone-button")
            voice_item(page, "guarded").wait_for()
            page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

            typed = page_for()
            typed.goto(entry)  # spent: the link works once
            assert "already used" in typed.text_content("body")
            typed.fill("#token", TOKEN)
            typed.click("button[type=submit]")
            voice_item(typed, "guarded").wait_for()
            assert page.errors == [] and typed.errors == []
    finally:
        app.close()
