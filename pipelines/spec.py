"""The curation spec: sources, eval sets and stages, validated with pydantic.

A spec is TOML (or a dict with the same shape)::

    name = "gsm8k-math-rl"

    [[sources]]
    path = "data/gsm8k/train.jsonl"      # a file, a glob, a folder, or a list of them
    preset = "gsm8k"                     # gsm8k | math | mathv | sample | auto

    [[eval_sets]]                        # held-out sets for decontamination
    name = "gsm8k-test"
    path = "data/gsm8k/test.jsonl"
    preset = "gsm8k"

    [[stages]]
    stage = "dedup_near"
    threshold = 0.8

Unknown keys and bad values are errors naming the key and what is allowed;
stage parameters are checked against the stage's own `Params` (a function's
signature) when the file is read. Relative paths are resolved against the spec
file's folder.

Every stage has one shape (`curate.stage.Step`); the registry below maps a
stage name to the module and attribute that define it, a function
``f(df, **params) -> StageOutput`` or a `Step` subclass. Add a stage with one line.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from curate.config import Config, format_errors, read_toml
from curate.errors import ConfigError
from curate.sources import SourceMapping
from curate.stage import SpecView, Step, as_step

Preset = Literal["gsm8k", "math", "mathv", "sample", "auto"]
Format = Literal["jsonl", "json", "csv", "parquet"]

# stage name -> (module, attribute): a stage function or a curate.stage.Step subclass.
# Each module is imported only when a spec uses one of its stages.
STAGES: dict[str, tuple[str, str]] = {
    "unverifiable": ("curate.filters", "unverifiable"),
    "length_bounds": ("curate.filters", "length_bounds"),
    "charset": ("curate.filters", "charset"),
    "valid_images": ("curate.filters", "valid_images"),
    "valid_choices": ("curate.filters", "valid_choices"),
    "dedup_exact": ("curate.dedup", "dedup_exact"),
    "dedup_near": ("curate.dedup", "dedup_near"),
    "dedup_images": ("curate.dedup", "dedup_images"),
    "decontaminate": ("curate.decontam", "Decontaminate"),
    "cluster": ("curate.embedding", "cluster"),
    "rollout": ("pipelines.rollout", "Rollout"),
    "difficulty": ("curate.difficulty", "Difficulty"),
}

class _Input(Config):
    path: str | list[str] = Field(description="a file, glob or folder, or a list of them")
    preset: Preset | None = None
    mapping: SourceMapping | None = None
    format: Format | None = None
    limit: PositiveInt | None = Field(None, description="read at most this many records per file")

    @model_validator(mode="after")
    def _preset_or_mapping(self) -> _Input:
        if self.preset is None and self.mapping is None:
            raise ValueError("give `preset` (gsm8k, math, mathv, sample, auto) or a `mapping` table")
        return self

    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class SourceSpec(_Input):
    """One input data set."""

    name: str | None = Field(None, description="the rows' `source` (default: the preset)")
    domain: str | None = Field(None, description="override every row's domain")


class EvalSetSpec(_Input):
    """A held-out set whose prompts the decontaminate stage removes from the data."""

    name: str


class OutputSpec(Config):
    shard_rows: PositiveInt = Field(100_000, description="rows per Parquet shard")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class StageSpec(Config):
    """One ``[[stages]]`` entry: `stage` names the step, `enabled` (default true) can switch it
    off, and every other key is one of its parameters (kept in `params`, written back flat)."""

    stage: str
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_params(cls, data: Any) -> Any:
        if isinstance(data, dict):
            own = {k: data[k] for k in ("stage", "enabled") if k in data}
            data = {**own, "params": {k: v for k, v in data.items() if k not in own}}
        return data

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        return {**{k: v for k, v in out.items() if k != "params"}, **out.get("params", {})}


class CurationSpec(Config):
    """A whole curation run."""

    name: str = "curation"
    sources: list[SourceSpec] = Field(min_length=1)
    eval_sets: list[EvalSetSpec] = Field(default_factory=list)
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputSpec = Field(default_factory=OutputSpec)
    engine: Literal["local", "ray"] = Field(
        "local", description="where the stages run: local (one process) or ray (Ray Data); "
        "the output bytes are the same")

    @model_validator(mode="before")
    @classmethod
    def _inputs_alias(cls, data: Any) -> Any:
        # `inputs` is accepted as another name for `sources`
        if isinstance(data, dict) and "inputs" in data:
            if "sources" in data:
                raise ValueError("give `sources` or `inputs`, not both")
            data = {**data, "sources": data["inputs"]}
            del data["inputs"]
        return data

    @model_validator(mode="after")
    def _check_stages(self, info: ValidationInfo) -> CurationSpec:
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval_sets: names must be unique, got {names}")
        base = (info.context or {}).get("base")
        for i, st in enumerate(self.stages):
            view = SpecView(eval_sets=tuple(names), base=base, enabled=st.enabled)
            step = stage_class(st.stage, f"stages[{i}]")
            st.params = step.validate(st.params, f"stages[{i}]", view)
        return self

    def steps(self) -> list[tuple[str, StageSpec, Step]]:
        """The enabled stages as (where, spec entry, ready-to-run step), in spec order."""
        view = SpecView(tuple(e.name for e in self.eval_sets))
        return [(f"stages[{i}]", st, stage_class(st.stage, f"stages[{i}]").build(
                    st.params, f"stages[{i}]", view))
                for i, st in enumerate(self.stages) if st.enabled]


def stage_class(name: str, where: str = "stage") -> type[Step]:
    """The Step class of the stage registered under `name` (its module imported on demand).

    >>> stage_class("length_bounds").name
    'length_bounds'
    """
    if name not in STAGES:
        raise ConfigError(f"{where}: unknown stage {name!r}: expected one of {sorted(STAGES)}")
    module, attr = STAGES[name]
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: stage {name!r} is unavailable: {module}.{attr} "
                          f"could not be imported ({exc})") from exc
    return as_step(obj, name)


def _resolve_paths(spec: CurationSpec, base: Path | None) -> CurationSpec:
    if base is None:
        return spec

    def fix(p: str) -> str:
        return p if Path(p).is_absolute() else str(base / p)

    for item in [*spec.sources, *spec.eval_sets]:
        item.path = [fix(p) for p in item.paths()] if isinstance(item.path, list) else fix(item.path)
    return spec


def load_spec(spec: str | Path | dict | CurationSpec) -> CurationSpec:
    """A validated CurationSpec from a TOML path, a dict or a model.

    Raises ConfigError (a ValueError) with one line per problem, each naming the key
    and what is allowed.

    >>> load_spec({"sources": [{"path": "x.jsonl", "preset": "gsm8k"}]}).name
    'curation'
    >>> try:
    ...     load_spec({"sources": [{"path": "x", "preset": "gsm8k"}], "sorces": 1})
    ... except ConfigError as e:
    ...     print(e)
    spec: unknown key 'sorces': allowed keys are name, sources, eval_sets, stages, output, engine (sorces: unknown key, did you mean 'sources'?)
    """
    if isinstance(spec, CurationSpec):
        return spec
    base: Path | None = None
    origin = "spec"
    if isinstance(spec, str | Path):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"{path}: spec file not found")
        origin = str(path)
        data = read_toml(path)
        base = path.parent
    else:
        data = dict(spec)
    try:
        model = CurationSpec.model_validate(data, context={"base": base})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source=origin, model=CurationSpec)) from None
    return _resolve_paths(model, base)
