"""Ingest: JSONL, JSON, CSV and Parquet (files, globs, folders) -> Sample rows.

Every input row either becomes a Sample (curate.schema.SAMPLE_SCHEMA) or lands
in the quarantine table with the file, the 1-based line (row for JSON arrays
and Parquet), the column and what was expected; reading never stops at a bad
row. Parsing a text row and reporting where it failed is inherently per row;
everything after it (answer types, ids, meta) is columnar.

>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> rows = [{"question": "1+1?", "answer": "1+1=2\\n#### 2"}, {"question": "?", "answer": "none"}]
>>> _ = (d / "t.jsonl").write_text("\\n".join(json.dumps(r) for r in rows) + "\\n{bad\\n")
>>> res = read_samples(d / "t.jsonl", preset="gsm8k")
>>> res.samples.column("answer").to_pylist(), res.quarantine.num_rows
(['2'], 2)
>>> sorted(res.quarantine.column("line").to_pylist())
[2, 3]
"""

from __future__ import annotations

import csv
import glob as globlib
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.answers import detect_answer_types, last_boxed
from curate.answers import extract_answer as _extract_any
from curate.schema import SAMPLE_SCHEMA, conform, sample_ids
from curate.sources import SourceMapping, resolve_mapping

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}

QUARANTINE_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("file", pa.string()),
    ("line", pa.int64()),  # 1-based line (JSONL, CSV) or row (JSON array, Parquet); 0 = whole file
    ("column", pa.string()),
    ("error", pa.string()),
    ("raw", pa.string()),  # the offending record in full: its text, bad bytes escaped as \\xNN
])

_HASH_CHUNK = 1 << 20


class RowError(ValueError):
    """A row that cannot be mapped: which column, and what was expected."""

    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass
class IngestResult:
    """What `read_samples` read: the Samples, the quarantined rows, and counts."""

    samples: pa.Table
    quarantine: pa.Table
    files: list[str] = field(default_factory=list)
    records: int = 0  # rows seen (ok + quarantined); an empty or unreadable file counts as one

    def __len__(self) -> int:
        return self.samples.num_rows

    def errors(self) -> list[str]:
        """Human-readable quarantine messages: 'file:line: column: error'."""
        return [format_error(r) for r in self.quarantine.to_pylist()]


def format_error(row: dict[str, Any]) -> str:
    """'file:line: column 'c': error' for one quarantine row."""
    where = f"{row['file']}:{row['line']}" if row.get("line") else f"{row['file']}"
    col = f" column {row['column']!r}:" if row.get("column") else ""
    return f"{where}:{col} {row['error']}"


# ------------------------------------------------------------------ file discovery

def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files named by paths, globs (``**`` allowed) and folders, sorted, deduplicated.

    Raises FileNotFoundError naming the pattern that matched nothing.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if any(ch in s for ch in "*?["):
            hits = sorted(Path(p) for p in globlib.glob(s, recursive=True) if Path(p).is_file())
        elif Path(s).is_dir():
            hits = sorted(p for p in Path(s).rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        elif Path(s).is_file():
            hits = [Path(s)]
        else:
            hits = []
        if not hits:
            raise FileNotFoundError(f"{s}: no such file, or no data files "
                                    f"({', '.join(sorted(FORMATS))}) match it")
        found.extend(hits)
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


# ----------------------------------------------------------------- format readers
# Each yields (line, record | None, error | None, raw | None): one entry per input row.
# `raw` is the text of a record that could not be parsed (so it can be fixed and
# re-ingested); bytes that are not UTF-8 are kept as backslash escapes (\\xff).

Record = tuple[int, dict | None, str | None, str | None]


def _raw_text(data: bytes) -> str:
    """A line's bytes as text, undecodable bytes escaped (\\xNN), the line break dropped.

    >>> _raw_text(b'{"a": 1\\xff}\\n')
    '{"a": 1\\\\xff}'
    """
    return data.decode("utf-8", errors="backslashreplace").rstrip("\r\n")


def _iter_jsonl(path: Path) -> Iterator[Record]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:  # decode per line, so one bad byte costs one row, not the rest of the file
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not valid UTF-8 (byte {exc.start}): expected UTF-8 text", _raw_text(raw)
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                yield (lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno}): expected one JSON "
                       "object per line", _raw_text(raw))
                continue
            if not isinstance(obj, dict):
                yield lineno, None, f"expected a JSON object, got {type(obj).__name__}", _raw_text(raw)
            else:
                yield lineno, obj, None, None


def _iter_json(path: Path) -> Iterator[Record]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield (exc.lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno}): expected a JSON "
               "array of objects", text)
        return
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            data = lists[0]
        else:
            data = [data]
    if not isinstance(data, list):
        yield 0, None, f"expected a JSON array of objects, got {type(data).__name__}", text
        return
    for i, obj in enumerate(data, start=1):
        if isinstance(obj, dict):
            yield i, obj, None, None
        else:
            yield (i, None, f"expected a JSON object, got {type(obj).__name__}",
                   json.dumps(obj, ensure_ascii=False))


def _iter_csv(path: Path) -> Iterator[Record]:
    csv.field_size_limit(2**31 - 1)  # long solutions exceed the 128 KiB default
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        start = reader.line_num + 1
        for values in reader:
            if not any(v.strip() for v in values):
                start = reader.line_num + 1
                continue
            if len(values) != len(header):
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow(values)
                yield (start, None, f"expected {len(header)} fields (the header's), got {len(values)}",
                       buf.getvalue())
            else:
                # CSV has no nulls: an empty field is a missing value
                yield (start, {k: (v if v != "" else None) for k, v in zip(header, values, strict=True)},
                       None, None)
            start = reader.line_num + 1


def _iter_parquet(path: Path) -> Iterator[Record]:
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec, None, None


_READERS = {"jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv, "parquet": _iter_parquet}


# ------------------------------------------------------------------ row mapping

def _text(rec: dict, col: str | None, *, required: bool, allow_number: bool = False) -> str | None:
    if col is None:
        return None
    if col not in rec:
        if required:
            raise RowError(col, f"missing required column {col!r}: expected a string")
        return None
    v = rec[col]
    if v is None:
        if required:
            raise RowError(col, "expected a string, got null")
        return None
    if isinstance(v, str):
        if required and not v.strip():
            raise RowError(col, "expected a non-empty string")
        return v
    if allow_number and isinstance(v, int | float) and not isinstance(v, bool):
        if isinstance(v, float) and not math.isfinite(v):
            raise RowError(col, f"expected a finite number or a string, got {v!r}")
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    shown = json.dumps(v, ensure_ascii=False, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise RowError(col, f"expected a string, got {type(v).__name__}: {shown}")


def _str_list(v: Any, col: str) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):  # CSV cells hold lists as JSON
            try:
                v = json.loads(s)
            except json.JSONDecodeError as exc:
                raise RowError(col, f"expected a JSON list of strings ({exc.msg})") from exc
        else:
            return [v] if s else []
    if not isinstance(v, list | tuple):
        raise RowError(col, f"expected a string or a list of strings, got {type(v).__name__}")
    out = []
    for x in v:
        if isinstance(x, dict) and "path" in x:  # Sample-schema image structs
            x = x["path"]
        if isinstance(x, int | float) and not isinstance(x, bool):
            x = str(x)
        if not isinstance(x, str):
            raise RowError(col, f"expected a list of strings, got an item of type {type(x).__name__}")
        out.append(x)
    return out


def _extract(raw: str, how: str, col: str) -> str:
    if how == "value":
        ans = raw.strip()
    elif how == "gsm8k":
        if "####" not in raw:
            raise RowError(col, "expected the answer after '####' (GSM8K format '... #### 42')")
        ans = raw.rsplit("####", 1)[1].strip()
    elif how == "boxed":
        b = last_boxed(raw)
        if b is None:
            raise RowError(col, "expected a final answer inside \\boxed{...} (braces balanced)")
        ans = b
    else:
        a = _extract_any(raw)
        if a is None:
            raise RowError(col, "expected a final answer (\\boxed{}, '####', '<answer>' or 'the answer is')")
        ans = a
    if not ans:
        raise RowError(col, "expected a non-empty answer")
    return ans


def _slug(s: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", s.strip().lower()).strip("_")


def _level(v: Any) -> Any:
    if isinstance(v, str):
        m = re.search(r"\d+", v)
        return int(m.group()) if m else v
    return v


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _ImageResolver:
    """Resolves image paths relative to the data file and hashes each file once."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cache: dict[str, str] = {}

    def __call__(self, paths: list[str], col: str, given: list[str | None] | None = None
                 ) -> list[dict[str, str]]:
        out = []
        for i, p in enumerate(paths):
            full = p if os.path.isabs(p) else os.path.normpath(os.path.join(self.base, p))
            digest = given[i] if given and i < len(given) and given[i] else None
            if digest is None:
                if full not in self.cache:
                    if not os.path.isfile(full):
                        raise RowError(col, f"image file not found: {full} (expected a path "
                                            f"relative to {self.base or '.'} or absolute)")
                    self.cache[full] = _sha256(full)
                digest = self.cache[full]
            out.append({"path": full, "sha256": digest})
        return out


def _map_row(rec: dict, m: SourceMapping, images: _ImageResolver) -> dict[str, Any]:
    prompt = _text(rec, m.prompt, required=True)
    raw_answer = _text(rec, m.answer, required=m.answer is not None, allow_number=True)
    answer = _extract(raw_answer, m.answer_from, m.answer) if raw_answer is not None else None
    solution = _text(rec, m.solution, required=False)
    options = _str_list(rec.get(m.options), m.options) if m.options else []
    img_paths: list[str] = []
    given_hashes: list[str | None] | None = None
    if m.images and rec.get(m.images) is not None:
        raw_imgs = rec[m.images]
        img_paths = _str_list(raw_imgs, m.images)
        if isinstance(raw_imgs, list) and raw_imgs and isinstance(raw_imgs[0], dict):
            given_hashes = [x.get("sha256") for x in raw_imgs]
    imgs = images(img_paths, m.images or "images", given_hashes)
    domain = _text(rec, m.domain, required=False) or m.default_domain
    if domain and m.slug_domain:
        domain = _slug(domain)
    task = _text(rec, m.task, required=False) or ("choice" if options else m.default_task)
    difficulty = None
    if m.difficulty and rec.get(m.difficulty) is not None:
        d = rec[m.difficulty]
        try:
            difficulty = float(d)
        except (TypeError, ValueError) as exc:
            raise RowError(m.difficulty, f"expected a number in [0, 1], got {d!r}") from exc
        if not 0.0 <= difficulty <= 1.0:
            raise RowError(m.difficulty, f"expected a number in [0, 1], got {d!r}")
    answer_type = _text(rec, m.answer_type, required=False)
    if m.sample_schema:
        meta_s = rec.get("meta")
        meta = {}
        if isinstance(meta_s, str) and meta_s.strip():
            try:
                meta = json.loads(meta_s)
            except json.JSONDecodeError as exc:
                raise RowError("meta", f"expected a JSON object string ({exc.msg})") from exc
        elif isinstance(meta_s, dict):
            meta = meta_s
        if not isinstance(meta, dict):
            raise RowError("meta", f"expected a JSON object, got {type(meta).__name__}")
        n_rollouts = rec.get("n_rollouts")
        given_id = rec.get("id") if isinstance(rec.get("id"), str) else None
    else:
        meta, n_rollouts, given_id = {}, None, None
        for col in m.meta:
            if col in rec and rec[col] is not None:
                meta[col] = rec[col]
        if m.level and rec.get(m.level) is not None:
            meta["level"] = _level(rec[m.level])
    if options:
        meta["options"] = options
        if m.options_in_prompt and not m.sample_schema:
            letters = "ABCDEFGHIJ"
            if [o.strip() for o in options] == list(letters[: len(options)]):
                prompt = f"{prompt}\n\nAnswer with one of: {', '.join(options)}."
            else:
                lines = "\n".join(f"({letters[i]}) {o}" for i, o in enumerate(options[:10]))
                prompt = f"{prompt}\n\nChoices:\n{lines}"
    return {
        "id": given_id, "domain": domain, "task": task, "prompt": prompt, "images": imgs,
        "answer": answer, "answer_type": answer_type, "solution": solution,
        "difficulty": difficulty, "n_rollouts": n_rollouts,
        "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str),
        "_has_options": bool(options),
    }


# ------------------------------------------------------------------- entry point

def guess_preset(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The preset whose columns match the first record of `path`.

    Sample schema (prompt + answer) -> sample; question + options -> mathv;
    question + answer -> gsm8k; problem + solution -> math.
    """
    path = Path(path)
    kind = fmt or FORMATS.get(path.suffix.lower())
    keys: set[str] = set()
    if kind in _READERS:
        with_keys = (rec for _, rec, err, _raw in _READERS[kind](path) if err is None)
        keys = set(next(with_keys, None) or {})
    for preset, needed in (("sample", {"prompt", "answer"}), ("mathv", {"question", "options"}),
                           ("gsm8k", {"question", "answer"}), ("math", {"problem", "solution"})):
        if needed <= keys:
            return preset
    raise ValueError(f"{path}: cannot guess the preset from columns {sorted(keys)}: expected the "
                     "columns of one of gsm8k, math, mathv, sample, or an explicit mapping")


def read_samples(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    preset: str | None = None,
    *,
    mapping: SourceMapping | dict | None = None,
    source: str | None = None,
    domain: str | None = None,
    fmt: str | None = None,
    limit: int | None = None,
) -> IngestResult:
    """Read files, globs or folders into Sample rows plus a quarantine table.

    `preset` is one of curate.sources.PRESETS (gsm8k, math, mathv, sample) or
    ``"auto"`` (guessed from the first file's columns);
    `mapping` (a SourceMapping or dict) overrides preset fields or stands
    alone. `source` names the rows' `source` (default: the preset, else the
    file stem); `domain` overrides every row's domain; `fmt` forces a format
    (jsonl, json, csv, parquet) instead of the file suffix; `limit` stops after
    that many records per file. Image paths are resolved relative to the data
    file and hashed (sha256); ids are curate.schema.sample_id(prompt, answer,
    image sha256s) unless a Sample-schema row already has one.

    >>> res = read_samples("../shared/data/grade-school-math/test.jsonl", "gsm8k", limit=2)  # doctest: +SKIP
    """
    files = expand_paths(paths)
    if preset == "auto":
        preset = guess_preset(files[0], fmt)
    m = resolve_mapping(preset, mapping)
    rows: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    records = 0
    for path in files:
        kind = fmt or FORMATS.get(path.suffix.lower())
        name = source or preset or path.stem
        if kind not in _READERS:
            raise ValueError(f"{path}: unknown format {path.suffix!r}: expected one of "
                             f"{sorted(FORMATS)} or fmt= one of {sorted(_READERS)}")
        resolver = _ImageResolver(path.parent)
        n_file = 0
        try:
            for line, rec, err, raw in _READERS[kind](path):
                n_file += 1
                records += 1
                if err is None:
                    try:
                        row = _map_row(rec, m, resolver)  # type: ignore[arg-type]
                        row["source"] = name
                        rows.append(row)
                    except RowError as exc:
                        err, col = str(exc), exc.column
                else:
                    col = None
                if err is not None:
                    if rec is not None:  # parsed, but it does not map: the record as JSON
                        raw = json.dumps(rec, ensure_ascii=False, default=str)
                    quarantine.append({"source": name, "file": str(path), "line": line, "column": col,
                                       "error": err, "raw": raw})
                if limit is not None and n_file >= limit:
                    break
        except (UnicodeDecodeError, OSError, pa.ArrowException, csv.Error) as exc:
            n_file += 1
            records += 1
            quarantine.append({"source": name, "file": str(path), "line": 0, "column": None,
                               "error": f"unreadable {kind} file: {exc}", "raw": None})
        if n_file == 0:
            records += 1
            quarantine.append({"source": name, "file": str(path), "line": 0, "column": None,
                               "error": f"empty file: expected at least one {kind} record",
                               "raw": None})
    return IngestResult(
        samples=_to_table(rows, domain), quarantine=_quarantine_table(quarantine),
        files=[str(p) for p in files], records=records,
    )


def _quarantine_table(rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return QUARANTINE_SCHEMA.empty_table()
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def _to_table(rows: list[dict[str, Any]], domain: str | None) -> pa.Table:
    if not rows:
        return SAMPLE_SCHEMA.empty_table()
    cols = {name: [r[name] for r in rows] for name in SAMPLE_SCHEMA.names if name in rows[0]}
    cols["source"] = [r["source"] for r in rows]
    df = pl.DataFrame(
        {k: v for k, v in cols.items() if k != "images"},
        schema_overrides={"difficulty": pl.Float64, "n_rollouts": pl.Int64, "id": pl.Utf8,
                          "answer_type": pl.Utf8, "domain": pl.Utf8, "task": pl.Utf8,
                          "solution": pl.Utf8},
    )
    has_options = pl.Series([r["_has_options"] for r in rows])
    detected = detect_answer_types(df["answer"], has_options)
    df = df.with_columns(
        pl.when(pl.col("answer_type").is_in(["numeric", "choice", "expression", "text"]))
        .then(pl.col("answer_type")).otherwise(detected).alias("answer_type"),
        pl.lit(domain).alias("domain") if domain else pl.col("domain"),
        pl.col("n_rollouts").fill_null(0),
    )
    table = df.to_arrow()
    images = pa.array(cols["images"], type=SAMPLE_SCHEMA.field("images").type)
    table = table.append_column("images", images)
    missing = [i for i, v in enumerate(cols["id"]) if v is None]
    if missing:
        prompts, answers = table.column("prompt").to_pylist(), table.column("answer").to_pylist()
        hashes = [[im["sha256"] for im in imgs] for imgs in cols["images"]]
        fresh = sample_ids([prompts[i] for i in missing], [answers[i] or "" for i in missing],
                           [hashes[i] for i in missing])
        ids = list(cols["id"])
        for i, v in zip(missing, fresh, strict=True):
            ids[i] = v
        table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids, pa.string()))
    return conform(table, SAMPLE_SCHEMA)
