"""The embedding cache on disk (onemcp.search.cache): what it keeps, what it refuses to trust."""

from __future__ import annotations

import logging
import math
import struct
from pathlib import Path

import pytest

from onemcp.search.cache import EmbeddingCache


def vector(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def test_vectors_written_are_read_back_by_a_new_cache(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put({"a": vector(1, 2), "b": vector(3, 4)})
    cache.close()
    again = EmbeddingCache(tmp_path)
    assert again.get(["a", "b", "missing"], dims=2) == {"a": vector(1, 2), "b": vector(3, 4)}
    again.close()


def test_many_keys_are_read_in_chunks(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    items = {f"k{i}": vector(float(i)) for i in range(1200)}  # more than one IN (...) of 500
    cache.put(items)
    assert cache.get(list(items), dims=1) == items
    cache.close()


def test_rows_of_another_length_or_not_finite_are_not_trusted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put({"short": vector(1), "nan": vector(math.nan, 1), "inf": vector(math.inf, 1), "ok": vector(0, 1)})
    with caplog.at_level(logging.WARNING, logger="onemcp.search"):
        assert cache.get(["short", "nan", "inf", "ok"], dims=2) == {"ok": vector(0, 1)}
        cache.get(["nan"], dims=2)
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1  # said once, not per batch
    assert "3 vector(s)" in damaged[0].getMessage()
    cache.close()


def test_without_a_directory_nothing_is_kept() -> None:
    cache = EmbeddingCache(None)
    cache.put({"a": vector(1)})
    assert cache.get(["a"], dims=1) == {}
    cache.close()


def test_a_directory_that_cannot_be_made_leaves_a_memory_only_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="onemcp.search"):
        cache = EmbeddingCache(blocker / "cache")
    assert any("no embedding cache on disk" in r.getMessage() for r in caplog.records)
    cache.put({"a": vector(1)})
    assert cache.get(["a"], dims=1) == {}
    cache.close()
