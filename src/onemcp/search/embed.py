"""The static embedding model: a vector per WordPiece token, a text's vector their weighted mean.

The model (`data/minilm-static.npz`, 30,522 tokens x 256 dims, int8 with a scale per row) was
distilled from all-MiniLM-L6-v2 and tuned to mimic its sentence embeddings of 120,000 package
summaries by `scripts/distill_model.py`; `data/vocab.txt` holds that model's vocabulary,
read by `wordpiece.py`. Encoding needs numpy, no network, and well under a millisecond for a query.
Each token's weight grows with its rank in the (frequency-ordered) vocabulary, so "the" and
"get" count less than "timezone" (Zipf weighting, as model2vec does). `load()` is None when the
model or its libraries are missing: search then runs on words alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onemcp.search import wordpiece

log = logging.getLogger("onemcp.search")
DATA = Path(__file__).parent / "data"
MODEL_ID = "minilm-tuned-256-v2"  # in every cache key: change it with the model or with what is embedded
FIRST_WORD = 1996  # BERT's uncased vocabulary: [PAD], [unusedN], characters, then words by frequency
MAX_TOKENS = 256


class StaticModel:
    def __init__(self, vectors: Any, scales: Any, tokenizer: wordpiece.WordPiece) -> None:
        import numpy as np

        self._np = np
        self.vectors = vectors  # int8, a row per token (kept quantized: 8 MB, not 31 MB of float32)
        self.tokenizer = tokenizer
        ranks = np.arange(len(vectors), dtype=np.float32) - FIRST_WORD
        zipf = np.where(ranks < 0, 0.1, np.log1p(np.maximum(ranks, 0) + 1.0)).astype(np.float32)
        self.weights = zipf * scales.astype(np.float32)  # a token's weight and its row's scale, in one
        self.dims = int(vectors.shape[1])

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit vectors (rows) for `texts`; a text of no known token gets a zero row."""
        np = self._np
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = np.asarray(self.tokenizer.encode(text, special=False)[:MAX_TOKENS], dtype=np.int64)
            if len(ids) == 0:
                continue
            weights = self.weights[ids]
            vector = weights @ self.vectors[ids].astype(np.float32)
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                out[row] = vector / norm
        return out


def load(data: Path = DATA) -> StaticModel | None:
    """The shipped model, or None (lexical search only) when it or numpy is missing."""
    try:
        import numpy as np
    except ImportError as exc:
        log.warning("tool search without embeddings: %s", exc)
        return None
    try:
        with np.load(data / "minilm-static.npz") as archive:
            vectors, scales = archive["vectors"], archive["scales"]
        tokenizer = wordpiece.load(data / "vocab.txt")
    except (OSError, KeyError, ValueError, Exception) as exc:  # a damaged or absent file: words alone
        log.warning("tool search without embeddings: cannot load the model: %s", exc)
        return None
    return StaticModel(vectors, scales, tokenizer)
