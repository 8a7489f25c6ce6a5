#!/usr/bin/env python
"""Accounting check on real and messy data (issue #6): organize + tokenize (+ prepare) over the whole of
../shared/corpora (both corpora merged into one source folder of symlinks) plus a seeded fuzz corpus, on a temporary
copy of the repository. Prints files_in / accepted / duplicates / rejected, whether they add up, the most common
rejection reasons and the wall time of each stage.

    python scripts/check_accounting.py [--fuzz 300] [--seed 7] [--n-jobs -1] [--no-prepare] [--keep]

Exit code 0 when everything adds up, 1 when it does not, 2 when a stage fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

import pyarrow.parquet as pq  # noqa: E402

from fuzz_midi import make_fuzz_corpus  # noqa: E402
from stage_helpers import make_repo_copy, run_stage  # noqa: E402

MIDI_SUFFIXES = {".mid", ".midi"}


def link_shared(corpora: Path, source: Path) -> int:
    """source/<Composer>/<corpus>/<relative path> -> symlink to each shared .mid file; returns the count."""
    n = 0
    for corpus in sorted(p for p in corpora.iterdir() if p.is_dir()):
        for f in sorted(corpus.rglob("*")):
            if not f.is_file() or f.suffix.lower() not in MIDI_SUFFIXES:
                continue
            rel = f.relative_to(corpus)
            if rel.parts[0] == "midis":  # piano-midi-de: midis/<Composer>/<file>
                rel = rel.relative_to("midis")
            dst = source / rel.parts[0] / corpus.name / Path(*rel.parts[1:])
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f)
            n += 1
    return n


def reason_kind(reason: str) -> str:
    """Group reasons by their stable prefix (drop parser details in parentheses and after a colon)."""
    return reason.split(" (")[0].split(":")[0].strip()[:60] or "(empty reason!)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=Path, default=REPO_ROOT.parent / "shared" / "corpora")
    ap.add_argument("--fuzz", type=int, default=300, help="number of fuzz files to add (0 = none)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--timeout", type=float, default=60.0, help="organize/tokenize per-file timeout (s)")
    ap.add_argument("--no-prepare", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mozart-accounting-"))
    source = tmp / "source"
    source.mkdir()
    t0 = time.monotonic()
    n_shared = link_shared(args.corpora, source) if args.corpora.is_dir() else 0
    if not n_shared:
        print(f"note: {args.corpora} is absent or empty; fuzz corpus only")
    n_fuzz = len(make_fuzz_corpus(source, args.fuzz, args.seed)) if args.fuzz else 0
    on_disk = sum(1 for p in source.rglob("*") if (p.is_file() or p.is_symlink()) and p.suffix.lower() in MIDI_SUFFIXES)
    print(f"corpus: {n_shared} shared + {n_fuzz} fuzz = {on_disk} MIDI files in {source}")

    root = make_repo_copy(tmp / "repo", {
        "organize.source": str(source), "organize.layout": "auto", "organize.n_jobs": args.n_jobs,
        "organize.timeout_s": args.timeout, "tokenize.n_jobs": args.n_jobs, "tokenize.timeout_s": args.timeout,
    })
    stages = ["organize", "tokenize"] + ([] if args.no_prepare else ["prepare"])
    for stage in stages:
        t = time.monotonic()
        proc = run_stage(root, stage, timeout=6 * 3600)
        print(f"{stage:9s} exit {proc.returncode} in {time.monotonic() - t:7.1f} s   {proc.stdout.strip()[-200:]}")
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            return 2

    org = pq.read_table(root / "data" / "organized" / "manifest.parquet").to_pylist()
    tok = pq.read_table(root / "data" / "tokens" / "manifest.parquet").to_pylist()
    o, t = Counter(r["status"] for r in org), Counter(r["status"] for r in tok)
    files_in = len(org)
    accepted, duplicates, rejected = t["accepted"], o["duplicate"], o["rejected"] + t["rejected"]
    ok = {
        "rows == MIDI files on disk": files_in == on_disk,
        "one row per input file": len({r["source_path"] for r in org}) == files_in,
        "tokenize rows == organize accepted": len(tok) == o["accepted"],
        "accepted + duplicates + rejected == files_in": accepted + duplicates + rejected == files_in,
        "every rejection has a reason": all(r["reason"].strip() for r in org + tok if r["status"] == "rejected"),
    }
    print(f"\nfiles_in={files_in}  accepted={accepted}  duplicates={duplicates}  rejected={rejected} "
          f"(organize {o['rejected']}, tokenize {t['rejected']})")
    if not args.no_prepare:
        metrics = json.loads((root / "metrics" / "data.json").read_text())
        same = all(metrics.get(k) == v for k, v in
                   {"files_in": files_in, "accepted": accepted, "duplicates": duplicates, "rejected": rejected}.items())
        ok["metrics/data.json agrees"] = same
        print("metrics/data.json:", {k: v for k, v in metrics.items() if k != "rejected_list"})
    for name, good in ok.items():
        print(f"  [{'ok' if good else 'FAIL'}] {name}")
    print("\nrejection reasons:")
    for reason, n in Counter(reason_kind(r["reason"]) for r in org + tok if r["status"] == "rejected").most_common(15):
        print(f"  {n:5d}  {reason}")
    print(f"\nwall time {time.monotonic() - t0:.1f} s" + (f"; kept {tmp}" if args.keep else ""))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
