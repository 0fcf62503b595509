"""`--captions-model`: the engine is told by the directory's files, and a directory that
cannot serve stops the server at start-up with one clear line (exit 2), never a
recognizer that dies on the first word of a live space.

No Vosk or faster-whisper model can be had here without downloading one from outside
PyPI (neither wheel ships a model), so the directories below are laid out like theirs
with empty files: what is checked is the selection and the refusals, not recognition
(test_captions_whisper.py runs the Whisper engine on a model made here).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHEAP_ARGON2, free_port
from townhall.captions.models import (
    ModelDirError,
    ModelKind,
    check_model,
    detect_model,
    pocketsphinx_files,
)

START_TIMEOUT_S = 60.0
"""A refusal comes before the server binds; generous for a loaded machine."""


def _lay_out(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0")
    return root


def _bundled_pocketsphinx() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us"


def _vosk(root: Path) -> Path:
    return _lay_out(root, "am/final.mdl", "graph/HCLG.fst", "graph/words.txt", "conf/mfcc.conf")


def _whisper(root: Path) -> Path:
    return _lay_out(root, "model.bin", "config.json", "tokenizer.json", "vocabulary.json")


def test_the_engine_is_told_by_the_files(tmp_path: Path) -> None:
    assert detect_model("") is ModelKind.POCKETSPHINX
    assert detect_model(str(_bundled_pocketsphinx())) is ModelKind.POCKETSPHINX
    assert detect_model(str(_vosk(tmp_path / "vosk"))) is ModelKind.VOSK
    old_vosk = _lay_out(tmp_path / "vosk-v1", "final.mdl", "HCLr.fst", "Gr.fst", "mfcc.conf")
    assert detect_model(str(old_vosk)) is ModelKind.VOSK
    assert detect_model(str(_whisper(tmp_path / "whisper"))) is ModelKind.FASTER_WHISPER


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ((), "is not a captions model directory"),
        (("README.txt", "model.onnx"), "is not a captions model directory"),
        (("model.bin", "config.json"), "has no tokenizer.json"),
        (("model.bin",), "has no config.json, tokenizer.json"),
        (("am/final.mdl", "conf/mfcc.conf"), "Vosk model but has no decoding graph"),
        (("am/final.mdl", "graph/HCLG.fst"), "Vosk model but has no conf/mfcc.conf"),
        (("en-us/mdef", "en-us.dict"), "is not a captions model directory"),
    ],
)
def test_a_directory_that_cannot_serve_is_refused_with_the_reason(
    tmp_path: Path, files: tuple[str, ...], words: str
) -> None:
    model = _lay_out(tmp_path / "model", *files)
    with pytest.raises(ModelDirError, match=words):
        detect_model(str(model))


def test_a_path_that_is_no_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="is not a directory"):
        detect_model(str(tmp_path / "missing"))
    with pytest.raises(ModelDirError, match="is not a directory"):
        detect_model(str(_lay_out(tmp_path, "a-file") / "a-file"))


def test_the_pocketsphinx_files_are_named_for_the_decoder() -> None:
    files = pocketsphinx_files(_bundled_pocketsphinx())
    assert files is not None and Path(files["hmm"], "mdef").is_file()
    assert files["lm"].endswith(".lm.bin") and files["dict"].endswith(".dict")


@pytest.mark.skipif(importlib.util.find_spec("vosk") is not None, reason="vosk is installed")
def test_an_engine_that_is_not_installed_is_named_with_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match=r"pip install 'townhall\[captions-vosk\]'"):
        check_model(str(_vosk(tmp_path / "vosk")))
    assert check_model("") is ModelKind.POCKETSPHINX


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "townhall", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(free_port()), "--data-dir", str(tmp_path / "data"), *args]
    return subprocess.run(
        command,
        env={**os.environ, **CHEAP_ARGON2, "TOWNHALL_CAPTIONS_ENABLED": "1", **env},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


def test_the_server_does_not_start_on_a_bad_model_directory(tmp_path: Path) -> None:
    no_tokenizer = _lay_out(tmp_path / "whisper", "model.bin", "config.json")
    refused = _serve(tmp_path, "--captions-model", str(no_tokenizer))
    assert refused.returncode == 2, refused.stderr
    assert "--captions-model / TOWNHALL_CAPTIONS_MODEL" in refused.stderr
    assert "has no tokenizer.json" in refused.stderr and "Traceback" not in refused.stderr
    by_env = _serve(tmp_path, TOWNHALL_CAPTIONS_MODEL=str(tmp_path / "nowhere"))
    assert by_env.returncode == 2 and "is not a directory" in by_env.stderr
