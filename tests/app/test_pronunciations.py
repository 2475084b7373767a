"""Pronunciation dictionaries and phoneme-in through the application core: the entries reach the model's
input ids, travel with a voice's export, and hostile dictionaries are refused without harm."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from glmtts_mcp.app import pronunciations
from glmtts_mcp.app.core import App
from glmtts_mcp.app.narration import Done, Narration, NarrationRequest, VoiceReady
from glmtts_mcp.engine.frontend.text_tokenizer import TextTokenizer
from glmtts_mcp.errors import UserError
from glmtts_mcp.voices.errors import ArchiveError

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., App]
CHONGQING = "<|CH|><|ONG2|><|Q|><|ING4|>"


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every id list the text tokenizer hands the LLM during the test."""
    calls: list[list[int]] = []
    original = TextTokenizer.encode

    def recording(self: TextTokenizer, text: str) -> list[int]:
        ids = original(self, text)
        calls.append(ids)
        return ids

    monkeypatch.setattr(TextTokenizer, "encode", recording)
    return calls


async def narrate(app: App, request: NarrationRequest) -> tuple[VoiceReady, Done]:
    ready = done = None
    async with Narration(app, request) as narration:
        async for event in narration:
            if isinstance(event, VoiceReady):
                ready = event
            if isinstance(event, Done):
                done = event
    assert ready is not None and done is not None
    return ready, done


def contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


async def test_a_voice_entry_reaches_the_models_input_ids(
    make_app: AppFactory, clip: Path, encoded: list[list[int]], tiny_checkpoint: Path
) -> None:
    app = make_app()
    ready, _ = await narrate(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
    pronunciations.add(app, ready.voice_id, "重庆", "chong2 qing4")
    assert pronunciations.entries(app, ready.voice_id) == {"重庆": "chong2 qing4"}
    assert pronunciations.entries(app, None) == {}
    tokens = TextTokenizer.from_dir(tiny_checkpoint / "vq32k-phoneme-tokenizer").encode(CHONGQING)
    assert len(tokens) == 4  # four added tokens, one id each
    encoded.clear()
    _, done = await narrate(app, NarrationRequest(text="我们去重庆。", voice=ready.voice_id))
    assert done.pronunciation == "text" and done.text_as_read == f"我们去{CHONGQING}。"
    assert any(contains(ids, tokens) for ids in encoded)
    # without the entry the same sentence is read as text
    pronunciations.remove(app, ready.voice_id, "重庆")
    _, plain = await narrate(app, NarrationRequest(text="我们去重庆。", voice=ready.voice_id))
    assert plain.text_as_read == "我们去重庆。"


async def test_phoneme_mode_and_respellings(make_app: AppFactory, clip: Path) -> None:
    app = make_app(pronunciation="phoneme")
    ready, _ = await narrate(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
    _, done = await narrate(app, NarrationRequest(text="我们在银行见面。", voice=ready.voice_id))
    assert done.pronunciation == "phoneme" and done.text_as_read == "我们在银<|H|><|ANG2|>见面。"
    _, text = await narrate(app, NarrationRequest(text="我们在银行见面。", voice=ready.voice_id, pronunciation="text"))
    assert text.text_as_read == "我们在银行见面。"
    pronunciations.add(app, None, "GLM", "glimmer")  # a global respelling, before normalisation
    _, respelled = await narrate(app, NarrationRequest(text="GLM speaks.", voice=ready.voice_id, pronunciation="text"))
    assert respelled.text_as_read == "glimmer speaks."
    inline = NarrationRequest(text="GLM speaks.", voice=ready.voice_id, pronunciations={"GLM": "gee el em"})
    assert (await narrate(app, inline))[1].text_as_read == "gee el em speaks."


async def test_respellings_may_not_blow_the_text_past_the_limit(make_app: AppFactory, clip: Path) -> None:
    app = make_app(max_text_chars=40)
    pronunciations.add(app, None, "x", "a very long respelling of one letter")
    with pytest.raises(UserError, match="characters once respelled; the limit is 40"):
        await narrate(app, NarrationRequest(text="x x x", reference=clip, transcript="hi"))
    _, done = await narrate(app, NarrationRequest(text="x.", reference=clip, transcript="hi"))  # still serving
    assert done.text_as_read == "a very long respelling of one letter."


async def exported_with_entry(app: App, clip: Path, tmp_path: Path) -> tuple[str, Path]:
    """A voice with one entry of its own, exported and then deleted: (its id, the archive)."""
    ready, _ = await narrate(app, NarrationRequest(text="Hi.", reference=clip, transcript="hi"))
    pronunciations.add(app, ready.voice_id, "行长", "hang2 zhang3")
    archive = app.library.export_voice(ready.voice_id, tmp_path / "v.zip")
    app.library.delete(ready.voice_id)
    return ready.voice_id, archive


async def test_export_and_import_keep_the_voice_dictionary(make_app: AppFactory, clip: Path, tmp_path: Path) -> None:
    app = make_app()
    voice_id, archive = await exported_with_entry(app, clip, tmp_path)
    record, existed = app.library.import_voice(archive)
    assert not existed and record.id == voice_id
    assert pronunciations.entries(app, record.id) == {"行长": "hang2 zhang3"}


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"重庆": "chong6 qing4"}, "tone 6"),
        ({"重庆": "zzz2"}, "'zzz2'"),
        ({"": "a1"}, "empty"),
        ({"重庆": ""}, "empty"),
        ({"Bob": "Rob", "Rob": "Bob"}, "lead back"),
        ({"行": "hang2 " * 9}, "9 syllables for 1 characters"),
        ({f"w{i}": "word" for i in range(10_000)}, "10000 entries"),
    ],
)
async def test_hostile_dictionaries_are_refused(
    make_app: AppFactory, clip: Path, entries: dict[str, str], named: str
) -> None:
    app = make_app()
    with pytest.raises(UserError, match=named):
        NarrationRequest(text="你好。", reference=clip, pronunciations=entries)
    with pytest.raises(UserError, match=named):
        pronunciations.import_file(
            app, None, json.dumps({"format": "glmtts-mcp-pronunciations", "entries": entries}).encode(), "upload"
        )
    assert pronunciations.entries(app, None) == {}  # nothing was written


async def test_a_tampered_archive_dictionary_is_refused(make_app: AppFactory, clip: Path, tmp_path: Path) -> None:
    app = make_app()
    _, archive = await exported_with_entry(app, clip, tmp_path)
    bad = json.dumps({"format": "glmtts-mcp-pronunciations", "entries": {"行长": "hang9"}}).encode()
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tmp_path / "bad.zip", "w") as dst:
        manifest = json.loads(src.read("manifest.json"))
        manifest["files"]["pronunciations.json"] = {"sha256": hashlib.sha256(bad).hexdigest(), "size": len(bad)}
        for name in src.namelist():
            data = {"manifest.json": json.dumps(manifest).encode(), "pronunciations.json": bad}.get(name)
            dst.writestr(name, data if data is not None else src.read(name))
    with pytest.raises(ArchiveError, match="hang9"):
        app.library.import_voice(tmp_path / "bad.zip")
    assert app.library.list_voices().voices == []
