"""Benchmark: our tokenize stage vs the seed's serial loop (../shared/baselines/seed_tokenize.py), same files.

    python benchmarks/tokenize.py [--corpora ../shared/corpora] [--baselines ../shared/baselines]

Tokenizes every .mid of both shared corpora (asap + piano-midi-de, 1,639 files) with `mozart.data.tokenize.tokenize_files`
(isolated workers, `n_jobs=-1`, shards written) and with the seed script, each in its own child process, sampling the
whole process tree's memory. Also runs ours on half the files (every other one) to show that peak memory does not
grow with corpus size. Prints a markdown table and writes it to benchmarks/out/tokenize.md.
Targets: >= 1.8x the seed's files/s on 2 cores, peak RSS < 1 GB, half-corpus peak ~= full-corpus peak.
"""
from __future__ import annotations

import os
import sys

# This script shares its name with the standard library's `tokenize` (imported by inspect/linecache, hence by
# huggingface_hub/torch). Python puts this folder first on sys.path: cache the real module before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
_saved_path = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
import tokenize as _stdlib_tokenize  # noqa: E402,F401

sys.path[:] = _saved_path

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "benchmarks" / "out" / "tokenize.md"


def list_files(corpora: Path) -> list[tuple[str, str, Path]]:
    """(piece_id, composer, path) for every MIDI file; composer = first folder under the corpus (or under midis/)."""
    files = []
    for corpus in sorted(p for p in corpora.iterdir() if p.is_dir()):
        for path in sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".mid", ".midi")):
            rel = path.relative_to(corpus).parts
            rel = rel[1:] if rel[0] == "midis" else rel
            files.append((f"{corpus.name}/{'/'.join(rel)}", rel[0], path))
    return files


class TreeMemory:
    """Samples the summed RSS of a process and all its descendants; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.root = psutil.Process(pid)
        self.every_s, self.peak_rss = every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak_rss = max(self.peak_rss, total)
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_rss


def run_measured(cmd: list[str]) -> tuple[str, float, int, float]:
    """Run cmd, return (stdout, wall seconds, peak tree RSS bytes, CPU seconds of the whole tree incl. imports)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO_ROOT)
    memory = TreeMemory(proc.pid)
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    peak = memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers are joined, so their CPU is included
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}\n{stdout}")
    return stdout, wall, peak, cpu


def ours_child(list_path: str, out_dir: str) -> None:
    """Child mode: tokenize the listed files with the library; print a JSON line of counts and seconds."""
    t0 = time.perf_counter()
    from mozart.config import TokenizeConfig
    from mozart.data.tokenize import tokenize_files

    files = [(r[0], r[1], Path(r[2])) for r in json.loads(Path(list_path).read_text())]
    t1 = time.perf_counter()
    summary = tokenize_files(files, Path(out_dir), TokenizeConfig(n_jobs=-1), progress=False)
    t2 = time.perf_counter()
    print(json.dumps({"files": len(files), "ok": summary.n_tokenized, "tokens": summary.n_tokens,
                      "seconds": t2 - t1, "import_s": t1 - t0}))


def run_ours(files: list[tuple[str, str, Path]], tmp: Path, name: str) -> dict:
    list_path = tmp / f"{name}.json"
    list_path.write_text(json.dumps([(a, b, str(c)) for a, b, c in files]))
    out_dir = tmp / f"out-{name}"
    out_dir.mkdir()
    stdout, wall, peak, cpu = run_measured([sys.executable, __file__, "--child", str(list_path), str(out_dir)])
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "wall": wall, "peak_rss": peak, "cpu": cpu}


def run_seed(files: list[tuple[str, str, Path]], seed_script: Path, tmp: Path) -> dict:
    # The seed rglobs its folder and Python 3.11's rglob does not enter symlinked folders: mirror the folders for
    # real and symlink only the files.
    src = tmp / "seed-src"
    for piece_id, _composer, path in files:
        link = src / piece_id
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    stdout, wall, peak, cpu = run_measured([sys.executable, str(seed_script), str(src), str(tmp / "seed-out")])
    m = dict(re.findall(r"(\w+)=([\d.]+)", stdout))
    return {"files": int(m["files"]), "ok": int(m["files"]) - int(m["bad"]), "tokens": int(m["tokens"]),
            "seconds": float(m["seconds"]), "wall": wall, "peak_rss": peak, "cpu": cpu}


def table(rows: list[tuple[str, dict]], seed: dict, load: tuple[str, str]) -> str:
    lines = [f"Tokenize benchmark ({os.cpu_count()} cores; load average {load[0]} before, {load[1]} after)", "",
             "| run | files | tokenized | tokens | seconds | files/s | tokens/s | wall s (with imports) "
             "| CPU ms/file | peak RSS (tree) | files/s vs seed | CPU efficiency vs seed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        fps, tps = r["files"] / r["seconds"], r["tokens"] / r["seconds"]
        ratio = fps / (seed["files"] / seed["seconds"])
        cpu_ms, seed_cpu_ms = 1000 * r["cpu"] / r["files"], 1000 * seed["cpu"] / seed["files"]
        lines.append(f"| {name} | {r['files']} | {r['ok']} | {r['tokens']:,} | {r['seconds']:.1f} | {fps:.1f} "
                     f"| {tps:,.0f} | {r['wall']:.1f} | {cpu_ms:.0f} | {r['peak_rss'] / 2**20:.0f} MB "
                     f"| {ratio:.2f}x | {seed_cpu_ms / cpu_ms:.2f}x |")
    lines += ["", "seconds = each tool's own timing of the work (seed: its loop; ours: tokenize_files incl. writing "
              "shards); CPU = user+sys of the whole process tree incl. interpreter start and imports. Under a "
              "shared, loaded machine files/s is noisy; CPU per file is not."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=REPO_ROOT.parent / "shared" / "corpora")
    parser.add_argument("--baselines", type=Path, default=REPO_ROOT.parent / "shared" / "baselines")
    parser.add_argument("--limit", type=int, default=0, help="use only every k-th file to get about this many (quick)")
    parser.add_argument("--child", nargs=2, metavar=("LIST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return ours_child(*args.child)
    files = list_files(args.corpora)
    if args.limit and args.limit < len(files):
        files = files[::len(files) // args.limit][:args.limit]
    print(f"{len(files)} MIDI files under {args.corpora}", file=sys.stderr)
    load_before = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory(prefix="mozart-bench-tokenize-") as tmp_name:
        tmp = Path(tmp_name)
        ours_full = run_ours(files, tmp, "full")
        seed = run_seed(files, args.baselines / "seed_tokenize.py", tmp)
        ours_half = run_ours(files[::2], tmp, "half")
    load_after = f"{os.getloadavg()[0]:.2f}"
    text = table([("seed (serial loop)", seed), ("mozart, full corpus", ours_full),
                  ("mozart, half corpus", ours_half)], seed, (load_before, load_after))
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    from mozart.infra.atomic import write_text

    write_text(OUT, text)


if __name__ == "__main__":
    main()
