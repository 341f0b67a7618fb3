"""Checks that every table has one owner (issue 20 §2, docs/ARCHITECTURE.md).

An owner is a top-level module of a crate (`server::submissions`,
`mobile_api::access`, `retention::ledger`, …): its files are the module's file or
directory. A table is *written* by the modules whose code holds an `INSERT INTO`,
`UPDATE` or `DELETE FROM` of it (comments and test code are not read). The check
fails when a table has more than one writer, unless KNOWN names that pair; and on a
KNOWN pair that no longer occurs (so the list only shrinks). Reads may span owners
(the compliance search and evidence export read the whole record).

Run by ops/test.sh; `ops/owners.py --list` prints every table's writers.
"""
import os
import re
import sys

from layers import code_of

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = {
    "server": "server/src",
    "mobile_api": "mobile-api/src",
    "retention": "retention/src",
    "sms_adapter": "sms-adapter/src",
}

# (table, writer) pairs allowed beside the table's owner, each with its reason.
KNOWN: set[tuple[str, str]] = set()

WRITE = re.compile(r"\b(?:INSERT INTO|UPDATE|DELETE FROM)\s+([a-z_][a-z0-9_]*)")


def writers():
    tables = {}
    for crate, src in CRATES.items():
        root = os.path.join(ROOT, src)
        for dirpath, _, files in os.walk(root):
            for f in files:
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, f)
                top = os.path.relpath(path, root).split(os.sep)[0].removesuffix(".rs")
                if top in ("lib", "main"):
                    top = "lib"
                owner = f"{crate}::{top}"
                for table in WRITE.findall(code_of(path)):
                    tables.setdefault(table, set()).add(owner)
    return tables


def main():
    tables = writers()
    if "--list" in sys.argv:
        for t in sorted(tables):
            print(f"{t}: {', '.join(sorted(tables[t]))}")
    problems = []
    seen = set()
    for table, owners in sorted(tables.items()):
        if len(owners) < 2:
            continue
        extra = {(table, o) for o in owners} & KNOWN
        seen |= extra
        if len(owners) - len(extra) > 1:
            problems.append(f"{table} is written by {', '.join(sorted(owners))}: give it one owner")
    for table, owner in sorted(KNOWN - seen):
        problems.append(f"KNOWN ({table}, {owner}) no longer occurs: remove it")
    for p in problems:
        print(f"owners: {p}", file=sys.stderr)
    print(
        f"owners: {len(tables)} tables written, "
        f"{sum(len(o) > 1 for o in tables.values())} by more than one module ({len(seen)} known)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
