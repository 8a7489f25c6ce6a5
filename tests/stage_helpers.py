"""Run stage scripts as subprocesses on a temporary copy of the repository.

Stage scripts resolve REPO_ROOT from their own location, so a copy of `stages/`, `mozart/` and `params.yaml` in a
temporary folder writes its `data/` and `metrics/` there and never touches the real checkout.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
COPIED = ["stages", "mozart", "params.yaml", "dvc.yaml"]
# Small, fast settings for the data stages; tests override per case.
FAST = {"organize.n_jobs": 1, "organize.timeout_s": 30, "tokenize.n_jobs": 1, "tokenize.timeout_s": 30,
        "tokenize.rows_per_shard": 64}


def make_repo_copy(dst: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Copy the code and params into `dst` (created), apply dotted-key `overrides` to params.yaml, return `dst`."""
    dst = Path(dst).resolve()
    dst.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        src = REPO_ROOT / item
        if src.is_dir():
            shutil.copytree(src, dst / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dst / item)
    (dst / "data").mkdir(exist_ok=True)
    (dst / "metrics").mkdir(exist_ok=True)
    if overrides:
        set_params(dst, overrides)
    return dst


def set_params(root: Path, overrides: Mapping[str, Any]) -> dict:
    """Set dotted keys (`tokenize.n_jobs`, `seed`) in root/params.yaml; returns the new params."""
    path = Path(root) / "params.yaml"
    params = yaml.safe_load(path.read_text()) or {}
    for dotted, value in overrides.items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    return params


def stage_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(root),  # import the copy's mozart package, not an installed one
        "PYTHONDONTWRITEBYTECODE": "1",
        "MOZART_TRACKING": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
    })
    env.pop("DVC_EXP_NAME", None)
    return env


SCRIPTS = {"tokenize": "tokenize_midi"}  # stages/tokenize.py would shadow the standard library's tokenize


def stage_cmd(root: Path, stage: str) -> list[str]:
    return [sys.executable, str(Path(root).resolve() / "stages" / f"{SCRIPTS.get(stage, stage)}.py")]


def run_stage(root: Path, stage: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python stages/<stage>.py` with cwd = root; returns the completed process (text output)."""
    proc = subprocess.run(stage_cmd(root, stage), cwd=root, env=stage_env(root), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {stage} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
                             f"stderr:\n{proc.stderr[-4000:]}")
    return proc


def start_stage(root: Path, stage: str, log: Path) -> subprocess.Popen:
    """Start a stage in its own process group (so a kill reaches its worker processes too), output to `log`
    (a file, not a pipe: an unread pipe would block the stage once its buffer is full)."""
    with open(log, "wb") as out:
        return subprocess.Popen(stage_cmd(root, stage), cwd=root, env=stage_env(root), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def file_hashes(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` (empty dict if absent)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def all_paths(folder: Path) -> set[str]:
    """Every file and folder under `folder`, relative."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The stage failed the way the contract says: exit 2, no traceback, one `error: ...` line naming `needles`."""
    out = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 2, out
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, out
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, out
    line = lines[0]
    assert len(line) > len("error: ") + 10, out
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}\n{out}"
    return line


def corpus_from_shared(shared_corpora: Path, dst: Path, n: int, corpus: str = "piano-midi-de",
                       per_composer: int | None = None) -> Path:
    """Symlink-free small corpus: copy the first `n` files (sorted) of a shared corpus into dst/<Composer>/."""
    root = Path(shared_corpora) / corpus
    files = sorted(root.rglob("*.mid"))
    picked: list[Path] = []
    counts: dict[str, int] = {}
    for f in files:
        composer = f.relative_to(root).parts[-2] if corpus == "piano-midi-de" else f.relative_to(root).parts[0]
        if per_composer is not None and counts.get(composer, 0) >= per_composer:
            continue
        counts[composer] = counts.get(composer, 0) + 1
        picked.append(f)
        if len(picked) >= n:
            break
    for f in picked:
        rel = f.relative_to(root)
        out = Path(dst) / (rel.relative_to("midis") if corpus == "piano-midi-de" else rel)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out)
    return Path(dst)


def write_organized(organized_dir: Path, files: list[Path], corpus_root: Path) -> Path:
    """Build a data/organized folder by hand, as the contract describes (docs/CONTRACTS.md), from clean files
    under `corpus_root/<Composer>/...`: lets tokenize tests run without the organize stage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    organized_dir = Path(organized_dir)
    rows = []
    for f in sorted(files):
        rel = f.relative_to(corpus_root)
        composer = rel.parts[0]
        piece_id = rel.with_suffix("").as_posix()
        out = organized_dir / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
        rows.append({"source_path": str(f), "piece_id": piece_id, "work_id": piece_id, "composer": composer,
                     "title": f.stem, "content_hash": hashlib.sha256(f.read_bytes()).hexdigest(),
                     "status": "accepted", "reason": "", "out_path": rel.as_posix()})
    pq.write_table(pa.Table.from_pylist(rows), organized_dir / "manifest.parquet")
    return organized_dir


# --- Whole-pipeline tests: `dvc repro` on a temporary git copy of the repository --------------------------------

# A model and run small enough for seconds on a CPU, but every stage does its real work.
TINY = {
    "organize.n_jobs": 1, "tokenize.n_jobs": 1, "tokenize.rows_per_shard": 8,
    "prepare.min_pieces": 3, "prepare.val_fraction": 0.2, "prepare.test_fraction": 0.2,
    "model.n_layer": 1, "model.d_model": 32, "model.n_head": 2, "model.d_ff": 64, "model.context": 256,
    "train.seq_len": 64, "train.batch_size": 4, "train.grad_accum": 1, "train.max_steps": 24, "train.lr": 0.003,
    "train.eval_every": 12, "train.eval_batches": 1, "train.ckpt_every": 12, "train.grad_checkpointing": False,
    "train.threads": 1,
    "sample.n_top_composers": 2, "sample.n_per_composer": 1, "sample.bars": 2, "sample.n_prompts": 1,
    "sample.prompt_bars": 1, "sample.continuation_bars": 2, "sample.batch_size": 4,
    "evaluate.max_real_pieces": 4, "evaluate.nll_batches": 1, "evaluate.n_per_composer": 4,
}
STAGES = list(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])  # music21, organize, ... render
TINY_COMPOSERS = ["Bach", "Chopin", "Mozart"]  # 5 generated pieces each


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '(\w+)'", output))


class Project:
    """A git + DVC checkout of Mozart in a temporary folder; its commands run with its own code (PYTHONPATH) and,
    unless `env` says otherwise, MLflow tracking on into its own mlflow.db."""

    def __init__(self, root: Path, env: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "PYTHONHASHSEED": "0"}
        for name in ("MLFLOW_TRACKING_URI", "MOZART_TRACKING", "DVC_EXP_NAME"):
            self.env.pop(name, None)
        self.env.update(env or {})

    def run(self, *cmd: str, timeout: float = 900) -> str:
        """Run `cmd` in the checkout; fail with its output unless it exits 0; return stdout + stderr."""
        proc = subprocess.run(list(cmd), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def dvc(self, *args: str, timeout: float = 900) -> str:
        return self.run("dvc", *args, timeout=timeout)

    def mozart(self, *args: str, timeout: float = 300) -> str:
        """The console script of this checkout's code (`python -m mozart.cli`)."""
        return self.run(sys.executable, "-m", "mozart.cli", *args, timeout=timeout)

    def commit(self, message: str) -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)


def tiny_project(base: Path, env: Mapping[str, str] | None = None) -> Project:
    """A committed git copy of this checkout (tracked and untracked-but-not-ignored files) in `base/repo`, with the
    TINY params and a generated corpus of TINY_COMPOSERS in `base/corpus`."""
    from fuzz_midi import make_valid_corpus

    corpus = Path(base) / "corpus"
    make_valid_corpus(corpus, TINY_COMPOSERS, per_composer=5, seed=3, n_notes=(60, 120))
    root = Path(base) / "repo"
    listed = git(REPO_ROOT, "ls-files", "-co", "--exclude-standard").split("\n")
    for rel in (f for f in listed if f and (REPO_ROOT / f).is_file()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, root / rel)
    set_params(root, {**TINY, "organize.source": str(corpus), "organize.layout": "folder"})
    git(root, "init", "-q")
    git(root, "config", "user.email", "e2e@mozart.test")
    git(root, "config", "user.name", "e2e")
    project = Project(root, env)
    project.commit("tiny project")
    project.corpus = corpus
    return project


def processes_under(folder: Path) -> list[str]:
    """Command lines of the live processes whose working directory is inside `folder` (leftovers of a test)."""
    import psutil

    folder = Path(folder).resolve()
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()).is_relative_to(folder):
                found.append(" ".join(proc.cmdline()))
        except (psutil.Error, OSError):
            continue
    return found
