"""The plain-Python WordPiece tokenizer gives the ids the models were trained on."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from onemcp.search import wordpiece
from onemcp.search.embed import DATA

VOCAB = DATA / "vocab.txt"
TOKENIZER = DATA / "tokenizer.json"  # what the models were trained with (`tokenizers`)
BENCH = Path(__file__).resolve().parents[2] / "bench" / "toolsearch" / "data"
# Blocks whose characters' categories have not changed across the Unicode versions of Python's
# unicodedata and of the `tokenizers` package's tables (newer additions may differ: see wordpiece.py).
BLOCKS = [
    (0x00, 0x250),  # controls, Latin-1, Latin Extended-A/B
    (0x370, 0x3FF),  # Greek
    (0x400, 0x4FF),  # Cyrillic
    (0x5D0, 0x5EA),  # Hebrew letters
    (0x2000, 0x205F),  # general punctuation, spaces
    (0x20A0, 0x20BF),  # currency
    (0x3000, 0x303F),  # CJK punctuation
    (0x3041, 0x3096),  # Hiragana
    (0x4E00, 0x4FFF),  # CJK ideographs
    (0xAC00, 0xAFFF),  # Hangul
    (0xFF01, 0xFF5E),  # full-width forms
    (0x1F300, 0x1F5FF),  # pictographs
]
EDGES = [
    "",
    "   ",
    "Hello, World!",
    "ΟΔΟΣ Σ",  # final sigma: lower-cased one character at a time
    "İstanbul",  # lower-cases to i + combining dot, after accents are stripped
    "ﬁle ﬃ",  # ligatures are not decomposed by NFD
    "e\u0301 café naïve",
    "x\u0085y a\x0bb c\x00d e\ufffdf",  # control characters go, whatever else they are
    "\u00a0nbsp\u3000ideographic\u2003em",
    "zero\u200bwidth\u200cjoiner",
    "a" * 100,
    "a" * 101,
    "list_s3_buckets get-Object.v2 path/to/file.txt",
    "東京の天気を教えて",
]


def test_known_ids() -> None:
    tokenizer = wordpiece.load(VOCAB)
    assert tokenizer.encode("Hello, World!") == [101, 7592, 1010, 2088, 999, 102]
    assert tokenizer.encode("Hello, World!", special=False) == [7592, 1010, 2088, 999]
    assert tokenizer.encode("list_s3_buckets") == [101, 2862, 1035, 1055, 2509, 1035, 13610, 2015, 102]
    assert tokenizer.encode("Créer") == [101, 27831, 2099, 102]  # accent stripped: "creer" in pieces
    assert tokenizer.encode("x" * 101, special=False) == [100]  # longer than a word may be: [UNK]
    assert tokenizer.encode("東京", special=False) == [1879, 1755]  # each ideograph a word


def test_a_word_with_no_pieces_is_unknown() -> None:
    tokenizer = wordpiece.WordPiece(wordpiece.Vocabulary.of({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "ab": 3, "##c": 4}))
    assert tokenizer.encode("abc ab", special=False) == [3, 4, 3]
    assert tokenizer.encode("abd ab", special=False) == [0, 3]  # "d" is no piece: the whole word


def test_the_vocabulary_file_is_the_trained_tokenizers() -> None:
    config = json.loads(TOKENIZER.read_text())
    assert config["model"]["type"] == "WordPiece"
    assert config["model"]["continuing_subword_prefix"] == "##"
    assert config["model"]["max_input_chars_per_word"] == wordpiece.MAX_WORD
    assert config["model"]["unk_token"] == wordpiece.UNK
    assert config["normalizer"] == {
        "type": "BertNormalizer",
        "clean_text": True,
        "handle_chinese_chars": True,
        "strip_accents": None,
        "lowercase": True,
    }
    trained = config["model"]["vocab"]
    lines = VOCAB.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert dict(zip(lines[:-1], range(len(lines) - 1), strict=True)) == trained
    vocab = wordpiece.load(VOCAB)._vocab
    assert len(vocab) == len(trained)
    assert all(vocab.get(word) == id_ for word, id_ in trained.items())


def test_lookups_of_words_not_in_the_vocabulary_find_nothing() -> None:
    vocab = wordpiece.Vocabulary.of({"[UNK]": 0, "a": 1, "ab": 2, "é": 3})
    assert [vocab.get(w) for w in ("a", "ab", "é", "b", "", "abc", "e", "[unk]")] == [
        1,
        2,
        3,
        None,
        None,
        None,
        None,
        None,
    ]
    with pytest.raises(ValueError, match=r"0 \.\. n - 1"):
        wordpiece.Vocabulary.of({"a": 1})


def test_not_a_wordpiece_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[CLS]\n[SEP]\n")  # no [UNK]
    with pytest.raises(ValueError, match="WordPiece"):
        wordpiece.load(path)
    path.write_bytes(b"[UNK]\n\xff\n")
    with pytest.raises(ValueError, match="WordPiece"):
        wordpiece.load(path)


def _texts() -> list[str]:
    texts = list(EDGES)
    for path in sorted((BENCH / "servers").glob("*.json")):
        for tool in json.loads(path.read_text())["tools"]:
            texts += [tool["name"], tool.get("description") or "", json.dumps(tool.get("inputSchema", {}))]
    for path in sorted((BENCH / "train").glob("*.jsonl")):
        texts += [json.loads(line)["query"] for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(7)
    for _ in range(3000):
        texts.append("".join(chr(rng.randint(*rng.choice(BLOCKS))) for _ in range(rng.randint(1, 40))))
    return texts


def test_same_ids_as_the_tokenizers_package() -> None:
    """Id for id with the Rust tokenizer the models were trained with, on every tool text and request."""
    tokenizers = pytest.importorskip("tokenizers")
    reference = tokenizers.Tokenizer.from_file(str(TOKENIZER))
    reference.no_padding()
    reference.no_truncation()
    ours = wordpiece.load(VOCAB)
    texts = _texts()
    assert len(texts) > 5000
    differ = [t for t in texts if reference.encode(t).ids != ours.encode(t)]
    differ += [t for t in texts if reference.encode(t, add_special_tokens=False).ids != ours.encode(t, special=False)]
    assert differ == []
