"""Where tool search's memory goes: RSS after each step of loading it into a hub process.

    .venv/bin/python bench/toolsearch/memory_steps.py [--tools 700]

Imports the hub's modules first (what `onemcp serve` has loaded anyway), then numpy, onnxruntime,
the transformer, the index of the first servers up to `--tools` tools, their vectors and a few
searches, printing the growth of each step; `malloc_trim` runs before each reading so freed pages
do not count. The same growth `evaluate.py` reports as one figure.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "src"))
sys.path.insert(0, str(HERE))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no /proc/self/status: Linux only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=700)
    opts = parser.parse_args()
    import evaluate

    servers, _ = evaluate.load(HERE / "data")
    kept: dict[str, list[dict[str, object]]] = {}
    for server, tools in servers.items():
        if sum(len(t) for t in kept.values()) + len(tools) > opts.tools:
            break
        kept[server] = tools
    named = evaluate.hub_tools(kept)
    for module in ("onemcp.cli.main", "onemcp.http.server", "onemcp.hub.core"):
        importlib.import_module(module)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    first = last = rss_mb()

    def step(name: str) -> None:
        nonlocal last
        libc.malloc_trim(0)
        now = rss_mb()
        print(f"{name:24s} +{now - last:5.1f} MB   total +{now - first:5.1f} MB")
        last = now

    import numpy  # noqa: F401

    step("numpy")
    import onnxruntime  # noqa: F401

    step("onnxruntime")
    from onemcp.search import deep, index, kinds

    kinds.gazetteer()
    step("search modules, kinds")
    transformer = deep.load()
    if transformer is None:
        raise SystemExit("the transformer did not load")
    step("transformer")
    with tempfile.TemporaryDirectory() as cache:
        idx = index.SearchIndex(Path(cache), model=None, transformer=transformer)
        for server, tools in named.items():
            idx.update(server, tools)
        step(f"index of {len(idx)} tools")
        idx.fill_deep()
        step("transformer vectors")
        for query in ("send an email", "create a jira ticket", "what time is it in tokyo"):
            idx.search(query, limit=5)
        step("three searches")
        idx.cache.close()


if __name__ == "__main__":
    main()
