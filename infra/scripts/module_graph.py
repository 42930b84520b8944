#!/usr/bin/env python3
"""The module graph of the core crate (shared/src) and its import cycles.

Reads every module file under shared/src and records an edge A -> B when A names B
through a path: `crate::b::...`, `super::...`, `self::...`, or a child module's name
(`pub use queue::Queue` in a mod.rs). Declaring a child (`mod x;`) is not an edge; a
re-export of a child is. Inline `#[cfg(test)] mod tests { ... }` blocks are left out
(tests may reach anywhere). A path is resolved to the longest module it names, so
`crate::rules::engine::plan_envelope` is an edge to `rules::engine`.

    python3 infra/scripts/module_graph.py            # cycles; exit 1 if any
    python3 infra/scripts/module_graph.py --edges    # also every edge, module by module
    python3 infra/scripts/module_graph.py --dot      # the graph for graphviz

Run from anywhere; CI runs it (stage `structure` of infra/scripts/test.sh).
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "src")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_files(root):
    """{module path ("" for the crate root, "a::b" otherwise): file}"""
    mods = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            mods["::".join(parts)] = path
    return mods


def strip(src):
    """Source without comments, string literals and inline test modules."""
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", src):
        if m.start() < i:
            continue
        out.append(src[i : m.start()])
        depth, j = 1, m.end()
        while j < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[j], 0)
            j += 1
        i = j
    out.append(src[i:])
    return "".join(out)


def expand_groups(src):
    """`a::{b::c, d}` -> `a::b::c a::d` (one level of braces, enough for `use` lines)."""
    pattern = re.compile(r"((?:" + IDENT + r"::)+)\{([^{}]*)\}")
    while True:
        new = pattern.sub(lambda m: " ".join(m.group(1) + p.strip() for p in m.group(2).split(",") if p.strip()), src)
        if new == src:
            return src
        src = new


def edges(mods):
    names = set(mods)
    graph = {}
    for mod, path in mods.items():
        here = mod.split("::") if mod else []
        children = {n.split("::")[-1] for n in names if n and "::".join(n.split("::")[:-1]) == mod}
        src = expand_groups(strip(open(path, encoding="utf-8").read()))
        deps = set()
        for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r")((?:::" + IDENT + r")+)", src):
            head, rest = m.group(1), m.group(2).split("::")[1:]
            if head == "crate":
                segs = rest
            elif head in ("super", "self"):
                base = list(here) if path.endswith(("mod.rs", "lib.rs")) or head == "self" else list(here)
                if head == "super":
                    base = base[:-1]
                    while rest and rest[0] == "super":
                        base, rest = base[:-1], rest[1:]
                segs = base + rest
            elif head in children:
                segs = here + [head] + rest
            else:
                continue
            while segs and "::".join(segs) not in names:
                segs = segs[:-1]
            target = "::".join(segs)
            if segs and target != mod:
                deps.add(target)
        graph[mod] = deps
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(argv):
    graph = edges(module_files(ROOT))
    graph.pop("", None)  # lib.rs only declares the folders
    for deps in graph.values():
        deps.discard("")
    if "--dot" in argv:
        print("digraph shared {")
        for mod in sorted(graph):
            for dep in sorted(graph[mod]):
                print(f'  "{mod}" -> "{dep}";')
        print("}")
        return 0
    if "--edges" in argv:
        for mod in sorted(graph):
            print(f"{mod} -> {', '.join(sorted(graph[mod])) or '(nothing)'}")
    found = cycles(graph)
    for comp in sorted(found, key=len, reverse=True):
        print(f"import cycle of {len(comp)} modules: {', '.join(comp)}")
        for mod in comp:
            inside = sorted(d for d in graph[mod] if d in comp)
            print(f"  {mod} -> {', '.join(inside)}")
    print(f"{len(graph)} modules, {sum(len(d) for d in graph.values())} edges, {len(found)} cycles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
