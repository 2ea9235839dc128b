"""Read rollout logs (ours and other frameworks') into the rollout-log schema.

`read_rollouts(path_or_glob, format=...)` returns an Arrow table with exactly
`curate.rollout_log.ROLLOUT_SCHEMA`, whatever wrote the log:

==============  ==========================================================  ====================================
format          what it reads                                               prompt id
==============  ==========================================================  ====================================
thresher        ``RUN/rollouts/part-*.parquet`` (curate.rollout_log)       ``sample_id`` column
trl             ``OUTPUT_DIR/completions/completions_*.parquet`` written    derived from the prompt text
                by TRL's GRPOTrainer with ``log_completions=True``
verl            ``trainer.rollout_data_dir`` dumps: ``<step>.jsonl`` with   derived from input (+ ``gts``)
                input / output / gts / score / step (+ reward extras)
open_instruct   ``--save_traces`` dumps: ``<run>_rollouts_<shard>.jsonl``   derived from the prompt tokens
                (token ids; pass ``tokenizer=`` to decode to text)          (+ ground_truth)
jsonl           plain JSONL: prompt, response, reward (+ optional           ``sample_id``/``id`` or derived
                sample_id, step, correct, domain, answer ...)
math_eval       Qwen2.5-Math / math-evaluation-harness outputs: one line    derived from question + gt
                per problem with lists ``code``/``pred``/``score``
==============  ==========================================================  ====================================

When a log has no stable prompt id, the id is `curate.schema.sample_id` of the
prompt text (and the reference answer where the log has one), the same
function curation names samples with, so imported logs join curated sets.
That is announced with a `RolloutImportWarning` and recorded in the table's
import info (`import_info(table)["derived_sample_id"]`).

A part file that cannot be read (truncated Parquet, a torn JSONL line) is
skipped with a warning naming it and listed in ``import_info(...)["skipped"]``;
the other parts are still read. A missing column or a value of the wrong type
is a `RolloutImportError` naming the file, the line and the column.

>>> import json, tempfile, pathlib, warnings
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
>>> _ = p.write_text(json.dumps({"prompt": "1+1=", "response": "2", "reward": 1.0}) + "\\n")
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     t = read_rollouts(p)
>>> t.num_rows, t.column("correct").to_pylist(), import_info(t)["derived_sample_id"]
(1, [True], True)
"""

from __future__ import annotations

import glob as globlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate import rollout_log
from curate.errors import DataError
from curate.rollout_log import ROLLOUT_REQUIRED, ROLLOUT_SCHEMA
from curate.schema import conform, sample_id

FORMATS = ("thresher", "trl", "verl", "open_instruct", "jsonl", "math_eval")
_ALIASES = {"qwen_math": "math_eval", "open-instruct": "open_instruct", "ours": "thresher"}
INFO_KEY = b"thresher.import"


class RolloutImportError(DataError):
    """A log that cannot be mapped to the rollout schema (names file, line, column)."""


class RolloutImportWarning(UserWarning):
    """Something the user should know about an import: derived ids, skipped parts."""


# ----------------------------------------------------------------------------- files


def _expand(path_or_glob: str | os.PathLike | Sequence[str | os.PathLike], fmt: str) -> list[Path]:
    """Files a format reads from a file, a folder, a glob, or a list of those."""
    if isinstance(path_or_glob, list | tuple):
        out: list[Path] = []
        for p in path_or_glob:
            out.extend(_expand(p, fmt))
        return out
    s = str(path_or_glob)
    if any(c in s for c in "*?["):
        matches = sorted(Path(p) for p in globlib.glob(s, recursive=True))
        files = [f for f in matches if f.is_file()]
        for d in (m for m in matches if m.is_dir()):  # a glob of run / output folders
            files.extend(_expand(d, fmt))
        if not files:
            raise RolloutImportError(f"{s}: the glob matches no file")
        return files
    p = Path(s)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise RolloutImportError(f"{p}: no such file or folder")
    sub = {"thresher": "rollouts", "trl": "completions"}.get(fmt)
    if sub and (p / sub).is_dir():
        p = p / sub
    pattern = {"thresher": "*.parquet", "trl": "*.parquet"}.get(fmt, "*.jsonl")
    files = sorted(f for f in p.glob(pattern) if not f.name.startswith("."))
    if fmt == "open_instruct":
        files = [f for f in files if not f.name.endswith("_metadata.jsonl")]
    if fmt == "verl":  # verl names dumps by step: 1.jsonl, 2.jsonl ... 10.jsonl
        files.sort(key=lambda f: (not f.stem.isdigit(), int(f.stem) if f.stem.isdigit() else 0, f.name))
    if not files:
        raise RolloutImportError(f"{p}: no {pattern} file for format {fmt!r}")
    return files


def _first_record(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RolloutImportError(f"{path}:1: not JSON ({exc})") from exc
    return {}


def detect_format(path_or_glob: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """Guess the log format from the folder layout, the Parquet columns or the first JSON line."""
    first = path_or_glob[0] if isinstance(path_or_glob, list | tuple) else path_or_glob
    p = Path(str(first))
    if p.is_dir():
        if (p / "rollouts").is_dir():
            return "thresher"
        if (p / "completions").is_dir():
            return "trl"
        if any(p.glob("*.parquet")):
            target = sorted(p.glob("*.parquet"))[0]
        elif any(f for f in p.glob("*.jsonl") if not f.name.endswith("_metadata.jsonl")):
            target = sorted(f for f in p.glob("*.jsonl") if not f.name.endswith("_metadata.jsonl"))[0]
        else:
            raise RolloutImportError(f"{p}: no .parquet or .jsonl file to detect a format from")
    else:
        target = _expand(first, "jsonl" if str(first).endswith(".jsonl") else "thresher")[0]
    if target.suffix == ".parquet":
        try:
            names = set(pq.read_schema(target).names)
        except Exception as exc:
            raise RolloutImportError(f"{target}: cannot read the Parquet schema ({exc})") from exc
        if {"sample_id", "response_idx"} <= names:
            return "thresher"
        if "completion" in names:
            return "trl"
        raise RolloutImportError(
            f"{target}: cannot tell the format from columns {sorted(names)}; pass format="
        )
    keys = set(_first_record(target))
    if {"prompt_tokens", "response_tokens", "prompt_idx"} <= keys:
        return "open_instruct"
    if {"input", "output", "score"} <= keys:
        return "verl"
    if ({"question", "gt"} <= keys or {"query", "gt"} <= keys) and "score" in keys:
        return "math_eval"
    if {"prompt", "response"} <= keys or {"prompt", "completion"} <= keys:
        return "jsonl"
    raise RolloutImportError(f"{target}: cannot tell the format from keys {sorted(keys)}; pass format=")


# ----------------------------------------------------------------------------- readers


def _read_jsonl(path: Path, info: dict) -> list[dict]:
    """Records of a JSONL file; a torn line is quarantined in info["bad_lines"], not lost."""
    records: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                info["bad_lines"].append({"file": str(path), "line": lineno, "error": str(exc),
                                          "text": line.rstrip("\r\n")})
                warnings.warn(f"{path}:{lineno}: skipped a line that is not JSON ({exc})",
                              RolloutImportWarning, stacklevel=4)
                continue
            if not isinstance(rec, dict):
                raise RolloutImportError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            rec["__line"] = lineno
            records.append(rec)
    return records


def _column(records: list[dict], key: str, typ: pa.DataType, path: Path, *, required: bool,
            aliases: Sequence[str] = ()) -> pa.Array:
    """One typed column from JSON records; a wrong type names file, line and column."""
    keys = (key, *aliases)
    present = next((k for k in keys if any(k in r for r in records[:1000])), None)
    if present is None:
        if required:
            raise RolloutImportError(
                f"{path}: missing column {key!r}" + (f" (or {', '.join(map(repr, aliases))})" if aliases else "")
                + f"; expected {typ}")
        return pa.nulls(len(records), typ)
    values = [r.get(present) for r in records]
    try:
        arr = pa.array(values, type=typ, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        for r, v in zip(records, values, strict=True):  # error path only: find the first bad row
            try:
                pa.array([v], type=typ)
            except Exception:
                raise RolloutImportError(
                    f"{path}:{r.get('__line', '?')}: column {present!r}: expected {typ}, got {v!r:.80}"
                ) from None
        raise
    if required and arr.null_count:
        bad = next(r for r, v in zip(records, values, strict=True) if v is None)
        raise RolloutImportError(f"{path}:{bad.get('__line', '?')}: column {present!r} is null; it is required")
    return arr


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal blocks: keep the text, mark the images
        return "".join(b.get("text", "") if b.get("type") == "text" else f"<{b.get('type', 'block')}>"
                       for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def _chat_to_text(value: Any) -> tuple[str, str]:
    """(stored prompt text, text the id is derived from) of a TRL prompt / completion.

    A conversational value (list of messages) is stored as its JSON, losslessly;
    its id comes from the user turns only, so it matches the curated question."""
    if value is None:
        return "", ""
    if isinstance(value, str):
        return value, value
    msgs = list(value)
    user = "\n".join(_message_text(m.get("content")) for m in msgs if m.get("role") == "user")
    return json.dumps(msgs, ensure_ascii=False, default=str), user


def _completion_text(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    return "".join(_message_text(m.get("content")) for m in value if m.get("role", "assistant") == "assistant")


def _read_thresher(files: list[Path], info: dict, **_: Any) -> list[pa.Table]:
    try:
        return rollout_log.read_parts(files, lambda f, exc: _skip(f, exc, info))
    except rollout_log.RolloutLogError as exc:
        raise RolloutImportError(str(exc)) from None


def _read_trl(files: list[Path], info: dict, *, reward_columns: Sequence[str] | None = None,
              reward_weights: Sequence[float] | None = None, **_: Any) -> list[pa.Table]:
    tables = []
    for f in files:
        try:
            raw = pq.read_table(f)
        except Exception as exc:
            _skip(f, exc, info)
            continue
        if raw.num_rows == 0:
            continue
        cols = raw.column_names
        for need in ("prompt", "completion"):
            if need not in cols:
                raise RolloutImportError(f"{f}: missing column {need!r} (TRL completions logs have "
                                         "step, prompt, completion, one column per reward function, advantage)")
        known = {"step", "prompt", "completion", "advantage", "image", "images"}
        # one numeric column per reward function (TRL names them after the function)
        rcols = list(reward_columns) if reward_columns else [
            fld.name for fld in raw.schema if fld.name not in known and fld.name not in ("__index_level_0__",)
            and (pa.types.is_floating(fld.type) or pa.types.is_integer(fld.type))]
        if not rcols:
            raise RolloutImportError(f"{f}: no reward column (numeric columns besides step/advantage); "
                                     "pass reward_columns=")
        for c in rcols:
            if c not in cols:
                raise RolloutImportError(f"{f}: missing reward column {c!r}")
            if not (pa.types.is_floating(raw.schema.field(c).type) or pa.types.is_integer(raw.schema.field(c).type)):
                raise RolloutImportError(f"{f}: column {c!r}: expected a number, got {raw.schema.field(c).type}")
        info.setdefault("reward_columns", rcols)
        weights = list(reward_weights) if reward_weights else [1.0] * len(rcols)
        df = pl.from_arrow(raw.select(rcols + [c for c in ("step", "advantage") if c in cols]))
        # TRL's total reward: the weighted nansum of the reward functions
        reward = pl.sum_horizontal([pl.col(c).cast(pl.Float64).fill_nan(None).fill_null(0.0) * w
                                    for c, w in zip(rcols, weights, strict=True)])
        stem_step = f.stem.rsplit("_", 1)[-1]
        step = pl.col("step").cast(pl.Int64) if "step" in cols else pl.lit(int(stem_step) if stem_step.isdigit() else 0)
        out = df.select(step.alias("step"), reward.alias("reward"),
                        *([pl.col("advantage").cast(pl.Float64)] if "advantage" in cols else []))
        acc = next((c for c in rcols if "accuracy" in c.lower() or "correct" in c.lower()), None)
        if acc is not None:  # a correctness reward function: it, not the total, says "correct"
            out = out.with_columns(df.select(pl.col(acc).fill_nan(None) > 0).to_series().alias("correct"))
        prompt_col, completion_col = raw.column("prompt"), raw.column("completion")
        if pa.types.is_string(prompt_col.type) or pa.types.is_large_string(prompt_col.type):
            prompts = ids_from = prompt_col.cast(pa.string())
        else:  # conversational: list of messages, converted message by message
            pairs = [_chat_to_text(v) for v in prompt_col.to_pylist()]
            prompts = pa.array([p for p, _ in pairs], pa.string())
            ids_from = pa.array([u for _, u in pairs], pa.string())
        if pa.types.is_string(completion_col.type) or pa.types.is_large_string(completion_col.type):
            completions = completion_col.cast(pa.string())
        else:
            completions = pa.array([_completion_text(v) for v in completion_col.to_pylist()], pa.string())
        t = out.to_arrow()
        for name, arr in (("prompt", prompts), ("_id_text", ids_from), ("response", completions)):
            t = t.append_column(name, arr)
        tables.append(t)
    info["derived_sample_id"] = True
    return tables


def _read_verl(files: list[Path], info: dict, **_: Any) -> list[pa.Table]:
    tables = []
    for f in files:
        recs = _read_jsonl(f, info)
        if not recs:
            continue
        t = {
            "prompt": _column(recs, "input", pa.string(), f, required=True),
            "response": _column(recs, "output", pa.string(), f, required=True),
            "reward": _column(recs, "score", pa.float64(), f, required=True),
            "step": _column(recs, "step", pa.int64(), f, required=False),
            "_answer": _gts(recs),
        }
        if t["step"].null_count == len(recs) and f.stem.isdigit():
            t["step"] = pa.array([int(f.stem)] * len(recs), pa.int64())
        for key in ("acc", "correct", "is_correct", "accuracy"):  # verl reward extras
            if key in recs[0]:
                t["correct"] = pa.array([bool(r.get(key)) if r.get(key) is not None else None for r in recs],
                                        pa.bool_())
                break
        for key in ("data_source", "domain"):
            if key in recs[0]:
                t["domain"] = _column(recs, key, pa.string(), f, required=False)
                break
        tables.append(pa.table(t))
    info["derived_sample_id"] = True
    return tables


def _gts(recs: list[dict], key: str = "gts") -> pa.Array:
    def one(v: Any) -> str | None:
        if v is None or isinstance(v, str):
            return v
        return json.dumps(v, ensure_ascii=False, default=str)
    return pa.array([one(r.get(key)) for r in recs], pa.string())


def _read_open_instruct(files: list[Path], info: dict, *, tokenizer: Any = None, **_: Any) -> list[pa.Table]:
    decode: Callable[[list[int]], str]
    if tokenizer is None:
        decode = lambda toks: " ".join(map(str, toks))  # noqa: E731
        info["token_ids_as_text"] = True
        warnings.warn(
            f"{files[0]}: open-instruct logs hold token ids only; prompt/response hold the ids as "
            "space-separated text. Pass tokenizer= (a transformers tokenizer or a local path) to decode.",
            RolloutImportWarning, stacklevel=3)
    else:
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
        decode = lambda toks: tokenizer.decode(toks, skip_special_tokens=True)  # noqa: E731
    tables = []
    for f in files:
        recs = _read_jsonl(f, info)
        if not recs:
            continue
        ptoks = _column(recs, "prompt_tokens", pa.list_(pa.int64()), f, required=True).to_pylist()
        rtoks = _column(recs, "response_tokens", pa.list_(pa.int64()), f, required=True).to_pylist()
        reason = _column(recs, "finish_reason", pa.string(), f, required=False).to_pylist()
        t = {
            "step": _column(recs, "step", pa.int64(), f, required=True),
            "prompt": pa.array([decode(p) for p in ptoks], pa.string()),
            "response": pa.array([decode(r) for r in rtoks], pa.string()),
            "reward": _column(recs, "reward", pa.float64(), f, required=True),
            "advantage": _column(recs, "advantage", pa.float64(), f, required=False),
            "domain": _column(recs, "dataset", pa.string(), f, required=False),
            "prompt_tokens": pa.array([len(p) for p in ptoks], pa.int64()),
            "response_tokens": pa.array([len(r) for r in rtoks], pa.int64()),
            # a response cut by the length limit is not well formed
            "format_ok": pa.array([None if r is None else r == "stop" for r in reason], pa.bool_()),
            "_answer": _gts(recs, "ground_truth"),
        }
        tables.append(pa.table(t))
    info["derived_sample_id"] = True
    return tables


def _read_jsonl_plain(files: list[Path], info: dict, **_: Any) -> list[pa.Table]:
    tables = []
    for f in files:
        recs = _read_jsonl(f, info)
        if not recs:
            continue
        t = {
            "prompt": _column(recs, "prompt", pa.string(), f, required=True, aliases=("question", "query")),
            "response": _column(recs, "response", pa.string(), f, required=True, aliases=("completion", "output")),
            "reward": _column(recs, "reward", pa.float64(), f, required=True, aliases=("score",)),
        }
        opt = {"step": pa.int64(), "correct": pa.bool_(), "format_ok": pa.bool_(), "domain": pa.string(),
               "advantage": pa.float64(), "response_idx": pa.int64(), "group": pa.int64(),
               "run_id": pa.string(), "prompt_tokens": pa.int64(), "response_tokens": pa.int64()}
        for key, typ in opt.items():
            if key in recs[0]:
                t[key] = _column(recs, key, typ, f, required=False)
        sid = next((k for k in ("sample_id", "id", "prompt_id") if k in recs[0]), None)
        if sid is not None:
            t["sample_id"] = pa.array([None if r.get(sid) is None else str(r[sid]) for r in recs], pa.string())
        if "answer" in recs[0]:
            t["_answer"] = _gts(recs, "answer")
        tables.append(pa.table(t))
    return tables


def _read_math_eval(files: list[Path], info: dict, **_: Any) -> list[pa.Table]:
    """Qwen2.5-Math evaluation outputs: one problem a line, n responses in parallel lists."""
    tables = []
    for f in files:
        recs = _read_jsonl(f, info)
        if not recs:
            continue
        q = _column(recs, "question", pa.string(), f, required=True, aliases=("query", "problem"))
        gt = _column(recs, "gt", pa.string(), f, required=True, aliases=("answer",))
        resp = _column(recs, "code", pa.list_(pa.string()), f, required=True, aliases=("response",))
        score = _column(recs, "score", pa.list_(pa.bool_()), f, required=True)
        pred = _column(recs, "pred", pa.list_(pa.string()), f, required=False)
        rm = _column(recs, "pred_score", pa.list_(pa.list_(pa.float64())), f, required=False)
        domain = _column(recs, "type", pa.string(), f, required=False, aliases=("subject",))
        df = pl.from_arrow(pa.table({"prompt": q, "_answer": gt, "response": resp, "correct": score,
                                     "pred": pred, "rm": rm, "domain": domain,
                                     "line": pa.array([r["__line"] for r in recs], pa.int64())}))
        lens = df.select(a=pl.col("response").list.len(), b=pl.col("correct").list.len(), line=pl.col("line"))
        bad = lens.filter(pl.col("a") != pl.col("b"))
        if bad.height:
            raise RolloutImportError(f"{f}:{bad['line'][0]}: column 'score' has {bad['b'][0]} entries for "
                                     f"{bad['a'][0]} responses; expected one per response")
        if df["pred"].null_count() == df.height:
            df = df.with_columns(pl.col("correct").list.eval(pl.lit(None, pl.String)).alias("pred"))
        if df["rm"].null_count() == df.height:
            df = df.with_columns(pl.col("correct").list.eval(pl.lit(None, pl.List(pl.Float64))).alias("rm"))
        long = (df.with_columns(response_idx=pl.int_ranges(pl.col("response").list.len()))
                .explode(["response", "correct", "pred", "rm", "response_idx"]))
        has_rm = long["rm"].null_count() < long.height
        long = long.with_columns(
            # reward: the reward-model score where the log has one (ranks correct answers for
            # best-of-n), else the 0/1 correctness
            reward=pl.col("rm").list.first().cast(pl.Float64).fill_null(pl.col("correct").cast(pl.Float64)),
            format_ok=pl.col("pred").is_not_null() & (pl.col("pred").str.strip_chars() != "")
            if long["pred"].null_count() < long.height else pl.lit(None, pl.Boolean),
            step=pl.lit(0, pl.Int64), group=pl.col("line") - 1,
        ).drop("pred", "rm", "line")
        info["reward_from"] = "pred_score (reward model)" if has_rm else "score"
        tables.append(long.to_arrow())
    info["derived_sample_id"] = True
    return tables


_READERS: dict[str, Callable[..., list[pa.Table]]] = {
    "thresher": _read_thresher, "trl": _read_trl, "verl": _read_verl,
    "open_instruct": _read_open_instruct, "jsonl": _read_jsonl_plain, "math_eval": _read_math_eval,
}


def _skip(path: Path, exc: BaseException, info: dict) -> None:
    info["skipped"].append({"file": str(path), "error": f"{type(exc).__name__}: {exc}"})
    warnings.warn(f"{path}: skipped an unreadable part ({type(exc).__name__}: {exc}); the other parts are read",
                  RolloutImportWarning, stacklevel=4)


# ----------------------------------------------------------------------------- finishing


def _finish(tables: list[pa.Table], info: dict, *, run_id: str, correct_threshold: float,
            domain: str | None) -> pa.Table:
    """Fill ids, groups, indices and flags a foreign log lacks, and conform to the schema."""
    frames = [pl.from_arrow(t) for t in tables if t.num_rows]
    if not frames:
        return ROLLOUT_SCHEMA.empty_table()
    df = pl.concat(frames, how="diagonal_relaxed").with_row_index("__row")
    cols = set(df.columns)
    if "_answer" not in cols:
        df = df.with_columns(pl.lit(None, pl.String).alias("_answer"))
    if "_id_text" not in cols:
        df = df.with_columns(pl.col("prompt").alias("_id_text"))
    if "sample_id" not in cols or df["sample_id"].null_count():
        # one xxhash per distinct (prompt, answer), joined back: the same id curation gives
        keys = df.filter(pl.col("sample_id").is_null() if "sample_id" in cols else pl.lit(True)) \
                 .select("_id_text", "_answer").unique()
        keys = keys.with_columns(pl.Series("_sid", [sample_id(p or "", a or "") for p, a in
                                                    zip(keys["_id_text"], keys["_answer"], strict=True)],
                                           dtype=pl.String))
        df = df.join(keys, on=["_id_text", "_answer"], how="left", nulls_equal=True)
        df = df.with_columns((pl.coalesce("sample_id", "_sid") if "sample_id" in cols else pl.col("_sid"))
                             .alias("sample_id")).drop("_sid")
        info["derived_sample_id"] = True
        warnings.warn(
            f"{info['files'][0]}: the log has no stable prompt id; sample_id is derived from the prompt "
            "text (and reference answer where present) with curate.schema.sample_id",
            RolloutImportWarning, stacklevel=3)
    df = df.sort("__row")
    fill: list[pl.Expr] = []
    if "step" not in cols:
        fill.append(pl.lit(0, pl.Int64).alias("step"))
    df = df.with_columns(fill) if fill else df
    df = df.with_columns(pl.col("step").fill_null(0))
    if "group" not in df.columns or df["group"].null_count():
        # groups in order of first appearance of a prompt within its step (TRL, verl and
        # open-instruct all lay a step's responses out prompt by prompt)
        first = df.group_by("step", "sample_id").agg(pl.col("__row").min().alias("_first"))
        first = first.with_columns((pl.col("_first").rank("dense").over("step") - 1).cast(pl.Int64).alias("_g"))
        df = df.join(first.drop("_first"), on=["step", "sample_id"], how="left")
        df = df.with_columns((pl.coalesce("group", "_g") if "group" in df.columns else pl.col("_g"))
                             .alias("group")).drop("_g")
    if "response_idx" not in df.columns or df["response_idx"].null_count():
        ri = pl.int_range(pl.len()).over("step", "sample_id").cast(pl.Int64)
        df = df.sort("__row").with_columns(
            (pl.coalesce("response_idx", ri) if "response_idx" in df.columns else ri).alias("response_idx"))
    if "correct" not in df.columns or df["correct"].null_count():
        derived = pl.col("reward") >= correct_threshold
        df = df.with_columns((pl.coalesce("correct", derived) if "correct" in df.columns else derived)
                             .alias("correct"))
        info["correct_from"] = f"reward >= {correct_threshold}"
    extra: list[pl.Expr] = [pl.lit(run_id).alias("run_id")] if "run_id" not in df.columns else \
        [pl.col("run_id").fill_null(run_id)]
    if domain is not None or "domain" not in df.columns:
        extra.append(pl.lit(domain or "default").alias("domain"))
    else:
        extra.append(pl.col("domain").fill_null("default"))
    if "response_tokens" not in df.columns:
        # no tokenizer here: whitespace words are the honest stand-in, and say so
        extra.append(pl.col("response").str.count_matches(r"\S+").cast(pl.Int64).alias("response_tokens"))
        info["response_tokens_from"] = "whitespace words"
    if "ts" not in df.columns:
        extra.append(pl.lit(datetime.fromisoformat(info["imported_at"])).cast(pl.Datetime("us", "UTC")).alias("ts"))
    if "sampler" not in df.columns:
        extra.append(pl.lit(f"import:{info['format']}").alias("sampler"))
    df = df.with_columns(extra).sort("__row")
    table = df.drop([c for c in df.columns if c.startswith("_")]).to_arrow()
    try:
        table = conform(table, ROLLOUT_SCHEMA)
    except ValueError as exc:
        raise RolloutImportError(f"{info['files'][0]}: {exc}") from exc
    for name in ROLLOUT_REQUIRED:
        if table.column(name).null_count:
            raise RolloutImportError(f"{info['files'][0]}: column {name!r} has nulls after import; it is required")
    return table


def read_rollouts(
    path_or_glob: str | os.PathLike | Sequence[str | os.PathLike],
    format: str = "auto",
    *,
    run_id: str | None = None,
    correct_threshold: float = 0.5,
    domain: str | None = None,
    tokenizer: Any = None,
    reward_columns: Sequence[str] | None = None,
    reward_weights: Sequence[float] | None = None,
) -> pa.Table:
    """Read a rollout log (a file, folder, glob or list) into `ROLLOUT_SCHEMA`.

    format: "auto" (detected), "thresher", "trl", "verl", "open_instruct",
        "jsonl" or "math_eval" (see the module docstring for each).
    run_id: the run_id column for logs that have none (default: the folder name).
    correct_threshold: `correct = reward >= this` where the log has no
        correctness of its own (TRL's accuracy reward, verl's ``acc``, ...).
    domain: a domain for every row (default: the log's data source, else "default").
    tokenizer: open-instruct only: a transformers tokenizer or a local path to decode token ids.
    reward_columns / reward_weights: TRL only: which reward-function columns make the
        reward and their weights (default: every numeric column, weight 1, as TRL sums them).

    The import is described in the schema metadata; read it with `import_info(table)`.

    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = [{"sample_id": "q1", "prompt": "2+2=", "response": r, "reward": w, "step": 3}
    ...         for r, w in [("4", 1.0), ("5", 0.0), ("4", 0.8)]]
    >>> _ = (d / "run.jsonl").write_text("\\n".join(json.dumps(r) for r in rows))
    >>> t = read_rollouts(d / "run.jsonl", correct_threshold=0.9)
    >>> t.column("correct").to_pylist(), t.column("run_id")[0].as_py() == d.name
    ([True, False, False], True)
    """
    fmt = _ALIASES.get(format, format)
    if fmt == "auto":
        fmt = detect_format(path_or_glob)
    if fmt not in _READERS:
        raise RolloutImportError(f"unknown format {format!r}; expected one of auto, {', '.join(FORMATS)}")
    files = _expand(path_or_glob, fmt)
    info: dict[str, Any] = {"format": fmt, "files": [str(f) for f in files], "skipped": [], "bad_lines": [],
                            "derived_sample_id": False,
                            "imported_at": datetime.now(UTC).isoformat()}
    tables = _READERS[fmt](files, info, tokenizer=tokenizer, reward_columns=reward_columns,
                           reward_weights=reward_weights)
    if not tables and info["skipped"]:
        raise RolloutImportError(f"{files[0]}: no readable part: " + "; ".join(
            f"{s['file']} ({s['error']})" for s in info["skipped"]))
    default_run = run_id or _default_run_id(files)
    table = _finish(tables, info, run_id=default_run, correct_threshold=correct_threshold, domain=domain)
    info["rows"] = table.num_rows
    info["prompts"] = len(pl.from_arrow(table.select(["sample_id"]))["sample_id"].unique()) if table.num_rows else 0
    meta = dict(table.schema.metadata or {})
    meta[INFO_KEY] = json.dumps(info, default=str).encode()
    return table.replace_schema_metadata(meta)


def _default_run_id(files: list[Path]) -> str:
    parent = files[0].parent
    if parent.name in ("rollouts", "completions") and parent.parent.name:
        parent = parent.parent
    return parent.name or "imported"


def import_info(table: pa.Table) -> dict:
    """What `read_rollouts` did: format, files, skipped parts, bad lines, derived ids, ..."""
    raw = (table.schema.metadata or {}).get(INFO_KEY)
    return json.loads(raw) if raw else {}
