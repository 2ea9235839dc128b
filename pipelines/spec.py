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
stage parameters are checked against the stage function's own signature.
Relative paths are resolved against the spec file's folder.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    create_model,
    model_validator,
)

from curate.sources import SourceMapping

Preset = Literal["gsm8k", "math", "mathv", "sample", "auto"]
Format = Literal["jsonl", "json", "csv", "parquet"]

# stage name -> (module, function). Dedup and decontamination live in their own
# modules and are imported only when a spec uses them.
STAGES: dict[str, tuple[str, str]] = {
    "unverifiable": ("curate.filters", "unverifiable"),
    "length_bounds": ("curate.filters", "length_bounds"),
    "charset": ("curate.filters", "charset"),
    "valid_images": ("curate.filters", "valid_images"),
    "valid_choices": ("curate.filters", "valid_choices"),
    "dedup_exact": ("curate.dedup", "dedup_exact"),
    "dedup_near": ("curate.dedup", "dedup_near"),
    "dedup_images": ("curate.dedup", "dedup_images"),
    "decontaminate": ("curate.decontam", "decontaminate"),
    "rollout": ("pipelines.rollout", "rollout"),
    "difficulty": ("curate.difficulty", "difficulty"),
}
# stage parameters that are paths: resolved against the spec file's folder
PATH_PARAMS = {"rollout": ("model", "out"), "difficulty": ("run",)}
# parameters the runner fills in itself, never from the spec
RUNNER_ARGS = {"decontaminate": {"eval_texts"}}
# spec-only keys a stage takes besides its function's parameters
EXTRA_STAGE_KEYS = {"decontaminate": {"against": (list[str] | None, None)}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Input(_Strict):
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


class OutputSpec(_Strict):
    shard_rows: PositiveInt = Field(100_000, description="rows per Parquet shard")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"


class StageSpec(BaseModel):
    """`stage` names the step; the other keys are its parameters."""

    model_config = ConfigDict(extra="allow")
    stage: str
    enabled: bool = True

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CurationSpec(_Strict):
    """A whole curation run."""

    name: str = "curation"
    sources: list[SourceSpec] = Field(min_length=1)
    eval_sets: list[EvalSetSpec] = Field(default_factory=list)
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputSpec = Field(default_factory=OutputSpec)

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
    def _check_stages(self) -> CurationSpec:
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval_sets: names must be unique, got {names}")
        for i, st in enumerate(self.stages):
            params = validate_stage_params(st.stage, st.params, where=f"stages[{i}]")
            st.__pydantic_extra__ = params
            if st.stage == "decontaminate" and st.enabled and not self.eval_sets and not params.get("against"):
                raise ValueError(f"stages[{i}] (decontaminate): needs eval sets: add [[eval_sets]] "
                                 "or give `against = [paths]`")
        return self


def stage_function(name: str, where: str = "stage") -> Any:
    """The stage callable registered under `name` (imported on demand)."""
    import importlib

    if name not in STAGES:
        raise ValueError(f"{where}: unknown stage {name!r}: expected one of {sorted(STAGES)}")
    module, attr = STAGES[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{where}: stage {name!r} is unavailable: {module}.{attr} "
                         f"could not be imported ({exc})") from exc


def _param_model(name: str, func: Any) -> type[BaseModel]:
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: accept any value, the stage checks it
        hints = {}
    fields: dict[str, Any] = {}
    params = list(inspect.signature(func).parameters.values())[1:]  # the first is the frame
    for p in params:
        if p.name in RUNNER_ARGS.get(name, set()) or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    fields.update(EXTRA_STAGE_KEYS.get(name, {}))
    return create_model(f"{name}_params", __config__=ConfigDict(extra="forbid",
                                                                arbitrary_types_allowed=True),
                        **fields)


def validate_stage_params(name: str, params: dict[str, Any], where: str = "stage") -> dict[str, Any]:
    """Check `params` against stage `name`'s signature; returns the given params, coerced."""
    func = stage_function(name, where)
    model = _param_model(name, func)
    try:
        checked = model.model_validate(params)
    except ValidationError as exc:
        allowed = ", ".join(model.model_fields) or "(none)"
        msgs = []
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                msgs.append(f"{where} ({name}): unknown key {key!r}: allowed keys are {allowed}")
            else:
                msgs.append(f"{where} ({name}).{key}: {err['msg']} (got {err.get('input')!r})")
        raise ValueError("; ".join(msgs)) from None
    return checked.model_dump(include=set(params))


def format_errors(exc: ValidationError, origin: str = "spec") -> str:
    """One line per error: 'origin: key.path: message (got value)'."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key {key!r}")
        elif err["type"] == "value_error":
            lines.append(f"{origin}: {key}: {msg}" if key != "(top level)" else f"{origin}: {msg}")
        else:
            lines.append(f"{origin}: {key}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def _resolve_paths(spec: CurationSpec, base: Path | None) -> CurationSpec:
    if base is None:
        return spec

    def fix(p: str) -> str:
        return p if Path(p).is_absolute() else str(base / p)

    for item in [*spec.sources, *spec.eval_sets]:
        item.path = [fix(p) for p in item.paths()] if isinstance(item.path, list) else fix(item.path)
    for st in spec.stages:
        for key in PATH_PARAMS.get(st.stage, ()):
            if st.params.get(key):
                st.__pydantic_extra__[key] = fix(st.params[key])
        if st.stage == "decontaminate" and st.params.get("against"):
            names = {e.name for e in spec.eval_sets}
            st.__pydantic_extra__["against"] = [a if a in names else fix(a) for a in st.params["against"]]
    return spec


def load_spec(spec: str | Path | dict | CurationSpec) -> CurationSpec:
    """A validated CurationSpec from a TOML path, a dict or a model.

    Raises ValueError with one line per problem, each naming the key.

    >>> load_spec({"sources": [{"path": "x.jsonl", "preset": "gsm8k"}]}).name
    'curation'
    >>> load_spec({"sources": [{"path": "x", "preset": "gsm8k"}], "sorces": 1})
    Traceback (most recent call last):
    ...
    ValueError: spec: unknown key 'sorces'
    """
    if isinstance(spec, CurationSpec):
        return spec
    base: Path | None = None
    origin = "spec"
    if isinstance(spec, str | Path):
        import tomllib

        path = Path(spec)
        origin = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{path}: spec file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML: {exc}") from None
        base = path.parent
    else:
        data = dict(spec)
    try:
        model = CurationSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_errors(exc, origin)) from None
    return _resolve_paths(model, base)
