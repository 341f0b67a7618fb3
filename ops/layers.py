#!/usr/bin/env python3
"""Checks the module layering of the `server` crate (issue 20, docs/ARCHITECTURE.md).

Each top-level module of server/src sits on one layer of LAYERS (bottom first). A
module may use modules of its own layer or below; a use of a module above is an
*upward arrow*. Uses are `crate::<module>` paths in code (comments and `#[cfg(test)]`
modules are not read). Cycles between modules are reported too.

KNOWN lists the upward arrows and cycles not cut yet: the check fails on any other,
and on a KNOWN entry that no longer occurs (so the list only shrinks). Run by
ops/test.sh; `ops/layers.py --graph` prints every module's uses.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server", "src")

# Bottom first. See docs/ARCHITECTURE.md, "Where does X live".
LAYERS = [
    # Foundations: errors, logs and metrics, the front door's connection handling,
    # what a server records for the command line, a test PKI.
    ["error", "telemetry", "connections", "settings", "dev", "i18n"],
    # Reading untrusted XML: the parser and its limits, the streamed source of a
    # staged body, cancellation, the refusal they answer with.
    ["xml"],
    # Tables and documents every domain uses: document profiles, mail outbox.
    ["documents", "mail"],
    # Registries: employers and their tokens, portal users.
    ["employers", "accounts"],
    # The filing lifecycle: submissions, intake, forwarding, the mobile channel's
    # host side, failed-attempt counting.
    ["submissions", "forwarding", "intake", "preregistrations", "failed_attempts"],
    # Compliance (officers, search, evidence, retention) and the log's peers.
    ["compliance", "cosigning", "witness", "sandbox"],
    # HTTP handlers.
    ["api", "portal"],
    # The router and its state.
    ["http"],
    # Composition: configuration, the app, start-up, the binary's commands.
    ["config", "app", "startup", "serve", "cli"],
]

# Arrows not cut yet: upward uses, and one use of each cycle within a layer, as
# "from -> to". Empty since issue 20 cut the last ones; an entry here is a debt
# with a note.
KNOWN: set[str] = set()


def modules():
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            mods.setdefault(top, []).append(path)
    return mods


def code_of(path):
    """The non-test code of `path`, comment lines dropped (ops/owners.py reads it too)."""
    if re.search(r"(^|/)(tests|testing|testkit|\w+_tests)\.rs$", path):
        return ""
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        text = text[:cut]
    return "\n".join(l for l in text.split("\n") if not l.strip().startswith("//"))


def uses(mods):
    edges = {m: set() for m in mods}
    for m, paths in mods.items():
        for path in paths:
            code = code_of(path)
            names = set(re.findall(r"crate::(\w+)", code))
            for group in re.findall(r"use crate::\{([^;]*)\};", code, re.S):
                names |= set(re.findall(r"(?:^|[\s,{])(\w+)(?=::|\s*[,}]|$)", group))
            edges[m] |= {n for n in names if n in mods and n != m}
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    mods = modules()
    edges = uses(mods)
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{m} -> {' '.join(sorted(edges[m]))}")
    layer = {m: i for i, names in enumerate(LAYERS) for m in names}
    problems = []
    unplaced = sorted(set(mods) - set(layer))
    if unplaced:
        problems.append(f"modules on no layer (add them to LAYERS): {', '.join(unplaced)}")
    upward = {
        f"{a} -> {b}"
        for a, bs in edges.items()
        for b in bs
        if a in layer and b in layer and layer[b] > layer[a]
    }
    for arrow in sorted(upward - KNOWN):
        problems.append(f"upward arrow {arrow} (a module uses one on a higher layer)")
    every = {f"{a} -> {b}" for a, bs in edges.items() for b in bs}
    for arrow in sorted(KNOWN - every):
        problems.append(f"{arrow} is listed in KNOWN but no longer occurs: remove it")
    for comp in cycles(edges):
        inner = {f"{a} -> {b}" for a in comp for b in edges[a] if b in comp}
        if not inner & KNOWN:
            problems.append(f"import cycle among {', '.join(comp)}")
    print(
        f"layers: {len(mods)} modules, {sum(map(len, edges.values()))} uses, "
        f"{len(upward)} upward ({len(KNOWN)} known, not cut yet)"
    )
    for p in problems:
        print(f"layers: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
