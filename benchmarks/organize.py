"""Benchmark: organize on 5,000 prefix-layout files, this tree vs an earlier commit (default: before issue 12's
composer matching), same files, same run.

    python benchmarks/organize.py [--before 6550630] [--files 5000] [--repeats 3]

Writes a synthetic corpus of tiny distinct MIDI files named `<composer label>-<title>.mid`, with ~150 labels in the
spellings scraped collections use (surnames, hyphenated surnames, "j_s_bach", misspellings, placeholders, composers
not on the list). Each run is a fresh child process (`python -c`, PYTHONPATH = the tree under test) running
`mozart.data.organize.organize` with the stage defaults (n_jobs = -1); before and after alternate, so load on the
shared machine hits both alike. Reports the median of the whole child process (imports, composer-list loading and
organize) and of the organize() call alone, and the CPU seconds of the child and its workers (user + system), which
a busy shared machine disturbs far less than wall time. Target (issue 12): after <= 1.2x before.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = REPO_ROOT / "benchmarks" / "out" / "organize.md"

LISTED = ["bach", "j_s_bach", "cpe_bach", "mozart", "beethoven", "chopin", "liszt", "debussy", "ravel", "satie",
          "schubert", "schumann", "schumann_clara", "brahms", "grieg", "haydn", "handel", "scarlatti", "czerny",
          "clementi", "saint-saens", "rimsky-korsakov", "vaughan-williams", "villa-lobos", "tschaikowsky",
          "rachmaninov", "prokofieff", "skrjabin", "mussorgsky", "dvorak", "janacek", "albeniz", "granados", "faure",
          "poulenc", "mendelssohn", "mendelssohn-bartholdy", "burgmueller", "kuhlau", "heller", "gurlitt", "joplin",
          "gottschalk", "field", "alkan", "godowsky", "moszkowski", "chaminade", "mompou", "busoni", "reger",
          "medtner", "glazunov", "lyadov", "arensky", "balakirev", "borodin", "cui", "glinka", "elgar", "holst",
          "gershwin", "copland", "barber", "ives", "macdowell", "couperin", "rameau", "purcell", "byrd", "sweelinck",
          "buxtehude", "pachelbel", "telemann", "vivaldi", "corelli", "frescobaldi", "soler", "sor", "tarrega"]
MISSPELT = ["mozzart", "debusy", "beethovn", "chopinn", "shostakovitch", "tchaikovksy", "lizst", "hadyn", "greig",
            "schubertt", "mendelsohn", "brahmns", "ravell", "scarlati", "prokoffiev", "rachmaninnoff", "gershwinn"]
PLACEHOLDERS = ["unknown", "unknown_artist", "anon", "anonymous", "various_artists", "trad", "traditional", "misc"]
UNLISTED = ["einaudi_ludovico", "himmel", "keller", "godart", "holzmann", "wohlgemuth", "ferraris", "mignan",
            "strauss", "bachmann", "kramer", "franke", "hertz", "heinz", "berge", "mystery_composer", "smith",
            "jones", "garcia", "nakamura", "ivanov", "petrov", "novak_jan", "kowalski", "dupont_jean", "rossi_mario",
            "muller_hans", "schmidt_karl", "weber_max", "lang", "young", "white", "brown", "green", "black", "gray",
            "mills", "hill", "wood", "stone", "lake", "moore", "king", "wright", "scott_walter"]
LABELS = LISTED + MISSPELT + PLACEHOLDERS + UNLISTED


def tiny_midi(i: int) -> bytes:
    """A one-track format-0 MIDI file with two notes; distinct bytes for every i < 128 * 128 * 64."""
    pitch, velocity, delta = 21 + i % 88, 1 + (i // 88) % 127, 1 + i // (88 * 127)
    events = bytes([0x00, 0x90, pitch, velocity]) + bytes([delta & 0x7F, 0x80, pitch, 0])
    events += bytes([0x00, 0x90, (pitch + 7) % 128, 64, 0x60, 0x80, (pitch + 7) % 128, 0, 0x00, 0xFF, 0x2F, 0x00])
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(events)) + events


def write_corpus(root: Path, n_files: int) -> None:
    root.mkdir(parents=True)
    for i in range(n_files):
        label = LABELS[i % len(LABELS)]
        (root / f"{label}-piece_{i:05d}.mid").write_bytes(tiny_midi(i))


def export_tree(ref: str, dest: Path) -> None:
    """The `mozart` package as of git `ref`, unpacked under `dest`."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref, "mozart"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


CHILD = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from mozart.config import OrganizeConfig
from mozart.data.organize import organize
t1 = time.perf_counter()
summary = organize(OrganizeConfig(source="unused", layout="prefix"), Path(sys.argv[1]), Path(sys.argv[2]))
t2 = time.perf_counter()
import mozart.data.organize as m
print(json.dumps({"module": m.__file__, "import_s": t1 - t0, "organize_s": t2 - t1, "composers": summary.composers,
                  "accepted": summary.accepted, "line": summary.line(Path("out"))}))
"""


def run_once(tree: Path, src: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1"}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out)], env=env, check=True,
                          capture_output=True, text=True, cwd=out.parent)  # `-c` puts the cwd first on sys.path
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    done_usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its reaped workers
    result["cpu_s"] = (done_usage.ru_utime + done_usage.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="6550630", help="git ref of the tree to compare against")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mozart-bench-organize-") as tmp:
        tmp = Path(tmp)
        src = tmp / "corpus"
        write_corpus(src, args.files)
        export_tree(args.before, tmp / "before")
        trees = {"before": tmp / "before", "after": REPO_ROOT}
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for k in range(args.repeats):
            for name in ("before", "after") if k % 2 == 0 else ("after", "before"):
                out = tmp / "runs" / f"{name}-{k}" / "organized"
                out.parent.mkdir(parents=True)
                runs[name].append(run_once(trees[name], src, out))
                print(name, {key: v for key, v in runs[name][-1].items() if key != "line"}, flush=True)
                shutil.rmtree(out.parent)  # every run starts from the same, empty file system state
    keys = ("process_s", "organize_s", "cpu_s")
    med = {name: {key: statistics.median(r[key] for r in rs) for key in keys} for name, rs in runs.items()}
    ratio = {key: med["after"][key] / med["before"][key] for key in keys}
    lines = [f"{args.files:,} prefix-layout files, {len(LABELS)} labels, median of {args.repeats} alternating runs "
             f"(before = `{args.before}`):", "",
             "| tree | whole process, wall (s) | organize(), wall (s) | CPU, process + workers (s) | composers |",
             "|---|---|---|---|---|"]
    for name in ("before", "after"):
        lines.append(f"| {name} | {med[name]['process_s']:.2f} | {med[name]['organize_s']:.2f} | "
                     f"{med[name]['cpu_s']:.2f} | {runs[name][0]['composers']} |")
    lines += ["", f"after / before: **{ratio['cpu_s']:.2f}x CPU**, {ratio['process_s']:.2f}x wall (whole process), "
              f"{ratio['organize_s']:.2f}x wall (organize() alone); target <= 1.2x; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
