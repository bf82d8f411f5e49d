#!/usr/bin/env python3
"""Checks src/ against the import table of ARCHITECTURE.md ("Which module may
import which"): which top-level module (a folder or a file under src/) may
use which.

- Every top-level module is a row of the table, and every module it uses is
  allowed by its row ("nothing", names in backticks, "every module above":
  the modules of the rows before it). A `crate::x` path anywhere in a
  module's files counts as a use of `x`; `super::` stays inside the module.
- No cycle between top-level modules.

The table is the rule: when the code needs a new import, the table says so
first (and a reader sees it), or CI fails.

    scripts/check_imports.py          prints the graph; exit 1 on a violation
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
SECTION = "## Which module may import which"


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


def allowed_by_table() -> dict[str, set[str]]:
    """Module -> the modules it may use, as ARCHITECTURE.md's table says."""
    text = ARCHITECTURE.read_text()
    if SECTION not in text:
        sys.exit(f"check_imports: ARCHITECTURE.md has no '{SECTION}' section")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    allowed: dict[str, set[str]] = {}
    above: set[str] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) != 2:
            continue
        left, right = cells
        modules = re.findall(r"`(\w+)`", left)
        if not modules:  # the header and its rule
            continue
        may = set(re.findall(r"`(\w+)`", right))
        if "every module above" in right:
            may |= above
        elif "nothing" not in right and not may:
            sys.exit(f"check_imports: ARCHITECTURE.md's row {line.strip()!r} says nothing readable")
        for m in modules:
            allowed[m] = may
        above |= set(modules)
    if not allowed:
        sys.exit("check_imports: ARCHITECTURE.md's import table has no rows")
    return allowed


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
    allowed = allowed_by_table()
    problems = []
    for m, deps in sorted(graph.items()):
        if m not in allowed:
            problems.append(f"{m} is not in ARCHITECTURE.md's import table")
            continue
        for d in sorted(deps - allowed[m]):
            problems.append(f"{m} uses {d}, which ARCHITECTURE.md's import table does not allow")
    for m in sorted(set(allowed) - modules):
        problems.append(f"ARCHITECTURE.md's import table names {m}, which src/ does not have")
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
