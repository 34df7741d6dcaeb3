"""dvc.yaml declares what each stage really uses, computed from the code so that the lists cannot drift:
- code: every file of pwl/ the stage script imports, directly or through other pwl modules (the AST's import
  closure, function-level imports included); a dep on a directory such as pwl/models covers its files;
- data: every pipeline file the stage's code names through pwl.paths (in the script and in the pwl functions
  it can reach) is a dep or an output of the stage: a stage that loads data/prepared must declare it.
And no more code than that: a declared pwl dep the stage never imports would rerun it for nothing."""
import ast
import functools
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

import pwl.paths

REPO = Path(__file__).resolve().parents[1]
# Pipeline files no stage declares, on purpose: resume state (deleted once a stage's outputs exist, never an
# input of another stage) and the raw-download cache (prepare records the checksums of what it made of it).
UNDECLARED = ("checkpoints", "data/raw")


def stages() -> dict[str, dict]:
    """Each stage as dvc.yaml writes it (a foreach/matrix stage's template, `${...}` left in place)."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: s.get("do", s) for name, s in raw.items()}


def script_of(stage: dict) -> Path:
    """`-m stages.X` -> stages/X.py (run as a module, so the pwl beside it is the one imported)."""
    module = next(t for t in stage["cmd"].split() if re.fullmatch(r"stages\.\w+", t))
    return REPO / (module.replace(".", "/") + ".py")


def entries(stage: dict, *keys: str) -> list[str]:
    """Paths listed under `keys` (deps, outs, metrics, plots), with or without per-path options."""
    return [next(iter(e)) if isinstance(e, dict) else e for k in keys for e in stage.get(k, [])]


# ---------------------------------------------------------------- the code a stage can run

DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def package_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1])


def definitions(tree: ast.Module):
    """(definition, is it module-level) for every function and class; methods and nested ones are not."""
    top = {id(n) for n in tree.body}
    return [(d, id(d) in top) for d in ast.walk(tree) if isinstance(d, DEFS)]


@functools.cache
def module_aliases(tree: ast.Module) -> set[str]:
    """Names a file binds to modules (`from pwl import paths`, `import pwl.train`)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out |= {a.asname or a.name for a in node.names if module_file(f"{node.module}.{a.name}")
                    or node.level}  # relative `from . import tables`: a sibling module or a package name
    return out


def imported(node: ast.AST, path: Path) -> set[str]:
    """The pwl modules an import statement in `path` loads (package __init__s included: pwl.a.b runs pwl/a)."""
    if isinstance(node, ast.Import):
        found = {a.name for a in node.names}
    else:
        base = node.module or ""
        if node.level:
            parts = package_of(path).split(".")
            base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        found = {base} | {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}  # submodules
    found = {m for m in found if m.split(".")[0] == "pwl" and module_file(m)}
    return {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 2)}


class Code:
    """What a stage script can run: its own code, every pwl module it imports (at module level, or inside code
    it can reach), the functions and classes whose names reached code uses, and the methods whose names it
    uses as attributes (`stage.fit(...)` reaches every method `fit`). Conservative: never less than what runs."""

    def __init__(self, script: Path):
        self.script, self.trees, self.modules = script, {}, set()
        bodies: list[tuple[ast.AST, Path]] = []
        seen, names, attrs = set(), set(), set()
        todo = [(self._parse(script), script)]
        while todo:
            while todo:
                body, path = todo.pop()
                if id(body) in seen:
                    continue
                seen.add(id(body))
                bodies.append((body, path))
                for node in ast.walk(body):
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):  # used, not assigned
                        names.add(node.id)
                    elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                        # `paths.weights`: a function of a module; anything else: a method
                        module = isinstance(node.value, ast.Name) and node.value.id in module_aliases(self._parse(path))
                        (names if module else attrs).add(node.attr)
                    elif isinstance(node, (ast.Import, ast.ImportFrom)):
                        for m in imported(node, path) - self.modules:
                            self.modules.add(m)
                            f = module_file(m)
                            todo += [(n, f) for n in self._parse(f).body if not isinstance(n, DEFS)]
            todo = [(d, f) for f, tree in self.trees.items() for d, top in definitions(tree)
                    if id(d) not in seen and d.name in (names if top else names | attrs)]
        self.bodies = bodies

    def _parse(self, path: Path) -> ast.Module:
        if path not in self.trees:
            self.trees[path] = ast.parse(path.read_text())
        return self.trees[path]

    def pwl_files(self) -> list[str]:
        """The pwl files the stage imports, empty ones (no statement, e.g. pwl/__init__.py) left out."""
        files = {module_file(m) for m in self.modules}
        return sorted(str(f.relative_to(REPO)) for f in files if ast.parse(f.read_text()).body)

    def pipeline_paths(self) -> set[str]:
        """Pipeline files the reached code names through pwl.paths."""
        used = set()
        for body, _ in self.bodies:
            inner = {id(n.left) for n in ast.walk(body) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)}
            for node in ast.walk(body):
                if id(node) not in inner and (path := resolve(node)) is not None:
                    used.add(path)
        return used


def covers(declared: str, used: str) -> bool:
    """`declared` (a dvc.yaml path, `${...}` = any segment) is `used` or a directory above it, or `used` is a
    directory above it. Either side may hold `*` segments."""
    d, u = re.sub(r"\$\{[^}]*\}", "*", declared).strip("/").split("/"), used.strip("/").split("/")
    return all(fnmatch(a, b) or fnmatch(b, a) for a, b in zip(d, u))


def covers_file(declared: str, rel: str) -> bool:
    return rel == declared or rel.startswith(declared.rstrip("/") + "/")


def resolve(node: ast.AST) -> str | None:
    """`paths.X`, `paths.f(a, "b")` or `<those> / "c"` as a path; non-literal arguments become `*`."""
    def arg(a):
        return a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else "*"
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "paths":
        value = getattr(pwl.paths, node.attr)
        return None if callable(value) else str(value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "paths":
        return str(getattr(pwl.paths, node.func.attr)(*map(arg, node.args)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and (left := resolve(node.left)) is not None:
        return f"{left}/{arg(node.right)}"
    return None


STAGES = stages()
CODE = {name: Code(script_of(stage)) for name, stage in STAGES.items()}


def missing_code(stage: dict, code: Code) -> tuple[list[str], list[str]]:
    """(pwl files the script imports that no dep covers, pwl deps it never imports)."""
    deps, files = entries(stage, "deps"), code.pwl_files()
    missing = [f for f in files if not any(covers_file(d, f) for d in deps)]
    extra = [d for d in deps if d.startswith("pwl") and not any(covers_file(d, f) for f in files)]
    return missing, extra


def missing_data(stage: dict, code: Code) -> list[str]:
    """Pipeline files the stage's code names that are neither a dep nor an output of the stage."""
    declared = entries(stage, "deps", "outs", "metrics", "plots")
    return sorted(p for p in code.pipeline_paths()
                  if not p.startswith(UNDECLARED) and not any(covers(d, p) for d in declared))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_pwl_file_it_imports(name):
    stage, code = STAGES[name], CODE[name]
    deps = entries(stage, "deps")
    assert str(code.script.relative_to(REPO)) in deps
    missing, extra = missing_code(stage, code)
    assert not missing, f"stage {name}: dvc.yaml deps miss {missing} (imported by {code.script.name})"
    assert not extra, f"stage {name}: deps {extra} are never imported; they would rerun the stage for nothing"
    assert "pwl" not in deps and "pwl/" not in deps  # the whole library: any report edit would retrain


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_pipeline_file_its_code_names(name):
    missing = missing_data(STAGES[name], CODE[name])
    assert not missing, f"stage {name}: its code uses {missing} but dvc.yaml declares none of them"


def test_the_checks_see_what_they_should():
    """The analysis itself: relative, submodule and function-level imports are followed where they can run;
    data paths come out with literal arguments kept; a dep taken away is missed."""
    code = CODE["evaluate"]
    assert {"pwl/build.py", "pwl/models/vgg.py", "pwl/states.py", "pwl/data.py"} <= set(code.pwl_files())
    assert not any(f.startswith(("pwl/report", "pwl/runtime")) for f in code.pwl_files())
    assert {"data/prepared", "models/*/s*/teacher.safetensors", "models/*/s*/pwl.safetensors"} <= code.pipeline_paths()
    assert "pwl/runtime/export.py" in CODE["export"].pwl_files()
    assert covers("models/${item}/shards", "models/*/shards/orders.json") and not covers("data/prepared", "models")
    export = STAGES["export"]
    without = {**export, "deps": [d for d in export["deps"] if d not in ("data/prepared", "pwl/build.py")]}
    assert missing_data(without, CODE["export"]) == ["data/prepared"]
    assert missing_code(without, CODE["export"])[0] == ["pwl/build.py"]
    assert missing_code({**export, "deps": [*export["deps"], "pwl/report"]}, CODE["export"])[1] == ["pwl/report"]


def test_a_loss_or_model_edit_reruns_only_the_stages_that_run_that_code():
    """Validating params imports no model, loss or torch code (pwl.schema holds the names and schemas it
    checks): prepare and the training stages do not depend on the PWL objective or the mixed model, so editing
    pwl/losses.py reruns kd, distill and what follows, never the data or the teachers."""
    never = {"prepare": ("pwl/losses.py", "pwl/mixing.py", "pwl/models", "pwl/build.py", "pwl/train.py"),
             "train_teacher": ("pwl/losses.py", "pwl/mixing.py", "pwl/teacher_bn.py"),
             "train_student": ("pwl/losses.py", "pwl/mixing.py", "pwl/teacher_bn.py"),
             "evaluate": ("pwl/losses.py", "pwl/train.py"), "export": ("pwl/losses.py", "pwl/train.py"),
             "loadsim": ("pwl/losses.py", "pwl/train.py"),
             "report": ("pwl/losses.py", "pwl/mixing.py", "pwl/models", "pwl/compute.py", "pwl/data.py")}
    for name, files in never.items():
        imported = CODE[name].pwl_files()
        deps = entries(STAGES[name], "deps")
        for f in files:
            assert not any(covers_file(f, g) for g in imported), f"{name} imports {f}"
            assert f not in deps, f"{name} declares {f}"
    assert "pwl/losses.py" in entries(STAGES["distill"], "deps")
    validation = ("pwl/stage_cli.py", "pwl/config.py", "pwl/schema")
    for name, stage in STAGES.items():
        assert set(validation) <= set(entries(stage, "deps")), name


def test_plots_name_no_arch():
    """A new family or arch needs no dvc.yaml edit: the plots name folders with one file per arch."""
    plots = yaml.safe_dump(yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"])
    archs = yaml.safe_load((REPO / "conf" / "config.yaml").read_text())["arch"]
    assert not [a for a in archs if re.search(rf"\b{a}\b", plots)]


def test_stages_run_as_modules_so_the_code_beside_them_is_imported(tmp_path):
    """`python stages/x.py` imports pwl through the editable install, i.e. from the checkout it was installed
    from: a queued `dvc exp run` (a copy of the repo in .dvc/tmp) would train with the workspace's code being
    edited, not the queued snapshot's. `python -m stages.x` puts the run's own directory first."""
    for name, stage in STAGES.items():
        assert re.search(r"(python|launcher\}) -m stages\.\w+", stage["cmd"]), name
    shutil.copytree(REPO / "stages", tmp_path / "stages")
    (tmp_path / "pwl").mkdir()
    (tmp_path / "pwl" / "__init__.py").write_text("raise SystemExit('the local copy of pwl was imported')\n")
    res = subprocess.run([sys.executable, "-m", "stages.prepare", "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert "the local copy of pwl was imported" in res.stderr
