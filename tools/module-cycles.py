#!/usr/bin/env python3
"""Prints the use-graph among a crate's modules and its cycles.

    tools/module-cycles.py [--calls] [CRATE_DIR ...]   (default: crates/gantry-ecs crates/gantry-agent)

An edge A -> B means A's code (outside its `#[cfg(test)]` module) names B: a `use crate::B...`,
`use super::...` resolving to B, or a path `crate::B::...` in an expression. Parents' `mod`
declarations, and names from the crate root (lib.rs), are not edges. Exits 1 when there is a
cycle, so CI can run it.

With --calls, a call `.m(` of a method that another module defines on a type whose methods are
spread over modules (gantry-ecs's `impl ControlPlane`) is an edge too, marked `(calls)`: a
dependency no `use` shows. Those edges are informational: the operations of one `ControlPlane`
call each other freely (a cluster's Describe counts its services' tasks), and that web is not
what the rule is about.
"""

import re
import sys
from pathlib import Path

# Types whose inherent methods are spread over modules; a method call is an edge to its module.
SHARED_IMPL_TYPES = ("ControlPlane",)


def module_files(src: Path) -> dict[str, Path]:
    """Module path ("ops::tasks"; "crate" for lib.rs) -> file."""
    mods = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts == ["lib"] or parts == ["main"]:
            mods["crate"] = f
            continue
        if parts[-1] == "mod":
            parts = parts[:-1]
        mods["::".join(parts)] = f
    return mods


def strip(text: str) -> str:
    """The file without comments, string literals and its test module."""
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (aliases dropped)."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree.split("as")[0] if "::as" not in tree else tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        parts.append(cur)
    out = []
    for p in parts:
        for e in expand_use(p):
            out.append(prefix + e if e != "self" else prefix.rstrip(":"))
    return out


def resolve(path: str, here: str, mods: dict[str, Path]) -> str | None:
    """The module a path names (its longest prefix that is a module), or None if external."""
    segs = path.split("::")
    base = [] if here == "crate" else here.split("::")
    if segs[0] == "crate":
        cur, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        # In a non-mod.rs file `here` is the module itself, so super is its parent.
        cur = list(base)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                cur = cur[:-1]
            segs = segs[1:]
    else:
        return None
    best = "::".join(cur) or "crate"
    for k in range(len(segs)):
        cand = "::".join(cur + segs[: k + 1])
        if cand in mods:
            best = cand
        else:
            break
    return best


def impl_methods(text: str) -> set[str]:
    """Methods a file defines in `impl <shared type>` blocks."""
    names = set()
    for ty in SHARED_IMPL_TYPES:
        for m in re.finditer(r"\bimpl\s+" + ty + r"\s*\{", text):
            depth, i = 1, m.end()
            start = i
            while depth and i < len(text):
                depth += text[i] == "{"
                depth -= text[i] == "}"
                i += 1
            body = text[start:i]
            # only top-level fns of the impl block
            d = 0
            for line in body.split("\n"):
                if d == 0:
                    fm = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?fn\s+(\w+)", line)
                    if fm:
                        names.add(fm.group(1))
                d += line.count("{") - line.count("}")
    return names


def graph(crate: Path, calls: bool):
    src = crate / "src"
    mods = module_files(src)
    texts = {m: strip(f.read_text()) for m, f in mods.items()}
    owners: dict[str, str] = {}
    for m, t in texts.items():
        for name in impl_methods(t):
            owners.setdefault(name, m)
    edges: dict[str, dict[str, str]] = {m: {} for m in mods}
    for m, t in texts.items():
        paths = []
        for u in re.finditer(r"\buse\s+((?:crate|super|self)\b[^;]*);", t):
            paths += expand_use(u.group(1))
        paths += re.findall(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", t)
        for p in paths:
            target = resolve(p, m, mods)
            if target and target != m and target != "crate" and not m.startswith(target + "::"):
                edges[m].setdefault(target, "use")
        for name, owner in owners.items() if calls else ():
            if owner not in (m, "crate") and re.search(r"\.\s*" + name + r"\s*(::<[^>]*>)?\s*\(", t):
                edges[m].setdefault(owner, "calls")
    return mods, edges


def cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    args = sys.argv[1:]
    calls = "--calls" in args
    crates = [Path(a) for a in args if a != "--calls"] or [Path("crates/gantry-ecs"), Path("crates/gantry-agent")]
    bad = 0
    for crate in crates:
        _, edges = graph(crate, calls)
        print(f"== {crate.name}")
        for m in sorted(edges):
            if edges[m]:
                deps = ", ".join(t + (" (calls)" if k == "calls" else "") for t, k in sorted(edges[m].items()))
                print(f"  {m} -> {deps}")
        comps = cycles(edges)
        for comp in comps:
            inner = [f"{a}->{b}" for a in comp for b in edges[a] if b in comp]
            print(f"  CYCLE: {{{', '.join(comp)}}}  via {'; '.join(inner)}")
        if not comps:
            print("  no cycles")
        bad += len(comps)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
