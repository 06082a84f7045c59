#!/usr/bin/env python3
"""docs/development.md's list of src/ files, generated from the files themselves: one line
per file, its path and the first sentence of its header (the `//!` lines that open a .rs
file, the `//` lines that open a .cpp file).

    python3 scripts/file_list.py           # rewrite the list in docs/development.md
    python3 scripts/file_list.py --check   # exit 1 when the list is stale (with a diff)
                                           # or a file has no header (naming it)

Order: main.rs and lib.rs, then the units of src/ in the order lib.rs declares them
(`pub mod NAME;`, the bottom layer first). A folder's line is its mod.rs's header; its
files and subfolders follow, indented, in name order. The list is the block between the
`<!-- file-list:start ... -->` and `<!-- file-list:end -->` lines of docs/development.md;
the rest of the page is left as it is. To change a line, edit the file's header and run
this again.
"""
import argparse
import difflib
import os
import re
import sys
import textwrap

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
PAGE = os.path.join(ROOT, "docs", "development.md")
BLOCK = re.compile(r"(<!-- file-list:start[^\n]*-->\n)(.*?)(<!-- file-list:end -->)", re.S)
COLUMN = 26  # where the descriptions start, as in the hand-written list this replaced
WIDTH = 98
LISTED = (".rs", ".cpp")


def header(path):
    """The first paragraph of the comment that opens the file, as one line; None if none."""
    prefix = "//!" if path.endswith(".rs") else "//"
    lines = []
    for line in open(path, encoding="utf-8"):
        if not line.startswith(prefix):
            break
        text = line[len(prefix):].strip()
        if not text:
            break  # the end of the first paragraph
        lines.append(text)
    return " ".join(lines) or None


def first_sentence(text):
    """Up to the first full stop followed by a space or the end (not that of "e.g.",
    "i.e." or "et al."), or all of `text`."""
    end = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bal)\.(?=\s|$)", text)
    return text[: end.end()] if end else text


def units():
    """The names lib.rs declares, the bottom layer first."""
    lib = open(os.path.join(SRC, "lib.rs"), encoding="utf-8").read()
    return re.findall(r"^(?:pub(?:\([a-z]+\))? )?mod (\w+);", lib, flags=re.M)


def entries(folder, depth):
    """(label, file whose header describes it) for a folder and everything in it."""
    yield ("  " * depth + os.path.basename(folder) + "/") if depth else folder + "/", os.path.join(folder, "mod.rs")
    names = sorted(os.listdir(os.path.join(ROOT, folder)), key=lambda name: (os.path.splitext(name)[0], name))
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(os.path.join(ROOT, path)):
            yield from entries(path, depth + 1)
        elif name.endswith(LISTED) and name != "mod.rs":
            yield "  " * (depth + 1) + name, path


def listing():
    """(the block's lines, files without a header, files the list leaves out)."""
    found = [("src/main.rs", "src/main.rs"), ("src/lib.rs", "src/lib.rs")]
    for unit in units():
        if os.path.isdir(os.path.join(SRC, unit)):
            found += entries(f"src/{unit}", 0)
        else:
            found.append((f"src/{unit}.rs", f"src/{unit}.rs"))
    lines, missing = [], []
    for label, path in found:
        text = header(os.path.join(ROOT, path)) if os.path.exists(os.path.join(ROOT, path)) else None
        if text is None:
            missing.append(path)
            continue
        lead = label.ljust(COLUMN) if len(label) < COLUMN - 1 else label + "  "
        lines += textwrap.wrap(
            first_sentence(text), WIDTH, initial_indent=lead, subsequent_indent=" " * COLUMN, break_on_hyphens=False
        )
    described = {path for _, path in found}
    left_out = sorted(
        os.path.relpath(os.path.join(folder, name), ROOT)
        for folder, _, names in os.walk(SRC)
        for name in names
        if name.endswith(LISTED) and os.path.relpath(os.path.join(folder, name), ROOT) not in described
    )
    return lines, missing, left_out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/development.md's list is stale")
    args = parser.parse_args()
    lines, missing, left_out = listing()
    for path in missing:
        print(f"{path}: no header: open it with `//!` lines (`//` in a .cpp file) saying what it holds")
    for path in left_out:
        print(f"{path}: not under a unit that src/lib.rs declares, so not listed")
    page = open(PAGE, encoding="utf-8").read()
    block = BLOCK.search(page)
    if not block:
        sys.exit(f"{PAGE}: no <!-- file-list:start --> ... <!-- file-list:end --> lines")
    new = "```\n" + "\n".join(lines) + "\n```\n"
    if missing or left_out:
        sys.exit(1)
    if new == block.group(2):
        return
    if args.check:
        diff = difflib.unified_diff(block.group(2).splitlines(), new.splitlines(), "docs/development.md", "from the headers", lineterm="")
        print("\n".join(diff))
        print("docs/development.md's file list is stale: run `python3 scripts/file_list.py`")
        sys.exit(1)
    with open(PAGE, "w", encoding="utf-8") as out:
        out.write(page[: block.start(2)] + new + page[block.end(2) :])
    print("docs/development.md: file list rewritten")


if __name__ == "__main__":
    main()
