"""The memory and device tiers: byte bounds, LRU order, eviction without data loss."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from voicelib_helpers import RATE, make_pcm, make_voice

from glmtts_mcp.voices import VoiceLibrary
from glmtts_mcp.voices.cache import ByteLRU
from glmtts_mcp.voices.schema import tensors_nbytes

VOICE_BYTES = tensors_nbytes(make_voice(0).tensors)


def test_byte_lru_order_and_bounds() -> None:
    lru: ByteLRU[str, int] = ByteLRU(100)
    assert lru.put("a", 1, 40) == 0 and lru.put("b", 2, 40) == 0
    assert lru.get("a") == 1  # a is now the most recent
    assert lru.put("c", 3, 40) == 1  # evicts b, the least recently used
    assert lru.get("b") is None and lru.get("a") == 1 and lru.get("c") == 3
    assert lru.nbytes == 80 and len(lru) == 2
    assert lru.put("huge", 4, 101) == 0 and lru.get("huge") is None  # larger than the tier: not kept
    assert lru.put("a", 5, 10) == 0 and lru.nbytes == 50 and lru.get("a") == 5
    assert lru.discard_where(lambda k: k == "c") == 1 and lru.nbytes == 10
    with pytest.raises(ValueError, match="cache capacity must be >= 0 bytes"):
        ByteLRU(-1)
    off: ByteLRU[str, int] = ByteLRU(0)
    assert off.put("a", 1, 1) == 0 and off.get("a") is None


def test_memory_tier_evicts_by_bytes(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library(memory_bytes=2 * VOICE_BYTES + 10)
    ids = [library.get_or_create(make_pcm(i), RATE, "t", lambda i=i: make_voice(i))[0].id for i in range(3)]
    stats = library.stats()
    assert stats.memory_voices == 2 and stats.memory_bytes == 2 * VOICE_BYTES
    assert stats.session.memory_evictions == 1
    assert library.load_features(ids[0]).tier == "disk"  # evicted, still on disk
    assert library.load_features(ids[2]).tier == "memory"
    assert library.load_features(ids[1]).tier == "disk"  # ids[1] was least recently used when ids[0] came back
    loaded = library.load_features(ids[1])
    assert loaded.tier == "memory" and torch.equal(loaded.tensors["prompt_mel"], make_voice(1).tensors["prompt_mel"])
    stats = library.stats()
    assert stats.memory_bytes <= stats.memory_capacity_bytes and stats.session.memory_evictions == 3
    assert stats.session.disk_hits == 2 and stats.session.memory_hits == 2 and stats.session.memory_misses == 2


def test_memory_tier_off(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library(memory_bytes=0)
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    assert [library.load_features(record.id).tier for _ in range(2)] == ["disk", "disk"]
    assert library.stats().memory_bytes == 0


def test_device_tier_bounded_and_counted(open_library: Callable[..., VoiceLibrary]) -> None:
    # The 'meta' device stands in for an accelerator: the tier logic is the same, no data moves.
    library = open_library(device_bytes=VOICE_BYTES + 10)
    a, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    b, _ = library.get_or_create(make_pcm(2), RATE, "t", lambda: make_voice(2))
    first = library.load_features(a.id, device="meta")
    assert first.tier == "memory" and first.tensors["prompt_mel"].device.type == "meta"
    assert library.load_features(a.id, device="meta").tier == "device"
    assert library.load_features(b.id, device=torch.device("meta")).tier == "memory"  # evicts a from the device tier
    assert library.load_features(a.id, device="meta").tier == "memory"
    cpu = library.load_features(a.id)
    assert cpu.tier == "memory" and cpu.tensors["prompt_mel"].device.type == "cpu"
    stats = library.stats()
    assert stats.device_voices == 1 and stats.device_bytes == VOICE_BYTES
    assert stats.session.device_hits == 1 and stats.session.device_misses == 3 and stats.session.device_evictions == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_tier_on_cuda(open_library: Callable[..., VoiceLibrary]) -> None:
    library = open_library(device_bytes=1 << 20)
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    first = library.load_features(record.id, device="cuda")
    second = library.load_features(record.id, device="cuda")
    assert (first.tier, second.tier) == ("memory", "device")
    assert second.tensors["prompt_mel"].is_cuda
    assert all(second.tensors[n].data_ptr() == first.tensors[n].data_ptr() for n in first.tensors)  # one device copy
    second.tensors["prompt_mel"].zero_()  # a caller breaking the read-only rule: the entry is dropped
    third = library.load_features(record.id, device="cuda:0")
    assert third.tier == "memory"
    assert torch.equal(third.tensors["prompt_mel"].cpu(), make_voice(1).tensors["prompt_mel"])


def test_hits_share_one_copy_per_tier(open_library: Callable[..., VoiceLibrary]) -> None:
    """A hit hands out the tier's own tensors: no copy per hit, and the device tier holds the very copy the
    first load made (not a second one)."""
    library = open_library(device_bytes=1 << 20)
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    cpu = [library.load_features(record.id) for _ in range(2)]
    assert [loaded.tier for loaded in cpu] == ["memory", "memory"]
    for name, tensor in cpu[0].tensors.items():
        assert cpu[1].tensors[name].data_ptr() == tensor.data_ptr()
    on_device = [library.load_features(record.id, device="meta") for _ in range(3)]
    assert [loaded.tier for loaded in on_device] == ["memory", "device", "device"]
    for name, tensor in on_device[0].tensors.items():  # meta tensors have no storage: compare the objects
        assert on_device[1].tensors[name] is tensor and on_device[2].tensors[name] is tensor
    assert library.stats().device_bytes == VOICE_BYTES


def test_shared_features_are_read_only(
    open_library: Callable[..., VoiceLibrary], caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody can swap a tensor in the mapping; a caller that writes into one (through a view, too) does not
    get its write served again: the tier drops the entry, logs the bug, and the next load reads the disk."""
    library = open_library()
    record, _ = library.get_or_create(make_pcm(1), RATE, "t", lambda: make_voice(1))
    loaded = library.load_features(record.id)
    with pytest.raises(TypeError):
        loaded.tensors["prompt_mel"] = torch.zeros(1, 80)  # type: ignore[index]
    loaded.tensors["prompt_mel"][:2].fill_(7.0)
    again = library.load_features(record.id)
    assert again.tier == "disk" and torch.equal(again.tensors["prompt_mel"], make_voice(1).tensors["prompt_mel"])
    assert "wrote into the shared features" in caplog.text
    assert library.load_features(record.id).tier == "memory"
