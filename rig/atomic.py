"""The one way the rig writes a whole file: a temporary file in the same folder, flushed to
disk, then renamed over the target.

A reader (or a run killed half-way) sees the old file or the new one, never a part of it.
Files that grow as a run goes (series.csv, events.jsonl, logs, capture.pcap) are appended
to instead; a run folder whose summary.json still says `incomplete` tells them apart.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; renamed over `path` when the block
    ends normally, removed when it raises (a KeyboardInterrupt too)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextmanager
def atomic_open(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """open() of a temporary file that becomes `path` when the block ends normally."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a whole file; mode {mode!r} is not 'w' or 'wb'")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """JSON, indented by 2, with a final newline."""
    return write_text_atomic(
        path, json.dumps(data, indent=2, sort_keys=sort_keys, default=default) + "\n")


def savefig_atomic(fig: Any, path: Path, **kwargs: Any) -> Path:
    """matplotlib's `fig.savefig`, to a temporary path (format from `path`'s suffix)."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files a killed writer of `path` left beside it: those named after
    a process that is no longer alive (a live writer's file is left alone)."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = _writer_pid(tmp.name[len(path.name) + 2:])
        if pid is not None and not _alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _writer_pid(rest: str) -> int | None:
    """`<pid>-<hex>.tmp` -> pid."""
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """So the rename itself survives a crash of the machine; not every filesystem can."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
