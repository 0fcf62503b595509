"""Which recognizer a `--captions-model` directory is for, told by its files.

Nothing is loaded here and nothing is downloaded, ever: the server checks the
directory at start-up (townhall.cli) and refuses to start with one line that says
what is wrong, rather than starting a recognizer per space that dies on its first
word. The layouts are those the engines' own distributions unpack to.
"""

from __future__ import annotations

import importlib.util
from enum import StrEnum
from pathlib import Path


class ModelKind(StrEnum):
    POCKETSPHINX = "pocketsphinx"
    VOSK = "vosk"
    FASTER_WHISPER = "faster-whisper"


ENGINE_PACKAGE = {
    ModelKind.POCKETSPHINX: ("pocketsphinx", "pocketsphinx"),
    ModelKind.VOSK: ("vosk", "townhall[captions-vosk]"),
    ModelKind.FASTER_WHISPER: ("faster_whisper", "townhall[captions-whisper]"),
}
"""The module each engine imports, and what to install for it."""

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")
"""A CTranslate2 conversion of Whisper (`ct2-transformers-converter --copy_files
tokenizer.json`); without tokenizer.json faster-whisper would fetch one at run time."""
VOSK_MODEL_FILES = ("am/final.mdl", "final.mdl")
VOSK_GRAPHS = ("graph/HCLG.fst", "HCLG.fst", "graph/HCLr.fst", "HCLr.fst")
VOSK_FEATURES = ("conf/mfcc.conf", "mfcc.conf")


class ModelDirError(ValueError):
    """The directory cannot serve as a captions model; the message says why."""


def _has_any(path: Path, names: tuple[str, ...]) -> bool:
    return any((path / name).is_file() for name in names)


def pocketsphinx_files(path: Path) -> dict[str, str] | None:
    """Decoder paths of a directory laid out like pocketsphinx's own (an acoustic model
    folder holding `mdef`, a language model `*.lm.bin`, a dictionary `*.dict`)."""
    entries = sorted(path.iterdir())
    acoustic = [e for e in entries if (e / "mdef").is_file()]
    language = [e for e in entries if e.name.endswith(".lm.bin") and "phone" not in e.name]
    dictionary = [e for e in entries if e.name.endswith(".dict")]
    if not (acoustic and language and dictionary):
        return None
    return {"hmm": str(acoustic[0]), "lm": str(language[0]), "dict": str(dictionary[0])}


def detect_model(model_dir: str) -> ModelKind:
    """The engine a model directory is for; empty is pocketsphinx's bundled English."""
    if not model_dir:
        return ModelKind.POCKETSPHINX
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelDirError(f"{model_dir} is not a directory")
    if (path / "model.bin").is_file():
        missing = [name for name in WHISPER_FILES if not (path / name).is_file()]
        if missing:
            raise ModelDirError(
                f"{model_dir} looks like a faster-whisper (CTranslate2) model but has no "
                f"{', '.join(missing)} (convert with --copy_files tokenizer.json; nothing is "
                "downloaded at run time)"
            )
        return ModelKind.FASTER_WHISPER
    if _has_any(path, VOSK_MODEL_FILES):
        if not _has_any(path, VOSK_GRAPHS):
            raise ModelDirError(
                f"{model_dir} looks like a Vosk model but has no decoding graph "
                "(graph/HCLG.fst, or HCLr.fst with Gr.fst)"
            )
        if not _has_any(path, VOSK_FEATURES):
            raise ModelDirError(f"{model_dir} looks like a Vosk model but has no conf/mfcc.conf")
        return ModelKind.VOSK
    if pocketsphinx_files(path) is not None:
        return ModelKind.POCKETSPHINX
    raise ModelDirError(
        f"{model_dir} is not a captions model directory: expected a pocketsphinx model "
        "(an acoustic model folder with mdef, a *.lm.bin and a *.dict), a Vosk model "
        "(am/final.mdl, graph/, conf/) or a faster-whisper model (model.bin, config.json, "
        "tokenizer.json)"
    )


def check_model(model_dir: str) -> ModelKind:
    """`detect_model`, and the engine's library must be installed."""
    kind = detect_model(model_dir)
    module, install = ENGINE_PACKAGE[kind]
    if importlib.util.find_spec(module) is None:
        raise ModelDirError(
            f"{model_dir} is a {kind.value} model but the {module} package is not "
            f"installed (pip install '{install}')"
        )
    return kind
