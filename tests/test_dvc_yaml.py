"""dvc.yaml lists, for every stage, exactly the code it runs and the params it reads.

A module a stage imports but does not list means DVC would not rerun the stage when that module changes; a params
section it reads but does not list means a params change would be ignored. Both are read from the source (AST), so
the test follows the code as it changes.
"""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = DVC["stages"]


def _script(stage: str) -> Path:
    return REPO / STAGES[stage]["cmd"].split()[-1]


def _mozart_imports(path: Path) -> set[str]:
    """Every `mozart.x` module imported anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mozart" or node.module.startswith("mozart."):
                package = REPO / node.module.replace(".", "/")
                # `from mozart.pkg import module` names modules; `from mozart.pkg.module import name` names one
                found |= {f"{node.module}.{a.name}" for a in node.names if (package / f"{a.name}.py").exists()}
                if node.module != "mozart" and not package.is_dir():
                    found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mozart.")}
    return found


def _closure(path: Path) -> set[str]:
    """Files (repo-relative) a stage script runs: itself, stages/_common.py and every mozart module reached."""
    files = {path.relative_to(REPO).as_posix()}
    todo = [path]
    while todo:
        current = todo.pop()
        modules = _mozart_imports(current)
        if "_common" in current.read_text() and current.parent.name == "stages":
            modules |= _mozart_imports(REPO / "stages" / "_common.py")
            files.add("stages/_common.py")
        for module in modules:
            rel = module.replace(".", "/") + ".py"
            if rel not in files and (REPO / rel).exists():
                files.add(rel)
                todo.append(REPO / rel)
    files = {f for f in files if not f.endswith("__init__.py")}  # package markers and the version string
    files.discard("mozart/errors.py")  # exception classes only: changing a message needs no rerun
    return files


def _sections_read(path: Path) -> set[str]:
    """Params sections passed to configs("a", "b") in the stage script, plus `seed` when it is used."""
    sections = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "configs":
            sections |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    return sections


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_imported_module_is_a_dependency(stage):
    deps = {d for d in STAGES[stage]["deps"] if not d.startswith("${")}
    code_deps = {d for d in deps if d.endswith(".py")}
    needed = _closure(_script(stage))
    assert needed - code_deps == set(), f"{stage}: imported but not listed in dvc.yaml deps"
    assert code_deps - needed == set(), f"{stage}: listed in dvc.yaml deps but never imported"


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_params_section_read_is_listed(stage):
    listed = {p.split(".")[0] for p in STAGES[stage].get("params", [])}  # a section, or single keys of one
    read = _sections_read(_script(stage))
    assert read <= listed, f"{stage}: reads {sorted(read - listed)} but dvc.yaml does not list it"
    # Every listed section except `seed` must really be read; `seed` is listed iff the script uses it.
    assert listed - {"seed"} <= read, f"{stage}: lists {sorted(listed - {'seed'} - read)} but never reads it"
    uses_seed = re.search(r"(?<![\w.])seed\b", _script(stage).read_text()) is not None
    assert ("seed" in listed) == uses_seed, f"{stage}: seed listed={'seed' in listed} but used={uses_seed}"


def test_train_depends_on_the_base_model_folder_which_always_exists():
    """train.init_from's documented place is a dep even when nothing is fine-tuned: its README placeholder is in git,
    so `dvc repro` never stops on a missing dep, and copying a base model in reruns train. The model files copied
    there are ignored by git (they are large, and DVC hashes them as the dep)."""
    assert "models/base" in STAGES["train"]["deps"]
    assert (REPO / "models/base/README.md").is_file()
    if (REPO / ".git").exists():
        check = ["git", "-C", str(REPO), "check-ignore", "-q"]
        assert subprocess.run(check + ["models/base/model.safetensors"]).returncode == 0
        assert subprocess.run(check + ["models/base/README.md"]).returncode == 1


def test_metrics_are_small_committed_files():
    for stage in STAGES.values():
        for entry in stage.get("metrics", []) + stage.get("plots", []):
            (path, opts), = entry.items()
            assert path.startswith("metrics/") and opts.get("cache") is False, path


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "stages").glob("*.py")))
def test_no_stage_script_shadows_an_installed_module(script):
    """Python puts stages/ first on the path of a stage, so stages/tokenize.py would replace the standard library's
    tokenize and stages/music21.py the music21 package for every import made while the stage runs."""
    import importlib.util

    name = script.removesuffix(".py")
    assert importlib.util.find_spec(name) is None or name == "_common", f"stages/{script} shadows module {name!r}"
