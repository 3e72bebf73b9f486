"""The module picture of a twcmaster tree: lines, and who imports whom inside the package
(``TYPE_CHECKING`` imports included), per file or per area (top-level module or package).

    python scripts/module_picture.py [TREE] [files|areas]
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "twcmaster"
mode = sys.argv[2] if len(sys.argv) > 2 else "files"


def modname(p):
    parts = p.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


mods = {}
for p in sorted(root.rglob("*.py")):
    mods[modname(p)] = p


def imports(p):
    tree = ast.parse(p.read_text())
    out = set()
    pkg = modname(p) if p.name == "__init__.py" else modname(p).rsplit(".", 1)[0]
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                b = pkg.rsplit(".", n.level - 1)[0] if n.level > 1 else pkg
                base = f"{b}.{base}" if base else b
            for a in n.names:
                cand = f"{base}.{a.name}"
                out.add(cand if cand in mods else base)
    return {m for m in out if m in mods}


def area(m):
    parts = m.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else m


if mode == "files":
    for m, p in mods.items():
        n = len(p.read_text().splitlines())
        imp = sorted(x.replace("twcmaster.", "") for x in imports(p) if x != m)
        print(f"{n:5d}  {m.replace('twcmaster.', ''):28s} -> {', '.join(imp)}")
else:
    lines = defaultdict(int)
    edges = defaultdict(set)
    for m, p in mods.items():
        a = area(m)
        lines[a] += len(p.read_text().splitlines())
        for x in imports(p):
            if area(x) != a:
                edges[a].add(area(x).replace("twcmaster.", ""))
    for a in sorted(lines):
        print(f"{lines[a]:6d}  {a.replace('twcmaster.', ''):18s} -> {', '.join(sorted(edges[a]))}")
