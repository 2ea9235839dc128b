"""The Sample schema shared by every room, the stable sample id, and `conform`.

The column names here are the contract of ../shared/DESIGN.md. Data crosses
rooms as Arrow tables / Parquet with exactly these columns. The rollout-log
schema lives with its writer and reader in curate.rollout_log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import xxhash

IMAGE_TYPE = pa.struct([("path", pa.string()), ("sha256", pa.string())])

ANSWER_TYPES = ("numeric", "choice", "expression", "text")

SAMPLE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("domain", pa.string()),
        ("task", pa.string()),
        ("prompt", pa.string()),
        ("images", pa.list_(IMAGE_TYPE)),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("solution", pa.string()),
        ("difficulty", pa.float64()),
        ("n_rollouts", pa.int64()),
        ("meta", pa.string()),
    ]
)

_SEP = "\x1f"  # unit separator: cannot appear in normal text, so fields never run together


def sample_id(prompt: str, answer: str = "", image_hashes: Iterable[str] = ()) -> str:
    """Stable content id of a sample: xxh3-128 of prompt, image sha256s and answer.

    The same function names prompts in curation, in the trainer and in imported
    logs, so ids join across all of them.

    >>> sample_id("1+1=?", "2") == sample_id("1+1=?", "2")
    True
    >>> sample_id("1+1=?", "2") != sample_id("1+1=?", "3")
    True
    """
    payload = _SEP.join([prompt or "", _SEP.join(image_hashes), answer or ""])
    return xxhash.xxh3_128_hexdigest(payload.encode("utf-8"))


def sample_ids(
    prompts: Sequence[str],
    answers: Sequence[str] | None = None,
    image_hashes: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """`sample_id` over columns (one C call per row; xxhash has no batch API)."""
    n = len(prompts)
    answers = answers if answers is not None else [""] * n
    image_hashes = image_hashes if image_hashes is not None else [()] * n
    return [
        sample_id(p, a, h or ()) for p, a, h in zip(prompts, answers, image_hashes, strict=True)
    ]


def empty_table(schema: pa.Schema) -> pa.Table:
    """A zero-row table with `schema`."""
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast `table` to `schema`, adding missing nullable columns as nulls.

    Raises ValueError naming the column when a cast is impossible.
    """
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(
                        f"column {field.name!r}: expected {field.type}, got {col.type} ({exc})"
                    ) from exc
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(cols, schema=schema)
