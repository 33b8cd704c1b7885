"""The tool-search benchmark: retrieval quality, tokens per turn, latency, build time, memory.

    .venv/bin/python bench/toolsearch/evaluate.py [--data DIR] [--lexical-only]

`--data` is a directory like `data/`: `servers/<server>.json` ({"server", "tools": [raw MCP tool
definitions]}) and `queries.jsonl` ({"id", "query", "expected": ["<server>/<tool>"], "style":
"direct"|"paraphrased"}); a held-out set in that shape runs the same way. Tools are indexed
under hub names `<server>__<tool>`, as onemcp serves them. Reports recall@1, recall@5 and MRR
(a query counts as found at the best rank of any of its expected tools), overall and per style;
tokens (o200k) of the full tools/list against the search-mode list plus one search result;
search latency p50/p95 over every query; index build time cold (empty cache) and warm (from
the disk cache); the process's RSS before and after the model and index, the process being a
hub's: the modules `onemcp serve` imports are loaded first, so the growth is what search adds to
a running hub. Timings are of this machine, printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(data: Path, queries_file: Path | None = None) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    servers = {}
    for path in sorted((data / "servers").glob("*.json")):
        doc = json.loads(path.read_text())
        servers[str(doc.get("server", path.stem))] = [t for t in doc["tools"] if isinstance(t, dict)]
    text = (queries_file or data / "queries.jsonl").read_text()
    queries = [json.loads(line) for line in text.splitlines() if line.strip()]
    return servers, queries


def reported_names(data: Path) -> dict[str, str]:
    """Each server's reported name and title (`server_info`), which the hub gives the index as `about`
    (hub/exposure.reported_name): product names in it count as the server's own (search/kinds.py)."""
    out = {}
    for path in sorted((data / "servers").glob("*.json")):
        doc = json.loads(path.read_text())
        info = doc.get("server_info") if isinstance(doc.get("server_info"), dict) else {}
        said = " ".join(str(info[key]) for key in ("name", "title") if isinstance(info.get(key), str))
        out[str(doc.get("server", path.stem))] = said
    return out


def fold_servers(path: Path) -> set[str]:
    """The servers a fold leaves out of training: names separated by commas, spaces or new lines; # comments."""
    return {name for line in path.read_text().splitlines() for name in line.split("#")[0].replace(",", " ").split()}


def hub_tools(servers: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {s: [{**t, "name": f"{s}__{t['name']}"} for t in tools] for s, tools in servers.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="tool search benchmark")
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument(
        "--queries", type=Path, help="another queries file over the same servers (data/queries-blind.jsonl)"
    )
    parser.add_argument("--lexical-only", action="store_true", help="BM25 alone (no embedding model)")
    parser.add_argument("--semantic-only", action="store_true", help="embeddings alone (no BM25)")
    parser.add_argument("--static-only", action="store_true", help="BM25 and the static model (no transformer)")
    parser.add_argument(
        "--with-static", action="store_true", help="the static model in the fusion beside the transformer (not shipped)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--misses", type=int, default=12, help="how many misses to print")
    parser.add_argument("--model", type=Path, help="a model directory other than the shipped one")
    parser.add_argument("--tools", type=int, help="index only the first servers, up to this many tools (~700)")
    parser.add_argument(
        "--transformer",
        type=Path,
        help="an ONNX transformer other than the shipped one (a fold model; not checked by sha256)",
    )
    parser.add_argument(
        "--held",
        type=Path,
        help="a fold file (data/fold-33.txt): score only the requests all of whose tools are on its servers;"
        " every server is still indexed",
    )
    args = parser.parse_args()
    servers, queries = load(args.data, args.queries)
    known = {f"{server}/{tool['name']}" for server, tools in servers.items() for tool in tools}
    unlabelled = [q.get("id", "?") for q in queries if not q.get("expected")]
    mislabelled = sorted({e for q in queries for e in q.get("expected") or [] if e not in known})
    if unlabelled or mislabelled:  # a label no tool has would count as a miss, silently
        parser.error(
            f"queries without 'expected': {', '.join(unlabelled[:10]) or 'none'}; labels that name no tool in "
            f"{args.data / 'servers'} (server/tool): {', '.join(mislabelled[:10]) or 'none'}"
        )
    if args.held:
        held = fold_servers(args.held)
        unknown = held - servers.keys()
        if unknown:
            parser.error(f"--held names servers not in {args.data / 'servers'}: {', '.join(sorted(unknown))}")
        queries = [q for q in queries if all(e.split("/", 1)[0] in held for e in q["expected"])]
    if args.tools:
        kept: dict[str, list[dict[str, Any]]] = {}
        for server, tools in servers.items():
            if sum(len(t) for t in kept.values()) + len(tools) > args.tools:
                break
            kept[server] = tools
        servers = kept
        queries = [q for q in queries if all(e.split("/", 1)[0] in kept for e in q["expected"])]
    named = hub_tools(servers)
    about = reported_names(args.data)
    total_tools = sum(len(t) for t in named.values())
    for module in ("onemcp.cli.main", "onemcp.http.server", "onemcp.hub.core"):
        importlib.import_module(module)  # a hub process's modules first: the RSS baseline is a hub without search

    rss_start = rss_mb()

    from onemcp.search import deep, embed, index
    from onemcp.search.meta import META_TOOLS, render_hits
    from onemcp.search.tokens import count_json, count_tokens, exact

    model_started = time.perf_counter()
    if args.lexical_only or args.static_only:
        transformer = None
    elif args.transformer:
        with args.transformer.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()  # this file, not the shipped one
        transformer = deep.load_from(args.transformer, deep.TOKENIZER_FILE, sha256=digest)
        if transformer is None:
            parser.error(f"cannot load the transformer {args.transformer}")
    else:
        transformer = deep.load()
    # as the hub: the static model only where the transformer is not (index.SearchIndex)
    static = not args.lexical_only and (transformer is None or args.with_static)
    model = (embed.load(args.model) if args.model else embed.load()) if static else None
    model_s = time.perf_counter() - model_started
    if args.semantic_only:
        index.Bm25.scores = lambda self, query: {}  # type: ignore[method-assign,assignment]
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        idx = index.SearchIndex(Path(cache), model=model, transformer=transformer)
        for server, tools in named.items():
            idx.update(server, tools, about=about.get(server, ""))
        cold = time.perf_counter() - started  # searchable from here: BM25 (and static model, if no transformer)
        started = time.perf_counter()
        if transformer is not None:
            idx.fill_deep()  # in the hub, a worker thread does this while searches use the static ranking
        cold_deep = time.perf_counter() - started
        idx.cache.close()
        started = time.perf_counter()
        warm_idx = index.SearchIndex(Path(cache), model=model, transformer=transformer)
        for server, tools in named.items():
            warm_idx.update(server, tools, about=about.get(server, ""))
        warm = time.perf_counter() - started
        assert warm_idx.embedded == 0 or model is None, warm_idx.embedded
        assert transformer is None or warm_idx.deep_ready, warm_idx.deep_pending()
        warm_idx.cache.close()
    rss_end = rss_mb()
    count_tokens("load the tokenizer")
    rss_tokenizer = rss_mb() - rss_end
    EXACT = exact()

    per_style: dict[str, list[tuple[int | None, float]]] = {}
    latencies = []
    misses = []
    definitions = {t["name"]: t for tools in named.values() for t in tools}
    idx.search("warm up", limit=5)
    for q in queries:
        wanted = {e.replace("/", "__", 1) for e in q["expected"]}
        started = time.perf_counter()
        hits = idx.search(q["query"], limit=20)
        latencies.append(time.perf_counter() - started)
        ranks = [i for i, h in enumerate(hits) if h.name in wanted]
        rank = ranks[0] if ranks else None
        for style in ("all", q.get("style", "direct")):
            per_style.setdefault(style, []).append((rank, 1.0 / (rank + 1) if rank is not None else 0.0))
        if rank is None or rank >= 5:
            misses.append((q["id"], q["query"], sorted(wanted), [h.name for h in hits[:3]]))

    biggest = max(named, key=lambda s: len(named[s]))
    change_ms = change_on_loop(idx, named, about.get(biggest, ""))
    full_tokens = count_json({"tools": [t for tools in named.values() for t in tools]})
    example = idx.search(queries[0]["query"], limit=5)
    result_text = render_hits(queries[0]["query"], [definitions[h.name] for h in example], total_tools)
    result = {"content": [{"type": "text", "text": result_text}]}
    search_list = count_json({"tools": META_TOOLS})
    per_turn = search_list + count_json(result)
    quality = {}
    for style, rows in per_style.items():
        n = len(rows)
        quality[style] = {
            "queries": n,
            "recall@1": sum(1 for r, _ in rows if r is not None and r < 1) / n,
            "recall@5": sum(1 for r, _ in rows if r is not None and r < 5) / n,
            "mrr": sum(m for _, m in rows) / n,
        }
    ms = sorted(x * 1000 for x in latencies)
    report = {
        "servers": len(named),
        "tools": total_tools,
        "semantic": model is not None,
        "transformer": transformer is not None,
        "quality": quality,
        "tokens": {
            "exact": EXACT,
            "full_list": full_tokens,
            "search_list": search_list,
            "search_result": count_json(result),
            "per_turn": per_turn,
            "reduction": 1 - per_turn / full_tokens,
        },
        "search_ms": {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))]},
        "build_s": {"model_load": model_s, "cold": cold, "cold_transformer": cold_deep, "warm": warm},
        "change_ms": change_ms,
        "rss_mb": {"start": rss_start, "end": rss_end, "growth": rss_end - rss_start, "tokenizer": rss_tokenizer},
    }
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    print(
        f"{report['servers']} servers, {total_tools} tools, {len(queries)} queries,"
        f" static model={model is not None}, transformer={transformer is not None}"
    )
    for style, q in quality.items():
        print(
            f"  {style:12} n={q['queries']:4}  recall@1 {q['recall@1']:.3f}  "
            f"recall@5 {q['recall@5']:.3f}  MRR {q['mrr']:.3f}"
        )
    t = report["tokens"]
    print(
        f"tokens: full list {t['full_list']}, search list {t['search_list']} + one result {t['search_result']}"
        f" = {t['per_turn']} per turn ({100 * t['reduction']:.1f}% less){'' if EXACT else ' (estimated)'}"
    )
    print(f"search: p50 {report['search_ms']['p50']:.2f} ms, p95 {report['search_ms']['p95']:.2f} ms")
    print(
        f"index build: models load {model_s:.2f} s, cold {cold:.2f} s (searchable),"
        f" transformer vectors {cold_deep:.2f} s more ({deep.WORKERS} threads), warm {warm:.3f} s"
    )
    print(
        f"one server's change ({change_ms['tools']} tools), median of 5: {change_ms['inline']:.1f} ms if indexed"
        f" in line, {change_ms['loop']:.1f} ms on the event loop as the hub does it (the rest on a worker thread)"
    )
    print(
        f"RSS: {rss_start:.0f} MB -> {rss_end:.0f} MB with model and index (+{rss_end - rss_start:.0f} MB);"
        f" the o200k token counter, loaded apart, +{rss_tokenizer:.0f} MB"
    )
    print(f"{len(misses)} queries not in the top 5, e.g.:")
    for qid, text, wanted, got in misses[: args.misses]:
        print(f"  {qid} {text!r}: want {wanted[:2]} got {got}")


def change_on_loop(idx: Any, named: dict[str, list[dict[str, Any]]], about: str = "") -> dict[str, float]:
    """The time one server's new tools list costs where the index lives, for the biggest server: in
    line (`update`, then what the next search builds first) against the hub's way (`prepare` and the
    builds on a worker thread; `install`, the snapshot for `settling` and `settle` on the event loop).
    Median of 5 of each; every vector is cached by then, so nothing is encoded."""
    from onemcp.search import index

    server = max(named, key=lambda s: len(named[s]))
    encode = idx.query_encoder()
    vector = encode("warm up") if encode is not None else None  # as the hub: encoded on a worker thread
    inline, loop = [], []
    for _ in range(5):
        started = time.perf_counter()
        idx.update(server, named[server], about=about)
        idx.search("warm up", limit=5, vector=vector)  # with what the first search after a change builds
        inline.append(time.perf_counter() - started)
        prepared = index.prepare(server, named[server], about)  # a worker thread's
        started = time.perf_counter()
        idx.install(prepared)
        work = idx.settling()
        on_loop = time.perf_counter() - started
        settled = work() if work is not None else None  # a worker thread's
        started = time.perf_counter()
        if settled is not None:
            idx.settle(settled)
        idx.search("warm up", limit=5, vector=vector)  # then a search as any other
        loop.append(on_loop + time.perf_counter() - started)
    return {
        "tools": len(named[server]),
        "inline": 1000 * statistics.median(inline),
        "loop": 1000 * statistics.median(loop),
    }


if __name__ == "__main__":
    main()
