"""One way to declare and validate configuration: typed pydantic models.

Every section a user can write in TOML (a curation spec, a job config, a
trainer config, a stage's or a sampler's parameters) is a `Config`: unknown
keys are errors, values are checked when the file is read, and
`format_errors` is the one formatter of a validation error, one line per
problem, naming the file, the section, the key and what is allowed.

>>> class Optim(Config):
...     '''lr: learning rate (default 1e-3).'''
...     lr: float = Field(default=1e-3, gt=0)
>>> Optim.from_dict({"lr": 0.1}).lr
0.1
>>> try:
...     Optim.from_dict({"lr": 0.1, "lrr": 1}, section="sft", source="run.toml")
... except ConfigError as e:
...     print(e)
run.toml: sft: unknown key 'lrr': allowed keys are lr (sft.lrr: unknown key, did you mean 'lr'?)

Imports pydantic only, so every room may use it (docs/architecture.md).
"""

from __future__ import annotations

import difflib
import inspect
import os
import tomllib
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from curate.errors import ConfigError

__all__ = ["Config", "ConfigError", "Field", "format_errors", "read_toml", "signature_model",
           "validate_params"]


class Config(BaseModel):
    """Base of every config model: unknown keys are errors; `from_dict` / `from_toml` raise
    `ConfigError` with one line per problem (see `format_errors`)."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_dict(cls, data: dict[str, Any], section: str = "", source: str = "") -> Self:
        """Validate `data`; a problem is a `ConfigError` naming `source`, `section` and the key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, section=section, source=source, model=cls)) from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike, section: str | None = None) -> Self:
        """Load from a TOML file (optionally one `[section]` of it)."""
        data = read_toml(path)
        if section:
            data = data.get(section, {})
        return cls.from_dict(data, section or "", str(path))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (what `from_dict` takes back)."""
        return self.model_dump()


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed TOML file; a missing file or bad TOML is a `ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


# ------------------------------------------------------------------ the formatter
def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _allowed_at(model: type[BaseModel] | None, loc: tuple) -> list[str] | None:
    """Field names of the model that `loc` (a key path, list indices included) points into."""
    current = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        found = _models_in(field.annotation)
        current = found[0] if found else None
    if current is None:
        return None
    return [name for name, f in current.model_fields.items() if not f.exclude]


def _join(*parts: Any) -> str:
    return ".".join(str(p) for p in parts if p != "" and p is not None)


def format_errors(exc: ValidationError, *, section: str = "", source: str = "",
                  model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``[source: ]section.key: what was expected (got value)``.

    An unknown key's line names what is allowed there (when `model` is given) and
    the closest allowed key:
    ``[source: ][section: ]unknown key 'key': allowed keys are a, b (section.key: unknown key)``.

    >>> class Run(Config):
    ...     seed: int = 0
    >>> try:
    ...     Run.model_validate({"seed": "x"})
    ... except ValidationError as e:
    ...     print(format_errors(e, section="run", source="job.toml"))
    job.toml: run.seed: Input should be a valid integer, unable to parse string as an integer (got 'x')
    """
    prefix = f"{source}: " if source else ""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _join(section, *loc) or "(top level)"
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            allowed = _allowed_at(model, loc[:-1]) if model is not None else None
            line = f"{prefix}{section + ': ' if section else ''}unknown key {_join(*loc)!r}"
            hint = ""
            if allowed is not None:
                line += f": allowed keys are {', '.join(allowed) or '(none)'}"
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                hint = f", did you mean {close[0]!r}?" if close else ""
            lines.append(f"{line} ({key}: unknown key{hint})")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error" and not loc:
            lines.append(f"{prefix}{_join(section) + ': ' if section else ''}{msg}")
        elif err["type"] in ("missing", "value_error") or "input" not in err:
            lines.append(f"{prefix}{key}: {msg}")
        else:
            lines.append(f"{prefix}{key}: {msg} (got {err['input']!r})")
    return "\n".join(lines)


# ------------------------------------------------------- parameters of a callable
def _annotation(func: Callable[..., Any], annotation: Any) -> Any:
    """One parameter's annotation, evaluated (strings under postponed evaluation).

    Only the parameters a config can set are evaluated, never `df: pl.DataFrame`
    or the return type, so checking a stage's keys does not import polars; an
    annotation that does not resolve accepts any value and the callee checks it.
    """
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(func, "__globals__", {}))  # noqa: S307 - as typing does
    except Exception:
        return Any


def signature_model(func: Callable[..., Any], name: str, *, skip: Iterable[str] = (),
                    skip_first: bool = False, extra: dict[str, Any] | None = None
                    ) -> type[BaseModel]:
    """A strict model of `func`'s keyword parameters (their annotations and defaults).

    Used to check a stage's or a sampler's TOML parameters when the file is read.
    `skip` names parameters the caller fills in itself; `extra` adds spec-only keys
    as ``{name: (type, default)}``.

    >>> def f(df, *, n: int = 3, mode: str = "a"): ...
    >>> sorted(signature_model(f, "f", skip_first=True).model_fields)
    ['mode', 'n']
    """
    params = list(inspect.signature(func).parameters.values())
    if skip_first:
        params = params[1:]
    fields: dict[str, Any] = {}
    skipped = set(skip) | {"self"}
    for p in params:
        if p.name in skipped or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (_annotation(func, p.annotation), default)
    fields.update(extra or {})
    return create_model(f"{name}_params", __config__=ConfigDict(extra="forbid",
                                                                arbitrary_types_allowed=True),
                        **fields)


def validate_params(model: type[BaseModel], params: dict[str, Any], *, where: str,
                    source: str = "") -> dict[str, Any]:
    """`params` checked against `model`; returns the given keys, coerced. Raises ConfigError."""
    try:
        checked = model.model_validate(params)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, section=where, source=source, model=model)) from None
    return checked.model_dump(include=set(params))
