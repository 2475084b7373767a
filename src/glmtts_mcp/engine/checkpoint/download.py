"""Fetch the checkpoint (only the files the engine reads) and record its hashes; convert .pt to safetensors.

Sources: the Hugging Face model repo zai-org/GLM-TTS; `campplus.onnx` from FunAudioLLM/CosyVoice-300M
(the GLM-TTS HF repo does not ship it; docs/checkpoint.md §1b), checked by size and sha256; Whisper
weights from openai-whisper's own URLs into the whisper cache (whisper checks their sha256).
After a download, `manifest.json` (see `checkpoint.manifest`) records every file's size and sha256 so a
corrupted or truncated file is named before any model loads it.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from glmtts_mcp.engine.checkpoint import layout as ck
from glmtts_mcp.engine.checkpoint.layout import HF_REPO, CheckpointError, names_whisper_file, whisper_cache_dir
from glmtts_mcp.engine.checkpoint.manifest import MANIFEST, sha256_file, write_manifest

log = logging.getLogger(__name__)

# The revision downloaded by default. No network reached huggingface.co when this was written, so
# the branch is named here; the commit it resolved to is recorded in manifest.json, and passing
# that commit as `revision` reproduces a download exactly.
PINNED_REVISION = "main"

CAMPPLUS_REPO = "FunAudioLLM/CosyVoice-300M"
CAMPPLUS_SIZE = 28_303_423
CAMPPLUS_SHA256 = "a6ac6a63997761ae2997373e2ee1c47040854b4b759ea41ec48e4e42df0f4d73"

# Files read from the HF repo besides the LLM shards (which the index names).
HF_FILES: tuple[str, ...] = (*(rel for rel in ck.REQUIRED_FILES if rel != ck.CAMPPLUS), ck.LLM_INDEX)


def convert_to_safetensors(directory: Path, *, remove_pt: bool = False) -> list[Path]:
    """Write a .safetensors twin of each .pt (flow, hift): later loads never touch pickle at all.

    Each twin is read back and compared with the original before it counts; the manifest, if any,
    is rewritten to include the twins.
    """
    directory = Path(directory)
    written: list[Path] = []
    for rel in (ck.FLOW_WEIGHTS, ck.HIFT_WEIGHTS):
        pt = directory / rel
        target = ck.twin(pt)
        if not pt.is_file() or target.is_file():
            continue  # absent, or already converted
        tensors = {k: v.detach().contiguous().clone() for k, v in ck.load_state_dict(pt).items()}
        tmp = target.with_suffix(".safetensors.tmp")
        save_file(tensors, str(tmp), metadata={"converted_from": pt.name})
        back = load_file(str(tmp))
        if back.keys() != tensors.keys() or not all(torch.equal(back[k], tensors[k]) for k in tensors):
            tmp.unlink()
            raise CheckpointError(f"conversion of {pt} did not round-trip; the .pt file is kept")
        os.replace(tmp, target)
        written.append(target)
        if remove_pt:
            pt.unlink()
    if written and (directory / MANIFEST).is_file():
        revision = ck.read_json(directory / MANIFEST).get("revision")
        write_manifest(directory, revision=revision)
    return written


def _tqdm_class(progress: bool) -> type | None:
    """huggingface_hub's default bars, or bars that draw nothing."""
    return None if progress else partial(tqdm, disable=True)  # type: ignore[return-value]  # hf only calls it


def _fetch_campplus(directory: Path, progress: bool) -> None:
    """campplus.onnx from CosyVoice-300M into frontend/, refused unless size and sha256 match."""
    from huggingface_hub import hf_hub_download

    target = directory / ck.CAMPPLUS
    if target.is_file() and target.stat().st_size == CAMPPLUS_SIZE and sha256_file(target) == CAMPPLUS_SHA256:
        return
    cached = Path(hf_hub_download(CAMPPLUS_REPO, "campplus.onnx", tqdm_class=_tqdm_class(progress)))
    if cached.stat().st_size != CAMPPLUS_SIZE or sha256_file(cached) != CAMPPLUS_SHA256:
        raise CheckpointError(f"campplus.onnx from {CAMPPLUS_REPO} does not match the expected size and sha256")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)


def download_whisper(size: str = "base", progress: bool = True) -> Path:
    """openai-whisper's own weights for `size` into the whisper cache (whisper verifies the sha256);
    without `progress`, one log line instead of whisper's own bar."""
    import whisper

    if size not in whisper._MODELS:
        raise CheckpointError(f"unknown whisper model {size!r}; choose one of {', '.join(whisper.available_models())}")
    root = whisper_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    if progress:
        return Path(whisper._download(whisper._MODELS[size], str(root), False))
    log.info("fetching whisper %s", size)
    with mock.patch.object(whisper, "tqdm", partial(tqdm, disable=True)):  # whisper draws its bar unasked
        return Path(whisper._download(whisper._MODELS[size], str(root), False))


def download_checkpoint(
    directory: Path,
    *,
    revision: str = PINNED_REVISION,
    progress: bool = True,
    whisper_model: str | Path | None = "base",
) -> Path:
    """Download (resumably) every file the engine reads into `directory`, then record hashes.

    Re-running after an interruption continues where it stopped: huggingface_hub resumes partial
    files and skips complete ones. Returns the checkpoint directory.
    """
    from huggingface_hub import HfApi

    directory = Path(directory).expanduser()
    tqdm_class = _tqdm_class(progress)
    created = not directory.exists()
    with _hub_reachable(directory, created):
        commit = HfApi().model_info(HF_REPO, revision=revision).sha or revision
        directory.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s@%s into %s", HF_REPO, commit, directory)
        _fetch_all(directory, commit, tqdm_class, progress, whisper_model)
    write_manifest(directory, revision=commit)
    return directory


def _fetch_all(
    directory: Path, commit: str, tqdm_class: type | None, progress: bool, whisper_model: str | Path | None
) -> None:
    from huggingface_hub import hf_hub_download

    def fetch(rel: str) -> None:
        if not progress:  # no bars (a log, a pipe): one line per file instead
            log.info("fetching %s", rel)
        hf_hub_download(HF_REPO, rel, revision=commit, local_dir=directory, tqdm_class=tqdm_class)

    for rel in HF_FILES:
        fetch(rel)
    for rel in ck.llm_weight_files(directory):
        fetch(rel)
    _fetch_campplus(directory, progress)
    if whisper_model and not names_whisper_file(whisper_model):  # a file needs no download
        download_whisper(str(whisper_model), progress=progress)  # a size name, not a file


@contextmanager
def _hub_reachable(directory: Path, created: bool) -> Iterator[None]:
    """Turn "no network" (offline mode, refused or timed-out connections, DNS) into one sentence that says
    what to do, and remove the folder this download created when nothing was fetched into it."""
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError, urllib.error.URLError) as exc:
        if created and directory.is_dir() and not any(p.is_file() for p in _outside_hub_cache(directory)):
            shutil.rmtree(directory, ignore_errors=True)
        raise CheckpointError(
            f"cannot reach the model hub ({type(exc).__name__}): check the network or proxy (HTTPS_PROXY, "
            f"HF_ENDPOINT, HF_HUB_OFFLINE), or copy a checkpoint into {directory} and pass --checkpoint {directory}"
        ) from exc


def _outside_hub_cache(directory: Path) -> Iterator[Path]:
    """Everything under `directory` but huggingface_hub's own bookkeeping folder (.cache)."""
    for path in directory.rglob("*"):
        if ".cache" not in path.relative_to(directory).parts:
            yield path
