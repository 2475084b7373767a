"""Test tooling stays out of the product: serving never imports onnx, the parity runners or make-tiny,
and onnx is an extra that make-tiny asks for by name."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from glmtts_mcp.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLING = ("onnx", "glmtts_mcp.engine.parity", "glmtts_mcp.engine.checkpoint.tiny")

# Imports the server and the CLI, builds the app and the MCP server, loads the engine and clones a
# voice (the whole product path), then lists what of the test tooling got imported.
_PROBE = """
import json, sys
from pathlib import Path
import numpy as np
import glmtts_mcp.cli
from glmtts_mcp.config import load_settings
from glmtts_mcp.app.core import build_app
from glmtts_mcp.mcp_face.server import build_server

root = Path(sys.argv[2])
settings = load_settings(checkpoint=Path(sys.argv[1]), voices_dir=root / "voices", output_dir=root / "out",
                         allowed_dirs=[root], whisper_model="tiny-random", preload="start")
app = build_app(settings)
build_server(app)
from glmtts_mcp.app.cloning import extract_new_voice
t = np.arange(24000 * 2) / 24000
pcm = np.rint(0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 32767).astype(np.int16)
extract_new_voice(app.host.ensure_loaded(), pcm, 24000, "Hello there.", "en", None)
tooling = sys.argv[3].split(",")
print(json.dumps(sorted(m for m in sys.modules if any(m == t or m.startswith(t + ".") for t in tooling))))
"""


@pytest.mark.slow
def test_serving_imports_no_test_tooling(tiny_checkpoint: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tiny_checkpoint), str(tmp_path), ",".join(TEST_TOOLING)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_onnx_is_an_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(specs: list[str]) -> set[str]:
        return {s.split(">")[0].split("=")[0].split("<")[0].strip() for s in specs}

    assert "onnx" not in names(project["dependencies"])
    assert "onnx" in names(project["optional-dependencies"]["tiny"])
    assert "onnx" in names(project["optional-dependencies"]["test"])
    pins = {line.split("==")[0] for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    assert "onnx" in pins


def test_make_tiny_without_onnx_names_the_extra(
    no_user_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    target = tmp_path / "tiny"
    assert main(["checkpoint", "make-tiny", str(target)]) == 1
    err = capsys.readouterr().err
    assert "onnx" in err and "pip install 'glmtts-mcp[tiny]'" in err
    assert not target.exists() or not any(target.iterdir())  # nothing half-written


# Serves with the local engine while `ray` cannot be imported (as where the [ray] extra is not installed):
# builds the app and the server, loads the engine, clones a voice and narrates through the tools' own
# narration, then lists every ray module that got imported.
_NO_RAY_PROBE = """
import importlib.abc, json, sys
from pathlib import Path

class NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, NoRay())
import glmtts_mcp.cli
from glmtts_mcp.config import load_settings
from glmtts_mcp.app.core import build_app
from glmtts_mcp.mcp_face.server import build_server
from glmtts_mcp.app.narration import NarrationRequest
from glmtts_mcp.app.saving import narrate_to_path
import anyio

root = Path(sys.argv[2])
clip = root / "clip.wav"
import numpy as np, soundfile as sf
t = np.arange(16000 * 2) / 16000
sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
settings = load_settings(checkpoint=Path(sys.argv[1]), voices_dir=root / "voices", output_dir=root / "out",
                         allowed_dirs=[root], whisper_model="tiny-random", engine="local")
app = build_app(settings)
build_server(app)
request = NarrationRequest(text="Hello there.", reference=clip, transcript="Hello there.", seed=3)
_, _, spoken = anyio.run(narrate_to_path, app, request, root / "spoken.wav", "wav")
assert spoken.read_bytes()[:4] == b"RIFF" and app.host.describe()["backend"] == "local"
app.close()
print(json.dumps(sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "glmtts_mcp.engine_ray")))))
"""


@pytest.mark.slow
def test_the_local_engine_serves_without_ray(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`--engine local` (the default) neither needs nor imports ray: it clones and narrates with ray blocked."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_RAY_PROBE, str(tiny_checkpoint), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_ray_is_an_extra_the_tests_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not any(spec.startswith("ray") for spec in project["dependencies"])
    assert extras["ray"] == ["ray[serve]==2.60.0"] and "glmtts-mcp[ray]" in extras["test"]
    pins = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    assert "ray" in pins


def test_engine_ray_without_ray_names_the_extra(
    no_user_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["config", "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert (
        "--engine: ray is not installed" in err and "pip install 'glmtts-mcp[ray]'" in err and "--engine local" in err
    )
