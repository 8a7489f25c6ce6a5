"""Shared plumbing for the thin stage scripts: read params.yaml, validate it, build typed configs, report errors.

Stage scripts are the only place YAML is read; the library receives dataclasses.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from mozart.config import build, validate_params
from mozart.errors import MozartError

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_PATH = REPO_ROOT / "params.yaml"


@functools.lru_cache(maxsize=None)
def load_params(path: Path = PARAMS_PATH) -> dict[str, Any]:
    """params.yaml, validated; read once per process so the configs a stage runs with and the params it logs to
    MLflow come from the same read (treat the returned mapping as read-only)."""
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise MozartError(f"{path} not found: run the stage from the repository root") from None
    except yaml.YAMLError as exc:
        raise MozartError(f"{path} is not valid YAML: {exc}") from None
    validate_params(params)
    return params


def configs(*sections: str) -> tuple[int, list[Any]]:
    """Return (seed, [config for each section]) from params.yaml, validated as a whole first."""
    params = load_params()
    return int(params.get("seed", 0)), [build(s, params.get(s)) for s in sections]


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); a MozartError becomes one line on stderr and exit code 2, with no traceback."""
    try:
        main()
    except MozartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
