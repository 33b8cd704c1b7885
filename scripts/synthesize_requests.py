"""Write synthetic training requests: each tool's name, its words said the way people say them.

For every collected tool (`bench/toolsearch/data/servers/` and `train-servers/`) whose name has at
least one word of the shipped lexicon (`onemcp/search/data/actions.toml`), one request: the name's
words in order, each lexicon word replaced by one of its everyday phrases chosen at random (seeded),
the others kept: `git_stash` -> "git save for later", `list_records` -> "list log entry". The requests
read badly on purpose: they teach the model the lexicon's phrases in the place of the words a tool
is named with, for servers and phrasings the hand-written training requests never cover. They use
no evaluation request and no description, only names and the lexicon.

Run by a maintainer when the lexicon or the collected servers change, before
`scripts/finetune_transformer.py` (which reads every `data/train/*.jsonl`, this file too; a fold
run with `--exclude-servers` drops the requests about the servers it leaves out, as for any file):

    python scripts/synthesize_requests.py            # writes bench/toolsearch/data/train/synthetic.jsonl
    python scripts/synthesize_requests.py --out F --seed 21 --per-tool 2   # two different ones a tool
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from onemcp.search.actions import phrases_of  # noqa: E402
from onemcp.search.text import words  # noqa: E402

DATA = ROOT / "bench" / "toolsearch" / "data"


def synthesize(folders: list[Path], seed: int, per_tool: int = 1) -> list[dict[str, object]]:
    """Up to `per_tool` different requests per tool with a lexicon word in its name, in file and
    tool order (fewer when its words have fewer ways to be said: a few draws more, then it stops)."""
    rng = random.Random(seed)
    found: list[dict[str, object]] = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            record = json.loads(path.read_text())
            server = record["server"]
            for tool in record["tools"]:
                name_words = words(tool["name"])
                said = [phrases_of(word) for word in name_words]
                if not any(said):
                    continue
                queries: list[str] = []
                for _ in range(per_tool + 2 * (per_tool - 1)):
                    query = " ".join(
                        rng.choice(choices) if choices else word for word, choices in zip(name_words, said, strict=True)
                    )
                    if query not in queries:
                        queries.append(query)
                    if len(queries) == per_tool:
                        break
                label = [f"{server}/{tool['name']}"]
                found.extend({"query": query, "expected": label, "style": "synthetic"} for query in queries)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DATA / "train" / "synthetic.jsonl")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--per-tool", type=int, default=1, help="different requests per tool, at most")
    opts = parser.parse_args()
    if opts.per_tool < 1:
        parser.error("--per-tool must be at least 1")
    found = synthesize([DATA / "servers", DATA / "train-servers"], opts.seed, opts.per_tool)
    opts.out.write_text("".join(json.dumps(request) + "\n" for request in found))
    print(f"{len(found)} synthetic requests -> {opts.out}")


if __name__ == "__main__":
    main()
