"""A faster-whisper model directory made here, since none can be had from PyPI, npm or
Debian: CTranslate2's own Whisper spec with one tiny random layer each side and a
byte-level tokenizer with Whisper's special tokens. It knows no words: its final layer
norm is pinned so that it says `SAID` over and over, whatever it hears. What it has is
every file and call a real model has (model.bin, config.json, vocabulary.json,
tokenizer.json; faster-whisper's feature extraction, encoder, decoder and tokenizer),
so the engine adapter runs for real, offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SAID = "h"
WIDTH, FFN_WIDTH, HEADS, MELS = 64, 128, 2, 80
ENCODER_POSITIONS, DECODER_POSITIONS = 1500, 448
"""Whisper's 30 s window (1500 frames after the strided conv) and its decoder length."""
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
]  # fmt: skip
TIMESTAMP_TOKENS = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]


Vector = npt.NDArray[np.float32]


def _norm(layer_norm: Any, gamma: Vector, beta: Vector) -> None:
    layer_norm.gamma, layer_norm.beta = gamma, beta


def write_tiny_whisper(directory: Path) -> Path:
    from ctranslate2.specs import whisper_spec
    from tokenizers.pre_tokenizers import ByteLevel

    rng = np.random.default_rng(0)

    def weights(*shape: int) -> Vector:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    ones, zeros = np.ones(WIDTH, np.float32), np.zeros(WIDTH, np.float32)

    def linear(spec: Any, rows: int, columns: int) -> None:
        spec.weight = weights(rows, columns)
        spec.bias = np.zeros(rows, np.float32)

    def attention(spec: Any, self_attention: bool) -> None:
        _norm(spec.layer_norm, ones, zeros)
        layers = spec.linear
        if self_attention:  # fused queries, keys and values; then the output
            linear(layers[0], 3 * WIDTH, WIDTH)
            linear(layers[1], WIDTH, WIDTH)
        else:  # queries; fused keys and values of the encoder's output; the output
            linear(layers[0], WIDTH, WIDTH)
            linear(layers[1], 2 * WIDTH, WIDTH)
            linear(layers[2], WIDTH, WIDTH)

    def feed_forward(spec: Any) -> None:
        _norm(spec.layer_norm, ones, zeros)
        linear(spec.linear_0, FFN_WIDTH, WIDTH)
        linear(spec.linear_1, WIDTH, FFN_WIDTH)

    alphabet = sorted(ByteLevel.alphabet())
    tokens = alphabet + SPECIAL_TOKENS + TIMESTAMP_TOKENS
    spec = whisper_spec.WhisperSpec(1, HEADS, 1, HEADS)
    encoder, decoder = spec.encoder, spec.decoder
    encoder.conv1.weight, encoder.conv1.bias = weights(WIDTH, MELS, 3), zeros
    encoder.conv2.weight, encoder.conv2.bias = weights(WIDTH, WIDTH, 3), zeros
    encoder.position_encodings.encodings = weights(ENCODER_POSITIONS, WIDTH)
    _norm(encoder.layer_norm, ones, zeros)
    for layer in encoder.layer:
        attention(layer.self_attention, True)
        feed_forward(layer.ffn)
    decoder.embeddings.weight = weights(len(tokens), WIDTH)
    decoder.position_encodings.encodings = weights(DECODER_POSITIONS, WIDTH)
    for layer in decoder.layer:
        attention(layer.self_attention, True)
        attention(layer.attention, False)
        feed_forward(layer.ffn)
    steady = weights(WIDTH) + 0.5
    _norm(decoder.layer_norm, zeros.copy(), steady)  # the same output at every step
    projection = weights(len(tokens), WIDTH)
    projection[tokens.index(SAID)] = steady * (20 / float(steady @ steady))
    decoder.projection.weight = projection
    spec.register_vocabulary(tokens)
    config = spec.config
    config.suppress_ids, config.lang_ids, config.alignment_heads = [], [], [(0, 0)]
    config.suppress_ids_begin = [tokens.index("<|endoftext|>")]
    directory.mkdir(parents=True, exist_ok=True)
    spec.validate()
    spec.optimize()
    spec.save(str(directory))
    _write_tokenizer(directory / "tokenizer.json", alphabet, SPECIAL_TOKENS + TIMESTAMP_TOKENS)
    return directory


def _write_tokenizer(path: Path, alphabet: list[str], special: list[str]) -> None:
    """A byte-level BPE without merges: every byte its own token, then the specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: index for index, char in enumerate(alphabet)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(path))
