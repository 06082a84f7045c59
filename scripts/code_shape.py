#!/usr/bin/env python3
"""The shape of cellnets' code, for reviews and CI: which folders of src/ import which
(from `crate::` paths, and `cellnets::` paths in main.rs, outside tests), any import
cycles among them or among the modules inside a folder, imports that run against the
layer order of lib.rs, and the longest functions (tests excluded).

    python3 scripts/code_shape.py [--longest N] [--modules] [--check]

A folder (or a single-file module) of src/ is a unit. lib.rs declares the units from
the bottom up; a unit may import only units declared before it. --check exits 1 when
an import runs the other way, the units form a cycle, or modules do (`super::`,
`self::` and `crate::` paths alike, a folder's mod.rs re-exporting its files included).
"""
import argparse
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def sources():
    """(unit, module path, file path, source without its tests) of every .rs file."""
    for folder, _, files in os.walk(SRC):
        for name in sorted(files):
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, SRC).removesuffix(".rs").split(os.sep)
                if parts[-1] == "mod":
                    parts.pop()
                unit = parts[0]
                if unit == "lib":
                    continue
                yield unit, "::".join(parts), os.path.relpath(path, os.path.join(SRC, "..")), without_tests(path)


def without_tests(path):
    """The file's lines, less its `#[cfg(test)] mod ... { ... }` blocks."""
    kept, skipping = [], False
    for line in open(path).read().split("\n"):
        if line == "#[cfg(test)]":
            skipping = True
        elif skipping and line == "}":
            skipping = False
        elif not skipping:
            kept.append(line)
    return "\n".join(kept)


def layer_order():
    """The units in the order lib.rs declares them: the bottom layer first."""
    lib = open(os.path.join(SRC, "lib.rs")).read()
    return re.findall(r"^pub mod (\w+);", lib, flags=re.M)


def referenced(source, root):
    """The first path segments after `root::`, including those of `root::{a, b::c}`."""
    found = set(re.findall(rf"\b{root}::([a-z_]+)\b", source))
    for group in re.findall(rf"\b{root}::\{{([^}}]*)\}}", source):
        found.update(re.findall(r"(?:^|,)\s*([a-z_]+)", group))
    return found


def imports(level):
    """unit -> {imported unit: the module paths that import it}; `level` 'modules'
    keys by module path instead of unit."""
    found = list(sources())
    units = {unit for unit, _, _, _ in found}
    graph = collections.defaultdict(lambda: collections.defaultdict(set))
    for unit, module, _, source in found:
        root = "cellnets" if unit == "main" else "crate"
        for target in referenced(source, root):
            if target != unit and target in units:
                graph[module if level == "modules" else unit][target].add(module)
    return graph


def module_graph():
    """module path -> {module paths it refers to}, each reference resolved to the
    module that defines what it names: the circles a unit graph cannot see, such as two
    files of one folder importing each other. An item a folder's mod.rs re-exports from
    one of its files (`pub use spec::InputShape`) counts as that file's."""
    found = [(module, source) for _, module, _, source in sources() if module != "main"]
    known = {module for module, _ in found}
    re_exported = {}  # "models::InputShape" -> "models::spec"
    for module, source in found:
        for child, items in re.findall(
            r"^pub use ([a-z_][a-z0-9_]*)::(\{[^}]*\}|\w+);", source, re.M
        ):
            for item in re.findall(r"\w+", items):
                re_exported[f"{module}::{item}"] = f"{module}::{child}"
    graph = collections.defaultdict(set)
    for module, source in found:
        here = module.split("::")
        is_folder = os.path.isfile(os.path.join(SRC, *here, "mod.rs"))
        parent = here[:-1]
        for prefix, chain, group in re.findall(
            r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)*)(?:::(\{[^}]*\}|[A-Z]\w*))?", source
        ):
            if not chain and not group:
                continue  # the word alone, or `self.` in a method
            base = {"crate": [], "super": parent, "self": here}[prefix]
            segments = base + [part for part in chain.split("::") if part]
            items = re.findall(r"[A-Za-z_]\w*(?:::\w+)*", group) if group else [""]
            for item in items:
                path = segments + [part for part in item.split("::") if part and part != "self"]
                target = longest_known(path, known)
                if target and len(path) > len(target.split("::")):
                    named = "::".join(path[: len(target.split("::")) + 1])
                    target = re_exported.get(named, target)
                if target and target != module:
                    graph[module].add(target)
        # A folder's mod.rs naming its own files: `pub use checks::{...}`.
        if is_folder:
            for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?use ([a-z_][a-z0-9_]*)::", source, re.M):
                target = "::".join(here + [child])
                if target in known:
                    graph[module].add(target)
    return graph


def longest_known(segments, known):
    for end in range(len(segments), 0, -1):
        candidate = "::".join(segments[:end])
        if candidate in known:
            return candidate
    return None


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


def against_layers(graph, order):
    """(unit, imported unit, importing modules) for each import of a unit declared
    later in lib.rs. main.rs sits above every layer."""
    rank = {unit: i for i, unit in enumerate(order)}
    wrong = []
    for unit, targets in graph.items():
        if unit == "main":
            continue
        for target, modules in targets.items():
            if unit not in rank or target not in rank or rank[target] > rank[unit]:
                wrong.append((unit, target, sorted(modules)))
    return sorted(wrong)


def longest(count):
    lengths = []
    for _, _, path, source in sources():
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
    parser.add_argument("--modules", action="store_true", help="also list each module's imports of other units")
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle or an import against the layers")
    args = parser.parse_args()
    order = layer_order()
    graph = imports("units")
    print("units, bottom layer first:", ", ".join(order))
    for unit in order + ["main"]:
        if unit in graph:
            print(f"{unit:10} -> {', '.join(sorted(graph[unit], key=order.index))}")
    if args.modules:
        modules = imports("modules")
        for module in sorted(modules):
            print(f"  {module:28} -> {', '.join(sorted(modules[module]))}")
    found = cycles(graph)
    print("cycles:", "; ".join(" -> ".join(c) for c in found) if found else "none")
    module_cycles = cycles(module_graph())
    print("module cycles:", "; ".join(" -> ".join(c) for c in module_cycles) if module_cycles else "none")
    found += module_cycles
    wrong = against_layers(graph, order)
    print("imports against the layers:", "none" if not wrong else "")
    for unit, target, modules in wrong:
        print(f"  {unit} -> {target} (from {', '.join(modules)})")
    for lines, name in longest(args.longest):
        print(f"{lines:4} {name}")
    if args.check and (found or wrong):
        sys.exit(1)


if __name__ == "__main__":
    main()
