"""The user's alias table (`organize.aliases`) and the audit of composer labels (`data/organized/composers.json`).

The audit lists every composer label organize saw, what it became and why (`exact`, `alias`, `fuzzy score 93`,
`prefix`, `user alias`, `placeholder`, `ambiguous`, `unmatched`; see `mozart.data.composer_catalogue`), with the
number of input files that carried it, so one file shows every merge a researcher may want to check.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from mozart.data.composer_catalogue import UNKNOWN, Resolution, fold
from mozart.errors import DataError

# Resolutions that rename a label onto a listed composer (a merge, if the spelling differs).
RENAMING = ("exact", "alias", "fuzzy", "prefix", "user alias")


def load_user_aliases(path: str | Path) -> dict[str, str]:
    """`label -> composer` from a CSV (two columns, optional `label,composer` header) or a YAML mapping."""
    import yaml  # a data file the user writes, like metadata.csv (params.yaml is read by the stage only)

    path = Path(path)
    if not path.is_file():
        raise DataError(f"organize.aliases file {path} does not exist: fix the path in params.yaml or set "
                        "organize.aliases: '' (no user aliases)")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(table, dict):
                raise ValueError("the YAML file must be one mapping of label: composer")
            pairs = [(str(k), str(v)) for k, v in table.items()]
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
            if rows and [c.strip().lower() for c in rows[0][:2]] == ["label", "composer"]:
                rows = rows[1:]
            bad = [i for i, r in enumerate(rows, start=1) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
            if bad:
                raise ValueError(f"row {bad[0]} does not have two non-empty columns (label, composer)")
            pairs = [(r[0].strip(), r[1].strip()) for r in rows]
    except yaml.YAMLError as exc:
        raise DataError(f"organize.aliases file {path} is not valid YAML ({exc})") from None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"organize.aliases file {path} is not readable ({exc}): write one `label,composer` per "
                        "line (CSV) or a `label: composer` mapping (YAML)") from None
    return dict(pairs)


@dataclass(frozen=True)
class LabelCounts:
    labels: int  # distinct labels seen
    merges: int  # labels renamed onto a composer spelled differently
    fuzzy: int  # ... of which by a fuzzy match
    placeholders: int  # labels that name no composer


def _is_merge(label: str, resolution: Resolution) -> bool:
    return resolution.how.startswith(RENAMING) and fold(label) != fold(resolution.composer)


def count_labels(resolutions: dict[str, Resolution]) -> LabelCounts:
    merges = [r for label, r in resolutions.items() if _is_merge(label, r)]
    return LabelCounts(len(resolutions), len(merges), sum(r.how.startswith("fuzzy") for r in merges),
                       sum(r.is_placeholder for r in resolutions.values()))


def audit(resolutions: dict[str, Resolution], files_per_label: dict[str, int]) -> dict:
    """The contents of composers.json: every label, what it became and why; labels per composer; the counts."""
    labels = [{"label": label, "composer": r.composer, "how": r.how, "note": r.note,
               "merged": _is_merge(label, r), "files": files_per_label.get(label, 0)}
              for label, r in resolutions.items()]
    labels.sort(key=lambda d: (d["composer"] == UNKNOWN, fold(d["composer"]), fold(d["label"]), d["label"]))
    by_composer: dict[str, list[str]] = {}
    for d in labels:
        if d["composer"] != UNKNOWN:
            by_composer.setdefault(d["composer"], []).append(d["label"])
    counts = count_labels(resolutions)
    return {"labels_seen": counts.labels, "merged_labels": counts.merges, "fuzzy_merges": counts.fuzzy,
            "placeholder_labels": counts.placeholders, "composers": len(by_composer),
            "unknown_composer_files": sum(d["files"] for d in labels if d["composer"] == UNKNOWN),
            "labels": labels, "by_composer": dict(sorted(by_composer.items(), key=lambda kv: fold(kv[0])))}
