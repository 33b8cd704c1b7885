"""The transformer encoder: it loads from the package, encodes unit vectors, refuses a damaged file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from onemcp.search import deep


def test_the_shipped_transformer_loads_and_encodes_unit_vectors() -> None:
    model = deep.load()
    assert model is not None
    vectors = model.encode(["what time is it in Tokyo", "Get the current time in a timezone", ""])
    assert vectors.shape == (3, deep.DIMS)
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-4)
    alone = model.encode(["Get the current time in a timezone"])[0]
    assert float(alone @ vectors[1]) > 0.99999  # a text is encoded alone: its vector never depends on its batch
    assert model.encode([]).shape == (0, deep.DIMS)


def test_spread_over_threads_the_vectors_are_the_same_in_the_same_order() -> None:
    model = deep.load()
    assert model is not None
    texts = [
        f"tool number {i}: {word} the {thing}" for i, (word, thing) in enumerate(zip("ab" * 9, "xyz" * 6, strict=True))
    ]
    spread = deep.encode_spread(model, texts, workers=2)
    assert spread.shape == (len(texts), deep.DIMS)
    assert np.array_equal(spread, model.encode(texts))  # concurrent runs of one session, identical vectors
    assert np.array_equal(deep.encode_spread(model, texts[:3], workers=2), model.encode(texts[:3]))  # too few: one


def test_meaning_not_words_decides_closeness() -> None:
    model = deep.load()
    assert model is not None
    query, weather, git = model.encode(
        ["will I need an umbrella tomorrow", "Get the weather forecast for a location", "Delete a git branch"]
    )
    assert float(query @ weather) > float(query @ git) + 0.1


def test_a_damaged_model_file_is_refused_and_search_goes_on_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = tmp_path / "model.onnx"
    shutil.copy(deep.MODEL_FILE, damaged)
    with damaged.open("r+b") as file:
        file.seek(4096)
        byte = file.read(1)
        file.seek(4096)
        file.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="onemcp.search"):
        assert deep.load_from(damaged, deep.TOKENIZER_FILE) is None
        assert deep.load_from(tmp_path / "absent.onnx", deep.TOKENIZER_FILE) is None
    assert "not the expected file" in caplog.text and "absent.onnx is missing" in caplog.text


def test_it_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEMCP_SEARCH_DEEP", "0")
    deep.load.cache_clear()
    try:
        assert deep.load() is None
    finally:
        monkeypatch.delenv("ONEMCP_SEARCH_DEEP")
        deep.load.cache_clear()
    assert deep.load() is not None
