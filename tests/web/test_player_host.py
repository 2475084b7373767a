"""The narration player as a host renders it: the official ext-apps AppBridge and MCP client in Debian's
Chromium (headless, Playwright) connect to the server over Streamable HTTP, call synthesize, and show its
ui:// view in a sandboxed iframe under the CSP the resource declares (apps_host.py serves the host)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apps_host import EXT_APPS, serve_host
from web_helpers import BROWSER_TIMEOUT_MS, CHROMIUM, LiveServer

pytestmark = [
    pytest.mark.slow,  # a headless browser, a live server and three narrations
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(
        not EXT_APPS.is_file(), reason="@modelcontextprotocol/ext-apps is not in node_modules (.ci/run installs it)"
    ),
]
TWO_SEGMENTS = (
    "Hello there, this is the first sentence of a longer story. And here comes a second one, a little longer "
    "than the first, with a few more words in it! The third sentence ends it, as all stories must end somewhere."
)
APP_ONLY = {"poll_narration", "save_narration"}


@pytest.fixture
def host_page(browser: Any, server: LiveServer) -> Iterator[Callable[..., Any]]:
    """`host_page(apps=True)`: the test host, connected to the server, as a host with or without MCP Apps."""
    contexts = []

    def open_host(apps: bool = True) -> Any:
        context = browser.new_context(viewport={"width": 760, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(serve_host(page, server.url) + ("" if apps else "?apps=0"))
        page.wait_for_function("() => document.getElementById('host-state').textContent === 'ready'")
        return page

    yield open_host
    for context in contexts:
        context.close()


def clone(page: Any, server: LiveServer, clip_bytes: Callable[..., bytes], name: str, pitch: float) -> None:
    clip = Path(server.app.settings.allowed_dirs[0]) / f"{name}.wav"
    clip.write_bytes(clip_bytes(pitch=pitch))
    page.evaluate(
        "([path, name]) => testHost.callTool('clone_voice', {audio: path, name, transcript: 'hello there'})",
        [str(clip), name],
    )


def view(page: Any, index: int) -> Any:
    """The frame of the `index`-th view the host rendered, once its player has started."""
    page.wait_for_function(f"() => document.querySelectorAll('#views iframe').length > {index}")
    frame = page.query_selector_all("#views iframe")[index].content_frame()
    frame.wait_for_selector("#player[data-narration-id]")
    return frame


def test_the_player_plays_highlights_and_narrates_again(
    host_page: Callable[..., Any], server: LiveServer, clip_bytes: Callable[..., bytes], tmp_path: Path
) -> None:
    page = host_page()
    tools = set(page.evaluate("testHost.toolNames"))
    model_tools = set(page.evaluate("testHost.modelToolNames"))
    assert tools >= APP_ONLY and not APP_ONLY & model_tools and "synthesize" in model_tools
    clone(page, server, clip_bytes, "tone", 220.0)
    clone(page, server, clip_bytes, "other", 140.0)

    result = page.evaluate("(text) => testHost.callTool('synthesize', {text, voice: 'tone', seed: 1})", TWO_SEGMENTS)
    first_id = result["structuredContent"]["narration_id"]
    player = view(page, 0)
    assert player.get_attribute("#player", "data-narration-id") == first_id
    csp = player.get_attribute("meta[http-equiv='Content-Security-Policy']", "content")
    assert "connect-src 'none'" in csp and "default-src 'none'" in csp  # the player runs under what it declared
    assert player.text_content("#voice") in ("tone", server.app.library.resolve("tone").id)

    # it starts playing as soon as audio arrives; the time advances, then the second segment lights up
    player.select_option("#speed", "2")
    player.wait_for_function("() => document.getElementById('audio').currentTime > 0.2")
    player.wait_for_selector(".seg.now[data-index='1'][aria-current='true']")
    lit = player.query_selector_all(".seg.now")
    assert (
        len(lit) == 1 and lit[0].get_attribute("data-index") == "1" and lit[0].get_attribute("aria-current") == "true"
    )
    first = server.app.live.get(first_id)
    assert first is not None and lit[0].text_content() == first.segments[1].text
    player.wait_for_function("() => document.getElementById('player').dataset.state === 'done'")
    page.query_selector("#views iframe").screenshot(path=str(tmp_path / "player.png"))

    # the keyboard: in the player, k plays and pauses (every control is a labelled native one)
    paused = player.evaluate("document.getElementById('audio').paused")
    player.focus("#text")
    page.keyboard.press("k")
    player.wait_for_function(f"() => document.getElementById('audio').paused === {str(not paused).lower()}")
    for control in player.query_selector_all("button, select, input"):
        assert control.evaluate(
            "(c) => c.labels?.length > 0 || !!c.getAttribute('aria-label') || !!c.textContent.trim()"
        )

    # save to the outputs: the path is shown, and the model hears of it through the host
    player.click("#save")
    player.wait_for_function("() => document.getElementById('notice').textContent.startsWith('Saved to ')")
    saved = Path(player.text_content("#notice").removeprefix("Saved to "))
    assert saved.is_file() and saved.parent == server.app.settings.output_dir
    assert str(saved) in page.evaluate("JSON.stringify(testHost.modelContext)")

    # again with another seed: a new narration, other audio, the same text and voice
    player.click("#again")
    player.wait_for_function(f"() => document.getElementById('player').dataset.narrationId !== {first_id!r}")
    second_id = player.get_attribute("#player", "data-narration-id")
    player.wait_for_function("() => document.getElementById('player').dataset.state === 'done'")
    second = server.app.live.get(second_id)
    assert second is not None and second.request.text == first.request.text and second.voice_id == first.voice_id
    assert second.request.seed != first.request.seed and bytes(second.pcm) != bytes(first.pcm)
    assert player.text_content("#seed") == str(second.request.seed)

    # another voice, picked from list_voices
    player.focus("#voices")
    player.wait_for_function("() => document.getElementById('voices').options.length >= 3")
    player.select_option("#voices", server.app.library.resolve("other").id)
    player.click("#use-voice")
    player.wait_for_function(f"() => document.getElementById('player').dataset.narrationId !== {second_id!r}")
    player.wait_for_function("() => document.getElementById('voice').textContent === 'other'")
    assert page.errors == [] and player.is_hidden("#error")


def test_a_host_without_the_extension_gets_todays_result(
    host_page: Callable[..., Any], server: LiveServer, clip_bytes: Callable[..., bytes]
) -> None:
    page = host_page(apps=False)
    assert not APP_ONLY & set(page.evaluate("testHost.toolNames"))
    clone(page, server, clip_bytes, "plain", 180.0)
    result = page.evaluate("testHost.callTool('synthesize', {text: 'Hi.', voice: 'plain'})")
    out = result["structuredContent"]
    assert "narration_id" not in out and out["returned"] == ["audio", "path"] and Path(out["path"]).is_file()
    assert [block["type"] for block in result["content"]] == ["text", "audio"]
    assert page.query_selector_all("#views iframe") == [] and page.errors == []


def test_players_do_not_talk_over_each_other(
    host_page: Callable[..., Any], server: LiveServer, clip_bytes: Callable[..., bytes]
) -> None:
    page = host_page()
    clone(page, server, clip_bytes, "floor", 200.0)
    page.evaluate("(text) => testHost.callTool('synthesize', {text, voice: 'floor', seed: 7})", TWO_SEGMENTS)
    first = view(page, 0)
    first.select_option("#speed", "0.75")
    first.wait_for_function("() => document.getElementById('audio').currentTime > 0.2")
    page.evaluate("() => testHost.callTool('synthesize', {text: 'And now the second player speaks.', voice: 'floor'})")
    second = view(page, 1)
    second.wait_for_function("() => document.getElementById('player').dataset.playing === 'true'")
    first.wait_for_function("() => document.getElementById('player').dataset.playing === 'false'")
    assert first.evaluate("document.getElementById('audio').paused") and page.errors == []
