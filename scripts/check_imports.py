#!/usr/bin/env python3
"""Checks the import rule of ARCHITECTURE.md on src/: which top-level module
(a folder or a file under src/) may use which.

- No cycle between top-level modules (a `crate::x` path anywhere in a module's
  files counts as a use of `x`; `super::` stays inside the module).
- Nothing below the command layer uses `cli` (only `commands` and `cli` do).
- `records`, `settings`, `layout`, `pools` and `backoff` use no other
  module of the crate (they are what the others stand on).

    scripts/check_imports.py          prints the graph; exit 1 on a violation
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
LEAVES = {"records", "settings", "layout", "pools", "backoff", "shard"}
COMMAND_LAYER = {"commands", "cli"}


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def uses(text: str) -> set[str]:
    text = re.sub(r"//[^\n]*", "", text)  # comments (and doc comments)
    found = set(re.findall(r"\bcrate::(\w+)", text))
    # `use crate::{a, b::c}` groups
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
        found.update(re.findall(r"(?:^|,)\s*(\w+)", group))
    return found


def main() -> int:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.rs"):
        m = module_of(path)
        if m in ("lib", "main"):
            continue
        graph.setdefault(m, set()).update(u for u in uses(path.read_text()) if u != m)
    modules = set(graph)
    for m in graph:
        graph[m] &= modules
    problems = []
    for m, deps in sorted(graph.items()):
        if "cli" in deps and m not in COMMAND_LAYER:
            problems.append(f"{m} uses cli (only the command layer may)")
        if m in LEAVES and deps:
            problems.append(f"{m} must use no other module, uses {sorted(deps)}")
    # Cycles: depth-first search for a back edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                problems.append("cycle: " + " -> ".join(cycle))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    for m, deps in sorted(graph.items()):
        print(f"{m:>9} -> {', '.join(sorted(deps)) or '(nothing)'}")
    for p in problems:
        print(f"check_imports: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
