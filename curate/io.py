"""Atomic file writes (a crash never leaves a torn file behind) and one table reader.

The one atomic writer of the project: every room writes Parquet, JSON and text
through it (sampling too: this module imports nothing of thresher and nothing
heavier than pyarrow, see docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import DataError
from curate.lazy import lazy_import

if TYPE_CHECKING:
    import pyarrow as pa
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pa = lazy_import("pyarrow")


def _default_mode() -> int:
    # mkstemp creates 0600 files; the renamed result should get the mode any
    # other file written by this process gets (0644 under the usual umask).
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    return Path(tmp)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write `table` to `path` via a temp file in the same folder, then rename.

    >>> import pyarrow as pa, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
    >>> write_parquet_atomic(pa.table({"a": [1]}), p).exists()
    True
    """
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        pq.write_table(table, tmp, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write `text` to `path` atomically (temp file, fsync, rename)."""
    return write_bytes_atomic(text.encode("utf-8"), path, fsync=True)


def write_bytes_atomic(data: bytes, path: str | os.PathLike, fsync: bool = False) -> Path:
    """Write `data` to `path` atomically (temp file, rename; `fsync` first if asked).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.bin"
    >>> write_bytes_atomic(b"abc", p).read_bytes()
    b'abc'
    """
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as indented, key-sorted JSON atomically."""
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def read_table(path: str | os.PathLike) -> pa.Table:
    """A table from Parquet (a file or a folder of parts), JSONL / JSON lines, or CSV.

    A missing file or another suffix is a DataError naming the path.

    >>> import pyarrow as pa, tempfile, pathlib
    >>> p = write_parquet_atomic(pa.table({"a": [1]}), pathlib.Path(tempfile.mkdtemp()) / "t.parquet")
    >>> read_table(p).num_rows
    1
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {str(path)!r} not found")
    import pyarrow.parquet as pq
    if p.is_dir() or p.suffix in (".parquet", ".pq"):
        reader = pq.read_table
    elif p.suffix in (".jsonl", ".json", ".csv"):
        import polars as pl

        def reader(f):
            return (pl.read_csv(f) if p.suffix == ".csv" else pl.read_ndjson(f)).to_arrow()
    else:
        raise DataError(f"data file {str(path)!r}: expected .parquet, .jsonl, .csv or a folder of Parquet")
    try:
        return reader(p)
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
