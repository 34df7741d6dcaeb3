"""The library's shape, checked from its source (no import runs): no import cycles over pwl/, and the pack is
read by one reader only."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PWL = REPO / "pwl"


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = REPO.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """The pwl modules a file imports, anywhere in it (function-level imports included: they run too): the module
    named, or for `from X import a` the submodule X.a where it is one, else X. Parent packages are not edges."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names if is_module(f"{base}.{a.name}")}
            out |= subs or {base}
    return {m for m in out if m.split(".")[0] == "pwl" and is_module(m) and m != me}


def graph() -> dict[str, set[str]]:
    return {module_name(f): imports(f) for f in PWL.rglob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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


def test_no_import_cycles_over_pwl():
    """Every arrow of the import map points one way: a module never imports, directly or through others, a
    module that imports it (function-level imports count: they are the same dependency, deferred)."""
    assert cycles(graph()) == []


def test_the_cycle_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    g = graph()
    assert "pwl.schema.families" in g["pwl.config"] and "pwl.runtime.pack" in g["pwl.budget"]  # deferred too


def pack_openers(path: Path) -> list[int]:
    """Lines of `path` whose code names the pack file or format, or parses a safetensors header itself."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Name, ast.Attribute)) and \
                (node.id if isinstance(node, ast.Name) else node.attr) in ("PACK_FILE", "PACK_FORMAT"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                (node.value == "model.safetensors" or node.value.startswith(("pwl-pack/", "<Q"))):
            lines.append(node.lineno)
        elif isinstance(node, ast.alias) and node.name in ("PACK_FILE", "PACK_FORMAT"):
            lines.append(node.lineno)
    return lines


def test_only_the_pack_reader_opens_a_pack():
    """pwl/runtime/pack.py is the one module that names the pack file or its format or parses a safetensors header
    (`<Q` + JSON); everything else (runtime, budget, export, stages, tests) goes through `pack_path` /
    `pack_index` / `read_index`."""
    reader = PWL / "runtime" / "pack.py"
    found = [f"{f.relative_to(REPO)}:{line}" for d in ("pwl", "stages", "tests", "bench")
             for f in (REPO / d).rglob("*.py") if f not in (reader, Path(__file__)) for line in pack_openers(f)]
    assert not found, f"only pwl/runtime/pack.py may open a pack: {found}"
    assert pack_openers(reader)  # the check sees the reader's own code
