#!/usr/bin/env python3
"""The import graph of the library in src/: fails on an import cycle.

Reads every `crate::` path in src/**/*.rs (`use crate::{a::b, c};` groups included) and builds two
graphs: between top-level modules (src/<module>/ or src/<module>.rs) and between the files of one
top-level module (src/<module>/<file>.rs, through `super::` and `crate::<module>::` paths). Either
graph having a cycle is an error. The binary's files (main.rs and its modules cli.rs, commands.rs)
are not library modules: they import the library as `eesmm::`, and the compiler keeps the library
from importing them. Prints each module's imports, lowest layer first.

    python3 scripts/dev/check_layers.py        # exit 0: layered; exit 1: prints the offending edges
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
BINARY = {"cli", "commands", "main"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def use_tree_heads(tree):
    """First path segment of every path in a `use` tree body such as `{a::b, c::{d, e}}`."""
    tree = tree.strip()
    if tree.startswith("{"):
        heads, depth, start = [], 0, 1
        for i, ch in enumerate(tree):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if (ch == "," and depth == 1) or (ch == "}" and depth == 0):
                part = tree[start:i].strip()
                if part:
                    heads.append(part)
                start = i + 1
        return [h for part in heads for h in use_tree_heads(part)]
    return [re.split(r"::|\s", tree)[0]]


def referenced(text, prefix):
    """Names following `prefix::` in the file: in `use` trees and in inline paths."""
    names = set()
    for tree in re.findall(rf"\buse\s+{prefix}::(.*?);", text, flags=re.S):
        names.update(use_tree_heads(tree))
    names.update(re.findall(rf"\b{prefix}::([a-z_][a-z0-9_]*)", text))
    return {n for n in names if n not in ("self", "*")}


def location(path):
    """(top-level module, file within it or None) of a source file."""
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return rel.stem, None
    return rel.parts[0], rel.with_suffix("").parts[1]


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_order(graph):
    """Modules sorted so that each comes after everything it imports (the graph is acyclic)."""
    done, order = set(), []

    def visit(node):
        if node in done:
            return
        done.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        order.append(node)

    for node in sorted(graph):
        visit(node)
    return order


def main():
    modules, files = {}, {}
    for path in sorted(SRC.rglob("*.rs")):
        module, file = location(path)
        if module in BINARY:
            continue
        text = strip_comments(path.read_text())
        deps = modules.setdefault(module, set())
        deps.update(n for n in referenced(text, "crate") if n != module)
        if file is not None and file != "mod":
            inner = referenced(text, "super") | referenced(text, f"crate::{module}")
            files.setdefault(module, {}).setdefault(file, set()).update(
                n for n in inner if n != file
            )
    known = set(modules)
    modules = {m: {d for d in deps if d in known} for m, deps in modules.items()}

    errors = []
    for component in cycles(modules):
        errors.append("import cycle between top-level modules: " + " -> ".join(component))
    for module, graph in sorted(files.items()):
        graph = {f: {d for d in deps if d in graph} for f, deps in graph.items()}
        for component in cycles(graph):
            errors.append(f"import cycle inside {module}/: " + " -> ".join(component))

    if errors:
        print("\n".join(errors))
        return 1
    for module in layer_order(modules):
        print(f"{module:<10} -> {', '.join(sorted(modules[module])) or '(nothing)'}")
    print(f"ok: {len(modules)} top-level modules, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
