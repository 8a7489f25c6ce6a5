"""Atomic outputs: write to a temporary name in the same folder, fsync, then rename.

A stage killed at any moment leaves either the old complete file or none, never a half-written one.
`read_json` is the reading twin of `write_json`: a missing or corrupt input is a one-line error saying what to do.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mozart.errors import MozartError


def _disk_error(path: Path, exc: OSError) -> MozartError:
    if exc.errno == errno.ENOSPC:
        return MozartError(f"no space left on device while writing {path}: free some disk space and rerun "
                           "(earlier outputs were left intact)")
    return MozartError(f"could not write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs are ordinary, shareable files
    except OSError as exc:  # a full disk can strike before the first byte is written
        raise _disk_error(path, exc) from exc
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # flush file content to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _disk_error(path, exc) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` whole, on failure it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed earlier (SIGKILL skips every cleanup) left its temporary folder behind: remove it now.
        # DVC's repository lock keeps two runs of one stage from sharing these names.
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    except OSError as exc:  # a full disk can strike before the first byte is written
        raise _disk_error(path, exc) from exc
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(path, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: str | os.PathLike, hint: str, required: bool = True) -> dict | None:
    """The JSON object in `path`; a missing file (when `required`), bad JSON or a non-object raises DataError
    ending with `hint` (what the user should do). Returns None for a missing optional file."""
    from mozart.errors import DataError

    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise DataError(f"{path} is missing: {hint}") from None
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): {hint}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} should hold a JSON object: {hint}")
    return value
