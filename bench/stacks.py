"""Summarise a py-spy raw (collapsed stacks) profile of the hub: where the CPU goes.

    .venv/bin/python bench/stacks.py bench/results/profile/hub-pyspy.txt [--top 25]

Self time = samples whose innermost Python frame is the function (time in C code it
calls, such as orjson or uvloop's socket writes, counts as that caller's self time).
Inclusive = samples with the function anywhere on the stack. Library = the package of the
innermost frame.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

LIBS = ("onemcp", "uvicorn", "httpx", "httpcore", "h11", "anyio", "asyncio", "orjson", "sniffio", "logging")


def library(frame: str) -> str:
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    top = where.split("/", 1)[0]
    if top in LIBS:
        return top
    return "stdlib/other" if "/" not in where or where.startswith("<") else f"{top} (other)"


# Subsystems, first match wins: (label, text that must appear in some frame of the stack).
BUCKETS = (
    ("upstream HTTP client: httpx/httpcore/h11 (+ anyio below)", ("httpx/", "httpcore/", "h11/", "upstream/http.py")),
    ("upstream stdio transport", ("upstream/stdio.py",)),
    ("import machinery (failed imports at request time)", ("<frozen importlib",)),
)


def bucket(frames: list[str]) -> str:
    for label, needles in BUCKETS:
        if any(n in f for f in frames for n in needles):
            return label
    leaf = library(frames[-1])
    if leaf == "onemcp":
        return "onemcp's own code (self time)"
    if frames[-1].startswith("Runner.run ") or frames[-1].startswith("Server.run "):
        return "event loop in C (uvloop: epoll, socket reads/writes, callbacks)"
    if leaf == "uvicorn" or any("uvicorn/protocols" in f for f in frames):
        return "uvicorn (downstream HTTP server)"
    return f"other: {leaf}"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], top: int, match: str | None) -> str:
    if match:
        stacks = [(frames, n) for frames, n in stacks if any(match in f for f in frames)]
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    libs: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
        libs[library(frames[-1])] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{total} samples" + (f" with {match!r} on the stack" if match else "")]
    buckets: Counter[str] = Counter()
    for frames, n in stacks:
        buckets[bucket(frames)] += n
    out.append("\nby subsystem (first match: upstream client, stdio, imports, onemcp, loop, uvicorn):")
    out += [f"  {100 * n / total:5.1f}%  {b}" for b, n in buckets.most_common()]
    out.append("\nself time by library of the innermost frame:")
    out += [f"  {100 * n / total:5.1f}%  {lib}" for lib, n in libs.most_common()]
    out.append(f"\ntop {top} self time:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append(f"\ntop {top} inclusive (onemcp, uvicorn, httpx, httpcore, h11, anyio frames):")
    shown = [(f, n) for f, n in incl.most_common() if library(f) in LIBS[:6]]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in shown[:top]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only stacks containing this text (e.g. 'StreamableHttpTransport.send')")
    args = parser.parse_args()
    try:
        print(summarize(load(args.profile), args.top, args.match))
    except BrokenPipeError:  # piped into head
        sys.stderr.close()


if __name__ == "__main__":
    main()
