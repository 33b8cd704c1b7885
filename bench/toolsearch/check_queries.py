"""Validate data/queries.jsonl against the collected tools in data/servers/*.json.

    .venv/bin/python bench/toolsearch/check_queries.py            # check, print counts, exit 1 on any violation
    .venv/bin/python bench/toolsearch/check_queries.py --relabel  # rewrite each "style" from the word rule first

Word rule (DATA.md, "Paraphrase rule"): split text on every non-alphanumeric character and on camelCase
boundaries, lowercase, keep tokens of >= 3 characters that are not in STOPWORDS, then stem each with STEM_SUFFIXES.
A query is "paraphrased" when its words share nothing with the words of the name, title, annotations.title and
description of every expected tool; otherwise it is "direct".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
MIN_PARAPHRASED = 1 / 3  # the issue asks for at least a third

STOPWORDS = frozenset(
    {"the", "and", "for", "with", "from", "that", "this", "you", "your", "are", "was", "can", "all", "any", "use"}
    | {"using", "into", "its", "our", "get", "has", "have", "not", "but", "what", "how", "who", "when", "where"}
    | {"which"}
)
# Longest first; a suffix is cut only when at least 3 characters remain.
STEM_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_TOKEN = re.compile(r"[A-Za-z0-9]+")


def stem(word: str) -> str:
    for suffix, repl in STEM_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + repl
    return word


def words(text: str) -> set[str]:
    out: set[str] = set()
    for token in _TOKEN.findall(text):
        for part in _CAMEL.split(token):
            part = part.lower()
            if len(part) >= 3 and part not in STOPWORDS:
                out.add(stem(part))
    return out


def tool_words(tool: dict[str, Any]) -> set[str]:
    annotations = tool.get("annotations") or {}
    fields = [tool.get("name"), tool.get("title"), annotations.get("title"), tool.get("description")]
    return set().union(*(words(f) for f in fields if isinstance(f, str)))


def load_tools(servers_dir: Path) -> dict[str, dict[str, Any]]:
    tools: dict[str, dict[str, Any]] = {}
    for path in sorted(servers_dir.glob("*.json")):
        record = json.loads(path.read_text())
        for tool in record["tools"]:
            tools[f"{record['server']}/{tool['name']}"] = tool
    return tools


def shared_words(query: str, expected: list[str], tools: dict[str, dict[str, Any]]) -> set[str]:
    vocab = set().union(*(tool_words(tools[key]) for key in expected if key in tools))
    return words(query) & vocab


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=Path, default=DATA / "queries.jsonl")
    parser.add_argument("--servers", type=Path, default=DATA / "servers")
    parser.add_argument("--relabel", action="store_true", help='rewrite "style" from the word rule, then check')
    opts = parser.parse_args()

    tools = load_tools(opts.servers)
    servers = {key.split("/", 1)[0] for key in tools}
    lines = [line for line in opts.queries.read_text().splitlines() if line.strip()]
    queries: list[dict[str, Any]] = [json.loads(line) for line in lines]

    if opts.relabel:
        for q in queries:
            q["style"] = "direct" if shared_words(q["query"], q["expected"], tools) else "paraphrased"
        text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
        opts.queries.write_text(text)

    errors: list[str] = []
    ids = Counter(q.get("id") for q in queries)
    errors += [f"duplicate id {i!r}" for i, n in ids.items() if n > 1]
    texts = Counter(str(q.get("query", "")).strip().lower() for q in queries)
    errors += [f"duplicate query {t!r}" for t, n in texts.items() if n > 1]
    for q in queries:
        qid = q.get("id")
        if set(q) != {"id", "query", "expected", "style"}:
            errors.append(f"{qid}: keys must be id, query, expected, style; got {sorted(q)}")
            continue
        if not re.fullmatch(r"[qb]\d{3,}", str(qid)):  # b: the blind set (queries-blind.jsonl)
            errors.append(f"{qid}: id must look like q001 (or b001 in the blind set)")
        if not isinstance(q["query"], str) or not q["query"].strip():
            errors.append(f"{qid}: empty query")
        if not isinstance(q["expected"], list) or not q["expected"] or len(set(q["expected"])) != len(q["expected"]):
            errors.append(f"{qid}: expected must be a non-empty list without repeats")
            continue
        errors += [f"{qid}: expected tool {key!r} does not exist" for key in q["expected"] if key not in tools]
        shared = shared_words(q["query"], q["expected"], tools)
        if q["style"] == "paraphrased" and shared:
            errors.append(f"{qid}: paraphrased but shares {sorted(shared)} with its expected tools")
        elif q["style"] == "direct" and not shared:
            errors.append(f"{qid}: direct but shares no word with its expected tools (it is paraphrased)")
        elif q["style"] not in ("direct", "paraphrased"):
            errors.append(f"{qid}: style must be direct or paraphrased")

    styles = Counter(q.get("style") for q in queries)
    expected_tools = {key for q in queries for key in q.get("expected", [])}
    covered = {key.split("/", 1)[0] for key in expected_tools}
    ratio = styles["paraphrased"] / len(queries) if queries else 0.0
    if ratio < MIN_PARAPHRASED:
        errors.append(f"only {ratio:.0%} of queries are paraphrased (need >= {MIN_PARAPHRASED:.0%})")

    print(f"servers: {len(servers)}  tools: {len(tools)}")
    print(f"queries: {len(queries)}  direct: {styles['direct']}  paraphrased: {styles['paraphrased']} ({ratio:.0%})")
    print(f"distinct expected tools: {len(expected_tools)}  servers with a query: {len(covered)}/{len(servers)}")
    print(f"queries with more than one expected tool: {sum(len(q.get('expected', [])) > 1 for q in queries)}")
    for error in errors:
        print("ERROR", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
