#!/usr/bin/env python3
"""The shape of cellnets' code, for reviews: which top-level modules of src/ import
which (from `crate::` paths outside tests), any import cycles among them, and the
longest functions (tests excluded).

    python3 scripts/code_shape.py [--longest N]
"""
import argparse
import collections
import os
import re

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def modules():
    """(top-level module, path, source without its tests) of every .rs file."""
    for folder, _, files in os.walk(SRC):
        for name in sorted(files):
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                top = os.path.relpath(path, SRC).split(os.sep)[0].removesuffix(".rs")
                yield top, os.path.relpath(path, os.path.join(SRC, "..")), without_tests(path)


def without_tests(path):
    """The file's lines, less its `#[cfg(test)] mod tests { ... }` blocks."""
    kept, skipping = [], False
    for line in open(path).read().split("\n"):
        if line == "#[cfg(test)]":
            skipping = True
        elif skipping and line == "}":
            skipping = False
        elif not skipping:
            kept.append(line)
    return "\n".join(kept)


def imports():
    found = list(modules())
    names = {top for top, _, _ in found}
    graph = collections.defaultdict(set)
    for top, _, source in found:
        for target in re.findall(r"crate::([a-z_]+)", source):
            if target != top and target in names:
                graph[top].add(target)
    return graph


def cycles(graph):
    found, stack, done = set(), [], set()

    def visit(node):
        if node in stack:
            cycle = stack[stack.index(node):]
            turn = cycle.index(min(cycle))
            found.add(tuple(cycle[turn:] + cycle[:turn]))
            return
        if node in done:
            return
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            visit(target)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    return sorted(found)


def longest(count):
    lengths = []
    for _, path, source in modules():
        lines = source.split("\n")
        for i, line in enumerate(lines):
            start = re.match(r"^(\s*)(pub(\([a-z]+\))? )?fn (\w+)", line)
            if not start or line.rstrip().endswith(";"):
                continue  # a trait's method without a body
            closing = start.group(1) + "}"
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == closing), None)
            if end is not None:
                lengths.append((end - i + 1, f"{path}::{start.group(4)}"))
    return sorted(lengths, reverse=True)[:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--longest", type=int, default=10)
    args = parser.parse_args()
    graph = imports()
    for module in sorted(graph):
        print(f"{module:13} -> {', '.join(sorted(graph[module]))}")
    found = cycles(graph)
    print("cycles:", "; ".join(" -> ".join(c) for c in found) if found else "none")
    for lines, name in longest(args.longest):
        print(f"{lines:4} {name}")


if __name__ == "__main__":
    main()
