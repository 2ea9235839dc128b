"""Export a Sample-schema dataset as the RL parquet that verl or TRL read unchanged.

verl (`verl.utils.dataset.rl_dataset.RLHFDataset`, the layout of verl's
``examples/data_preprocess`` scripts):

- ``data_source`` (the row's source), ``prompt`` (chat messages
  ``[{"role": "user", "content": ...}]``), ``ability`` (the domain),
  ``reward_model`` ``{"style": "rule", "ground_truth": answer}``,
  ``extra_info`` ``{"index": the stable sample id, "split", "level", "answer_type",
  "domain", "task", "difficulty", "n_rollouts", "question", "answer"}``;
- multimodal rows: ``images`` (a list of ``{"bytes", "path"}``, the layout
  `datasets.Image` stores) and one ``<image>`` placeholder per image in the
  prompt, where verl's multimodal recipes (geo3k) put them.

TRL (`trl.GRPOTrainer` passes every column but ``prompt`` to the reward
functions as keyword lists):

- ``prompt``: plain text, or conversational ``[{"role": "user", "content": ...}]``;
- ``answer`` (the gold answer), ``answer_type``, ``solution`` (the gold answer
  again: TRL's built-in ``accuracy_reward`` reads ``solution``),
  ``reference_solution`` (the reasoning trace, if any), ``sample_id``,
  ``domain``, ``source``, ``difficulty``;
- multimodal rows: ``images`` (decoded to PIL by `datasets`), and the prompt
  conversational with an ``{"type": "image"}`` part per image.

Both are one Parquet file, ``DIR/<split>.parquet``, written atomically, beside
``DIR/manifest.json``.

>>> import pyarrow as pa
>>> t = pa.table({"id": ["x1"], "source": ["gsm8k"], "domain": ["math"], "prompt": ["1+1?"],
...               "answer": ["2"], "answer_type": ["numeric"]})
>>> row = to_verl(t).to_pylist()[0]
>>> row["prompt"], row["reward_model"], row["extra_info"]["index"]
([{'role': 'user', 'content': '1+1?'}], {'style': 'rule', 'ground_truth': '2'}, 'x1')
>>> to_trl(t).select(["prompt", "answer", "sample_id"]).to_pylist()
[{'prompt': '1+1?', 'answer': '2', 'sample_id': 'x1'}]
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import DataError
from curate.io import write_json_atomic, write_parquet_atomic

FORMATS = ("verl", "trl")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
PART = pa.struct([("type", pa.string()), ("text", pa.string())])
MM_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.list_(PART))])
IMAGE_BYTES = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_MARKER = re.compile(r"<image\d*>")


class ExportError(DataError):
    """The data cannot be exported: the message names the row and the column."""


def _col(table: pa.Table, name: str, default: Any = None) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [default] * table.num_rows


def _check(table: pa.Table, where: str) -> None:
    for col in ("prompt", "answer"):
        if col not in table.column_names:
            raise ExportError(f"{where}: no {col!r} column (has {table.column_names}); an RL set needs "
                              "prompts and gold answers")
        empty = pc.fill_null(pc.is_null(table.column(col)), True)
        bad = pc.indices_nonzero(empty)
        if len(bad):
            raise ExportError(f"{where}: row {bad[0].as_py()}: column {col!r} is empty; every RL "
                              f"prompt needs a {'gold answer' if col == 'answer' else 'prompt'}")
    if "id" not in table.column_names:
        raise ExportError(f"{where}: no 'id' column: export the Sample schema (curate first) so every "
                          "row has its stable sample id")


def _images(table: pa.Table, base: Path | None, where: str) -> list[list[dict]]:
    """Per row, the image files as {bytes, path}; errors name the row and the file."""
    out = []
    for i, imgs in enumerate(_col(table, "images", [])):
        row = []
        for img in imgs or []:
            path = Path(img["path"])
            if not path.is_absolute() and base is not None:
                path = base / path
            try:
                row.append({"bytes": path.read_bytes(), "path": str(img["path"])})
            except OSError as exc:
                raise ExportError(f"{where}: row {i}: image {img['path']!r} cannot be read "
                                  f"({exc.strerror or exc})") from None
        out.append(row)
    return out


def _with_markers(prompt: str, n: int) -> str:
    """`prompt` with exactly n ``<image>`` placeholders: the data's own markers (<image1>, ...)
    where their count matches, else n placeholders before the text."""
    if n == 0:
        return _MARKER.sub("", prompt) if "<image" in prompt else prompt
    if len(_MARKER.findall(prompt)) == n:
        return _MARKER.sub("<image>", prompt)
    return "<image>" * n + _MARKER.sub("", prompt)


def _meta_level(meta: str | None) -> str | None:
    if not meta:
        return None
    try:
        level = json.loads(meta).get("level")
    except (json.JSONDecodeError, AttributeError):
        return None
    return None if level is None else str(level)


def _hf_features(fields: dict[str, Any]) -> dict[bytes, bytes]:
    """Schema metadata that tells `datasets` which columns are images (decoded to PIL)."""
    return {b"huggingface": json.dumps({"info": {"features": fields}}).encode()}


def to_verl(table: pa.Table, *, split: str = "train", instruction: str = "", base: Path | None = None,
            where: str = "data") -> pa.Table:
    """The verl RL-parquet rows of a Sample table (see the module doc)."""
    _check(table, where)
    prompts = _col(table, "prompt")
    images = _images(table, base, where)
    multimodal = any(images)
    suffix = f"\n{instruction}" if instruction else ""
    messages = [[{"role": "user", "content": _with_markers(p, len(im)) + suffix}]
                for p, im in zip(prompts, images, strict=True)]
    n = table.num_rows
    extra = {
        "index": _col(table, "id"), "split": [split] * n,
        "level": [_meta_level(m) for m in _col(table, "meta")],
        "answer_type": _col(table, "answer_type"), "domain": _col(table, "domain"),
        "task": _col(table, "task"), "difficulty": _col(table, "difficulty"),
        "n_rollouts": _col(table, "n_rollouts"), "question": prompts, "answer": _col(table, "answer"),
    }
    extra_type = pa.struct([("index", pa.string()), ("split", pa.string()), ("level", pa.string()),
                            ("answer_type", pa.string()), ("domain", pa.string()), ("task", pa.string()),
                            ("difficulty", pa.float64()), ("n_rollouts", pa.int64()),
                            ("question", pa.string()), ("answer", pa.string())])
    cols: dict[str, pa.Array] = {
        "data_source": pa.array(_col(table, "source", "thresher"), pa.string()),
        "prompt": pa.array(messages, pa.list_(MESSAGE)),
        "ability": pa.array(_col(table, "domain"), pa.string()),
        "reward_model": pa.array([{"style": "rule", "ground_truth": a} for a in _col(table, "answer")],
                                 pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        "extra_info": pa.array([dict(zip(extra, vals, strict=True)) for vals in zip(*extra.values(), strict=True)],
                               extra_type),
    }
    return _with_images(cols, images if multimodal else None)


def _with_images(cols: dict[str, pa.Array], images: list | None) -> pa.Table:
    """The table of `cols`, plus an `images` column (as `datasets` Image features) when given."""
    if images is None:
        return pa.table(cols)
    cols["images"] = pa.array(images, pa.list_(IMAGE_BYTES))
    return pa.table(cols).replace_schema_metadata(_hf_features({"images": [{"_type": "Image"}]}))


def to_trl(table: pa.Table, *, prompt_style: str = "auto", instruction: str = "",
           base: Path | None = None, where: str = "data") -> pa.Table:
    """The TRL GRPO rows of a Sample table (see the module doc).

    `prompt_style`: ``plain`` (a string), ``chat`` (messages) or ``auto`` (chat
    when any row has images, since TRL's vision path needs conversational prompts).

    >>> t = pa.table({"id": ["a"], "prompt": ["2+2?"], "answer": ["4"]})
    >>> to_trl(t, prompt_style="chat").column("prompt").to_pylist()
    [[{'role': 'user', 'content': '2+2?'}]]
    >>> to_trl(t, prompt_style="markdown")
    Traceback (most recent call last):
    ...
    curate.export.ExportError: prompt_style must be plain, chat or auto, got 'markdown'
    """
    if prompt_style not in ("plain", "chat", "auto"):
        raise ExportError(f"prompt_style must be plain, chat or auto, got {prompt_style!r}")
    _check(table, where)
    prompts = _col(table, "prompt")
    images = _images(table, base, where)
    multimodal = any(images)
    if prompt_style == "auto":
        prompt_style = "chat" if multimodal else "plain"
    if multimodal and prompt_style == "plain":
        raise ExportError(f"{where}: rows with images need prompt_style chat (TRL's vision path "
                          "reads conversational prompts)")
    suffix = f"\n{instruction}" if instruction else ""
    texts = [_MARKER.sub("", p).strip() + suffix if multimodal else p + suffix for p in prompts]
    if prompt_style == "plain":
        prompt = pa.array(texts, pa.string())
    elif multimodal:
        prompt = pa.array([[{"role": "user", "content": [*([{"type": "image", "text": None}] * len(im)),
                                                         {"type": "text", "text": t}]}]
                           for t, im in zip(texts, images, strict=True)], pa.list_(MM_MESSAGE))
    else:
        prompt = pa.array([[{"role": "user", "content": t}] for t in texts], pa.list_(MESSAGE))
    answers = _col(table, "answer")
    cols: dict[str, pa.Array] = {
        "prompt": prompt,
        "answer": pa.array(answers, pa.string()),
        "answer_type": pa.array(_col(table, "answer_type"), pa.string()),
        "solution": pa.array(answers, pa.string()),
        "reference_solution": pa.array(_col(table, "solution"), pa.string()),
        "sample_id": pa.array(_col(table, "id"), pa.string()),
        "domain": pa.array(_col(table, "domain"), pa.string()),
        "source": pa.array(_col(table, "source"), pa.string()),
        "difficulty": pa.array(_col(table, "difficulty"), pa.float64()),
    }
    return _with_images(cols, images if multimodal else None)


def export(table: pa.Table, out_dir: str | os.PathLike, fmt: str, *, split: str = "train",
           instruction: str = "", prompt_style: str = "auto", base: str | os.PathLike | None = None,
           where: str = "data") -> dict[str, Any]:
    """Write `table` as ``out_dir/<split>.parquet`` in `fmt` (verl | trl) plus a manifest.

    Everything is checked and built in memory first: bad input raises before
    any file is written. Relative image paths are resolved against `base`.

    >>> import tempfile
    >>> t = pa.table({"id": ["a"], "prompt": ["2+2?"], "answer": ["4"]})
    >>> m = export(t, tempfile.mkdtemp(), "verl")
    >>> m["rows"], m["format"], m["file"]
    (1, 'verl', 'train.parquet')
    >>> export(t, tempfile.mkdtemp(), "openrlhf")
    Traceback (most recent call last):
    ...
    curate.export.ExportError: format must be one of verl, trl; got 'openrlhf'
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split):
        raise ExportError(f"split must be a plain name (letters, digits, _ . -), got {split!r}")
    b = Path(base) if base is not None else None
    if fmt == "verl":
        rows = to_verl(table, split=split, instruction=instruction, base=b, where=where)
    else:
        rows = to_trl(table, prompt_style=prompt_style, instruction=instruction, base=b, where=where)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = write_parquet_atomic(rows, out / f"{split}.parquet", compression="zstd")
    manifest = {"format": fmt, "split": split, "rows": rows.num_rows, "file": path.name,
                "columns": rows.column_names, "source": where,
                "multimodal_rows": int(sum(1 for x in _col(table, "images", []) if x))}
    write_json_atomic(manifest, out / "manifest.json")
    return manifest
