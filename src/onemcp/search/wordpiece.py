"""BERT's uncased WordPiece tokenizer in plain Python: text to the ids both search models read.

Both models (`embed.py`, `deep.py`) were trained on ids from the `tokenizers` package loading
`data/tokenizer.json` (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] ... [SEP]). This module
gives the same ids, rule for rule, from the same file, and costs about 3 MB of memory where the
Rust tokenizer costs about 13 MB (its import and its two 30,522-word tables): a quarter of the
search's memory budget (bench/toolsearch/RESULTS.md). `tests/search/test_wordpiece.py` compares
the two, id for id, when `tokenizers` is installed. Owns text to ids, nothing else.

The rules, in order: drop NUL, U+FFFD and control, format and private-use characters (tab, CR
and LF are whitespace), whitespace to a space; spaces around CJK ideographs; NFD and no nonspacing
marks (accents); lower case, character by character; split at whitespace and around every
punctuation character (Unicode P* and ASCII punctuation); each word to its longest vocabulary
pieces from the left, "##" before every piece but the first, [UNK] for a word that does not
split or is longer than 100 characters.
"""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import orjson

MAX_WORD = 100  # characters: a longer word is [UNK] (the vocabulary's max_input_chars_per_word)
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_DROPPED = frozenset(("Cc", "Cf", "Co", "Cs"))  # control, format, private use, surrogate (not unassigned)
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


class WordPiece:
    """Token ids for texts, from a WordPiece vocabulary (word -> id)."""

    def __init__(self, vocab: dict[str, int], unk: str = "[UNK]") -> None:
        self._vocab = vocab
        self._unk = vocab[unk]
        self.cls = vocab["[CLS]"]
        self.sep = vocab["[SEP]"]
        self._pieces = functools.lru_cache(maxsize=16384)(self._split)

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """The ids of `text`, between [CLS] and [SEP] when `special`."""
        ids = [self.cls] if special else []
        for word in _words(_normalize(text)):
            ids.extend(self._pieces(word))
        if special:
            ids.append(self.sep)
        return ids

    def _split(self, word: str) -> tuple[int, ...]:
        if len(word) > MAX_WORD:
            return (self._unk,)
        vocab = self._vocab
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = vocab.get(piece)
                if found is not None:
                    ids.append(found)
                    break
                end -= 1
            else:
                return (self._unk,)  # no piece fits: the whole word is unknown
            start = end
        return tuple(ids)


@functools.cache
def load(path: Path) -> WordPiece:
    """The tokenizer whose vocabulary is in `path` (a `tokenizers` JSON file), once per process."""
    config = orjson.loads(path.read_bytes())
    model = config["model"]
    if model.get("type") != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
        raise ValueError(f"{path}: not a WordPiece vocabulary with '##' continuations")
    if int(model.get("max_input_chars_per_word", MAX_WORD)) != MAX_WORD:
        raise ValueError(f"{path}: max_input_chars_per_word is not {MAX_WORD}")
    return WordPiece({str(k): int(v) for k, v in model["vocab"].items()}, str(model.get("unk_token", "[UNK]")))


def _normalize(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text.lower()  # nothing to clean, no accents, no final sigma
    text = "".join(_clean(c) for c in text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return "".join(c.lower() for c in text)  # one by one: str.lower() makes a final sigma 'ς'


@functools.lru_cache(maxsize=4096)
def _clean(c: str) -> str:
    if c in "\t\n\r":
        return " "
    if c == "\0" or c == "\ufffd" or unicodedata.category(c) in _DROPPED:
        return ""  # before whitespace: U+0085 and U+000B are control characters first
    if c.isspace():
        return " "
    code = ord(c)
    if any(low <= code <= high for low, high in _CJK):
        return f" {c} "
    return c


@functools.lru_cache(maxsize=4096)
def _punctuation(c: str) -> bool:
    return c in _ASCII_PUNCTUATION or unicodedata.category(c).startswith("P")


def _words(text: str) -> list[str]:
    """`text` split at whitespace (dropped) and around punctuation (kept, one character each)."""
    words: list[str] = []
    for chunk in text.split():
        if chunk.isalnum():
            words.append(chunk)
            continue
        start = 0
        for i, c in enumerate(chunk):
            if _punctuation(c):
                if i > start:
                    words.append(chunk[start:i])
                words.append(c)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words
