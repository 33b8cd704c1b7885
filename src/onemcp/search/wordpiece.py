"""BERT's uncased WordPiece tokenizer in plain Python: text to the ids both search models read.

Both models (`embed.py`, `deep.py`) were trained on ids from the `tokenizers` package loading
`data/tokenizer.json` (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] ... [SEP]). This module
gives the same ids, rule for rule, from that file's vocabulary written one word per line
(`data/vocab.txt`), and costs under 1 MB of memory where the Rust tokenizer costs about 13 MB
(its import and its two 30,522-word tables) and a Python dict about 3.5 MB (`Vocabulary`).
`tests/search/test_wordpiece.py` checks that the two files hold the same vocabulary and settings,
and compares the ids with `tokenizers`', id for id, when that package is installed. Owns text to
ids, nothing else.

The rules, in order: drop NUL, U+FFFD and control, format and private-use characters (tab, CR
and LF are whitespace), whitespace to a space; spaces around CJK ideographs; NFD and no nonspacing
marks (accents); lower case, character by character; split at whitespace and around every
punctuation character (Unicode P* and ASCII punctuation); each word to its longest vocabulary
pieces from the left, "##" before every piece but the first, [UNK] for a word that does not
split or is longer than 100 characters.
"""

from __future__ import annotations

import bisect
import functools
import unicodedata
from array import array
from collections.abc import Mapping
from pathlib import Path

MAX_WORD = 100  # characters: a longer word is [UNK] (the vocabulary's max_input_chars_per_word)
UNK = "[UNK]"
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


class Vocabulary:
    """word -> id over a vocabulary file's bytes (UTF-8, one word per line, the id its line number).

    Kept as four flat buffers: the file, where each line starts, the words' hashes sorted and their
    ids in that order; a lookup bisects the hashes (in C) and confirms the word in the file. A dict
    of the 30,522 words costs about 3.5 MB (a str and an int object each, and its tables), this
    0.7 MB, and no word objects are made at load beyond one at a time. Python's str hash is per
    process, so the order is computed at load (about 20 ms)."""

    def __init__(self, lines: bytes) -> None:
        import numpy as np

        count = lines.count(b"\n")
        self._file = lines
        self._starts = array("i", [0])
        hashes = np.empty(count, dtype=np.int64)
        start = 0
        for i in range(count):
            end = lines.index(b"\n", start)
            hashes[i] = hash(lines[start:end].decode())
            start = end + 1
            self._starts.append(start)
        order = np.argsort(hashes, kind="stable")
        self._hashes = array("q", hashes[order].tobytes())
        self._ids = array("i", order.astype(np.int32).tobytes())

    @classmethod
    def of(cls, words: Mapping[str, int]) -> Vocabulary:
        """From word -> id, the ids 0 .. len - 1."""
        ordered = sorted(words, key=words.__getitem__)
        if [words[word] for word in ordered] != list(range(len(ordered))):
            raise ValueError("vocabulary ids are not 0 .. n - 1")
        return cls("".join(f"{word}\n" for word in ordered).encode())

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, word: str) -> int | None:
        h = hash(word)
        i = bisect.bisect_left(self._hashes, h)
        while i < len(self._hashes) and self._hashes[i] == h:  # equal hashes: the words decide
            id_ = self._ids[i]
            if self._file[self._starts[id_] : self._starts[id_ + 1] - 1] == word.encode():
                return id_
            i += 1
        return None

    def __getitem__(self, word: str) -> int:
        found = self.get(word)
        if found is None:
            raise KeyError(word)
        return found


class WordPiece:
    """Token ids for texts, from a WordPiece vocabulary (word -> id)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self._vocab = vocab
        self._unk = vocab[UNK]
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
    """The tokenizer of the vocabulary file `path` (vocab.txt: one word per line), once per process."""
    try:
        return WordPiece(Vocabulary(path.read_bytes()))
    except (KeyError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a BERT WordPiece vocabulary: {exc}") from exc


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
