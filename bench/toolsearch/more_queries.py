"""Make `data/more/queries.jsonl`: the writers' requests about the 65 servers of `data/more/` as an evaluation set.

    .venv/bin/python bench/toolsearch/more_queries.py       # writes data/more/queries.jsonl
    .venv/bin/python bench/toolsearch/evaluate.py --data bench/toolsearch/data/more --tools 1100

The shipped transformer was never trained on these servers or these requests (`data/more/` is read by no
default training run: DATA.md), so for the shipped model they are requests about servers it never saw,
written by other writers than the evaluation sets' (up to four a tool: direct, in the user's own words, a
situation, a terse note or a non-expert's words). Each request's "style" is set by the same word rule as
`check_queries.py` ("paraphrased": no word in common with any of its tools), not by what its writer meant.
Only the writers' files (`group-U*.jsonl`) are read, not the generated `synthetic-new.jsonl`. A model trained
with `data/more/` makes this set in-sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import check_queries

MORE = Path(__file__).resolve().parent / "data" / "more"


def build() -> list[dict[str, object]]:
    tools = check_queries.load_tools(MORE / "servers")
    out: list[dict[str, object]] = []
    for path in sorted((MORE / "train").glob("group-U*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            request = json.loads(line)
            expected = request["expected"]
            if not all(name in tools for name in expected):
                raise SystemExit(f"{path.name}: a label names no collected tool: {expected}")
            shared = check_queries.shared_words(request["query"], expected, tools)
            out.append(
                {
                    "id": f"m{len(out) + 1:05d}",
                    "query": request["query"],
                    "expected": expected,
                    "style": "direct" if shared else "paraphrased",
                }
            )
    return out


def main() -> None:
    rows = build()
    (MORE / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    paraphrased = sum(row["style"] == "paraphrased" for row in rows)
    print(f"{len(rows)} requests, {paraphrased} paraphrased, in {MORE / 'queries.jsonl'}")


if __name__ == "__main__":
    main()
