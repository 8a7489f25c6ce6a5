"""`mozart composers`: the composers a trained model knows, with their piece counts."""
from __future__ import annotations

import argparse
import textwrap

from mozart.generation.engine import DEFAULT_MODEL_DIR, read_composers


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, metavar="DIR",
                   help=f"trained model directory (default: {DEFAULT_MODEL_DIR})")


def main(args: argparse.Namespace) -> int:
    composers = read_composers(args.model)
    names, counts = composers["names"], composers.get("n_pieces", [0] * len(composers["names"]))
    uncond, other = composers.get("unconditional_id", 0), composers.get("other_id")
    print(f"{'id':>3}  {'composer':<32} pieces")
    for cid, (name, count) in enumerate(zip(names, counts)):
        if cid != uncond:
            print(f"{cid:>3}  {name:<32} {count:>6}")
    if other is not None:
        rare = sorted(n for n, i in composers.get("composer_to_id", {}).items() if i == other)
        if rare:
            print(textwrap.fill(f"OTHER (id {other}) holds {len(rare)} rarer composers: {', '.join(rare)}",
                                width=100))
    print("(omit --composer, or pass --composer none, for unconditional generation)")
    return 0
