"""The tables of QUALITY.md, from the DVC experiments themselves (`dvc exp show --json`).

    python scripts/quality_tables.py                      # experiments quality-* of this workspace
    python scripts/quality_tables.py --prefix ab- --repo ../other-clone

Prints markdown: the ladder (one row per experiment: size, budget, throughput, val/test bits per token, H1/H4/GS and
their gaps to the real test set, SI, style accuracy with and without guidance with 95 % Wilson intervals,
memorization, decodability) and, for every experiment with a guidance sweep, the sweep (one row per scale)."""
from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path


def experiments(repo: Path, prefix: str) -> list[tuple[str, dict, dict]]:
    """(name, params.yaml, {metrics file: content}) of every experiment of `repo` whose name starts with prefix."""
    out = subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    found = []
    for commit in json.loads(out):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name") or ""
                data = rev.get("data") or {}
                if name.startswith(prefix) and data:
                    params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                    metrics = {k: (v or {}).get("data", {}) for k, v in (data.get("metrics") or {}).items()}
                    found.append((name, params, metrics))
    return found


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ci(at: dict, key: str = "style") -> str:
    return f"{fmt(at.get(key + '_accuracy'), 2)} [{fmt(at.get(key + '_ci_low'), 2)}, {fmt(at.get(key + '_ci_high'), 2)}]"


def scale_key(scale: float) -> str:
    return f"cfg_{scale:g}".replace(".", "p")


def ladder_rows(found) -> list[str]:
    head = ("| experiment | params (M) | minutes | steps | tokens/s | val bits/token | test bits/token | H1 / H4 / GS "
            "(real) | rel. gap H1 / H4 / GS | SI short / mid (real) | style, CFG s | style, no CFG | chance | copy ≥ 2 / "
            "≥ 4 bars (real test) | decodable |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for name, params, metrics in sorted(found, key=lambda f: (f[2].get("metrics/train.json", {}).get("params", 0))):
        train, ev = metrics.get("metrics/train.json", {}), metrics.get("metrics/eval.json", {})
        judged = ev.get("judged", {})
        scale = float(params.get("sample", {}).get("cfg_scale", 1.5))
        at, none = judged.get(scale_key(scale), {}), judged.get("cfg_1", {})
        real, mem = ev.get("real", {}), ev.get("memorization", {}).get("real_test", {})
        lines.append("| " + " | ".join([
            name, fmt(train.get("params", 0) / 1e6, 1), fmt(train.get("train_minutes"), 1), fmt(train.get("steps")),
            fmt(train.get("tokens_per_s"), 0), fmt(train.get("val_bits_per_token")), fmt(ev.get("test_bits_per_token")),
            f"{fmt(at.get('h1'), 2)} / {fmt(at.get('h4'), 2)} / {fmt(at.get('gs'), 3)} ({fmt(real.get('h1'), 2)} / "
            f"{fmt(real.get('h4'), 2)} / {fmt(real.get('gs'), 3)})",
            " / ".join(f"{100 * at[k]:.1f} %" if isinstance(at.get(k), float) else "–"
                       for k in ("gap_h1_rel", "gap_h4_rel", "gap_gs_rel")),
            f"{fmt(at.get('si_short'), 2)} / {fmt(at.get('si_mid'), 2)} ({fmt(ev.get('real_si_short'), 2)} / "
            f"{fmt(ev.get('real_si_mid'), 2)})",
            f"s={scale:g}: {ci(at)} (n={fmt(at.get('n'))})", ci(none), fmt(judged.get("chance"), 2),
            f"{fmt(at.get('memorization_copy2_share'), 2)} / {fmt(at.get('memorization_copy4_share'), 2)} "
            f"({fmt(mem.get('copy2_share'), 2)} / {fmt(mem.get('copy4_share'), 2)})",
            fmt(at.get("decodable_fraction"), 2)]) + " |")
    return lines


def sweep_rows(name: str, metrics: dict) -> list[str]:
    ev = metrics.get("metrics/eval.json", {})
    judged = ev.get("judged", {})
    mem = ev.get("memorization", {}).get("real_test", {})
    head = ("| CFG scale | style accuracy [95 % CI] | n | rel. gap H1 / H4 / GS | SI short / mid | copy ≥ 2 / ≥ 4 bars "
            "| longest copy (bars) | decodable |")
    lines = [f"{name} (chance {fmt(judged.get('chance'), 3)}; real test pieces copy ≥ 2 / ≥ 4 bars: "
             f"{fmt(mem.get('copy2_share'), 2)} / {fmt(mem.get('copy4_share'), 2)})", "", head,
             "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    scales = sorted((v["cfg_scale"], k) for k, v in judged.items() if isinstance(v, dict) and "cfg_scale" in v)
    for scale, key in scales:
        at = judged[key]
        lines.append("| " + " | ".join([
            f"{scale:g}", ci(at), fmt(at.get("n")),
            " / ".join(f"{100 * at[k]:.1f} %" if isinstance(at.get(k), float) else "–"
                       for k in ("gap_h1_rel", "gap_h4_rel", "gap_gs_rel")),
            f"{fmt(at.get('si_short'), 2)} / {fmt(at.get('si_mid'), 2)}",
            f"{fmt(at.get('memorization_copy2_share'), 2)} / {fmt(at.get('memorization_copy4_share'), 2)}",
            fmt(at.get("memorization_max_bars")), fmt(at.get("decodable_fraction"), 2)]) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", action="append", type=Path, help="a DVC workspace (repeatable; default: .)")
    parser.add_argument("--prefix", default="quality-", help="experiment names to show (default quality-)")
    args = parser.parse_args()
    found = [f for repo in (args.repo or [Path(".")]) for f in experiments(repo, args.prefix)]
    if not found:
        raise SystemExit(f"no experiments named {args.prefix}* (run scripts/quality_ladder.sh first)")
    print("\n".join(ladder_rows(found)))
    for name, _, metrics in found:
        judged = metrics.get("metrics/eval.json", {}).get("judged", {})
        if sum(1 for v in judged.values() if isinstance(v, dict) and "cfg_scale" in v) > 2:
            print("\n" + "\n".join(sweep_rows(name, metrics)))


if __name__ == "__main__":
    main()
