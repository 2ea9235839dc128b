"""The stage contract: every curation step is a function from a frame to a frame
plus a record of what it dropped and why (the shape of a datatrove step).

A stage returns `StageOutput(kept, dropped)`. `dropped` has the input's columns
plus `drop_reason` (str), so the runner can count drops by reason in the
manifest and nothing is lost silently.

Every stage has one shape, a `Step`: parameters validated from the spec
(`Step.Params`), and ``run(df, ctx) -> StageOutput``. `ctx` is the
`StageContext` the engine lends every step: a step that needs a resource (the
held-out texts of its eval index, a shared model) asks `ctx` for it, the same
way on every engine. A plain function ``f(df, **params) -> StageOutput`` is a
step too (`as_step` wraps it; its keyword parameters are its `Params`).

>>> import polars as pl
>>> def small(df, *, limit: int = 2):
...     return split_by_mask(df, pl.col("x") <= limit, "too_big")
>>> step = as_step(small, "small").build({"limit": 1})
>>> step.run(pl.DataFrame({"x": [1, 2, 3]}), StageContext()).drops_by_reason()
{'too_big': 2}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from curate.config import signature_model, validate_params
from curate.errors import ConfigError
from curate.lazy import lazy_import

if TYPE_CHECKING:
    import polars as pl
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pl = lazy_import("polars")

DROP_REASON = "drop_reason"


@dataclass
class StageOutput:
    """What a stage kept, what it dropped (with a `drop_reason` column) and extras."""

    kept: pl.DataFrame
    dropped: pl.DataFrame | None = None
    info: dict = field(default_factory=dict)  # stage-specific figures for the manifest

    def drops_by_reason(self) -> dict[str, int]:
        """Dropped rows counted by `drop_reason`, sorted by reason."""
        if self.dropped is None or self.dropped.height == 0:
            return {}
        counts = self.dropped.group_by(DROP_REASON).len().sort(DROP_REASON)
        return dict(zip(counts[DROP_REASON].to_list(), counts["len"].to_list(), strict=True))


Stage = Callable[..., StageOutput]


def split_by_mask(df: pl.DataFrame, keep: pl.Series | pl.Expr, reason: str | pl.Expr) -> StageOutput:
    """Split `df` by a boolean mask into kept rows and dropped rows labelled with `reason`.

    >>> import polars as pl
    >>> out = split_by_mask(pl.DataFrame({"x": [1, 2, 3]}), pl.col("x") > 1, "too_small")
    >>> out.kept["x"].to_list(), out.drops_by_reason()
    ([2, 3], {'too_small': 1})
    """
    mask = df.select(keep if isinstance(keep, pl.Expr) else pl.lit(keep)).to_series()
    mask = mask.fill_null(False)
    reason_expr = reason if isinstance(reason, pl.Expr) else pl.lit(reason)
    dropped = df.filter(~mask).with_columns(reason_expr.alias(DROP_REASON))
    return StageOutput(kept=df.filter(mask), dropped=dropped)


# ----------------------------------------------------------------- the context
class StageContext:
    """The resources an engine lends every step, each built once and shared.

    eval_sets: name -> loader of that held-out set's prompt texts (the spec's [[eval_sets]]).
    read_texts: loader of the prompt texts of a file given by path (an eval set not
        declared in the spec).

    >>> ctx = StageContext({"dev": lambda: ["What is 2+2?"]})
    >>> ctx.eval_texts(), ctx.loaded
    (['What is 2+2?'], {'dev': 1})
    """

    def __init__(self, eval_sets: Mapping[str, Callable[[], list[str]]] | None = None,
                 read_texts: Callable[[str], list[str]] | None = None) -> None:
        self._eval_sets = dict(eval_sets or {})
        self._read_texts = read_texts
        self._shared: dict[Any, Any] = {}
        self._texts: dict[str, list[str]] = {}

    @property
    def eval_set_names(self) -> list[str]:
        """Names of the declared eval sets, in spec order."""
        return list(self._eval_sets)

    @property
    def loaded(self) -> dict[str, int]:
        """Eval sets (names or paths) loaded so far, with their number of texts."""
        return {k: len(v) for k, v in sorted(self._texts.items())}

    def eval_texts(self, against: Sequence[str] | None = None) -> list[str]:
        """Prompt texts of the eval sets named (or given by path) in `against`; all declared
        sets when None. Each set is read once per context."""
        texts: list[str] = []
        for key in against or self.eval_set_names:
            if key not in self._texts:
                if key in self._eval_sets:
                    self._texts[key] = self._eval_sets[key]()
                elif self._read_texts is not None:
                    self._texts[key] = self._read_texts(key)
                else:
                    raise ConfigError(f"eval set {key!r} is not declared; declared: {self.eval_set_names}")
            texts.extend(self._texts[key])
        return texts

    def lend(self) -> StageContext:
        """A picklable copy holding the texts loaded so far (what an engine ships to its
        workers); asking it for a set this context never loaded is a ConfigError.

        >>> ctx = StageContext({"dev": lambda: ["What is 2+2?"]})
        >>> _ = ctx.eval_texts()
        >>> import pickle; pickle.loads(pickle.dumps(ctx.lend())).eval_texts(["dev"])
        ['What is 2+2?']
        """
        declared = {k: _Texts(self._texts[k]) for k in self._eval_sets if k in self._texts}
        by_path = {k: v for k, v in self._texts.items() if k not in self._eval_sets}
        lent = StageContext(declared, _Texts(by_path) if by_path else None)
        lent._texts = dict(self._texts)
        return lent

    def shared(self, key: Any, build: Callable[[], Any]) -> Any:
        """A resource built once per context (an index, a model) and shared by the steps."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]


class _Texts:
    """A picklable loader of texts read earlier: a list, or a dict by path."""

    def __init__(self, texts: list[str] | dict[str, list[str]]) -> None:
        self.texts = texts

    def __call__(self, key: str | None = None) -> list[str]:
        if isinstance(self.texts, list):
            return self.texts
        if key not in self.texts:
            raise ConfigError(f"eval set {key!r} was not loaded by the engine")
        return self.texts[key]


@dataclass(frozen=True)
class SpecView:
    """What a step may know of the spec when its parameters are checked (`Step.check`)."""

    eval_sets: tuple[str, ...] = ()
    base: Path | None = None  # the spec file's folder: relative paths are resolved against it
    enabled: bool = True

    def resolve(self, path: str) -> str:
        """`path` resolved against the spec file's folder (absolute paths unchanged)."""
        if self.base is None or Path(path).is_absolute():
            return path
        return str(self.base / path)


# ------------------------------------------------------------------- the steps
class Step:
    """One curation step: validated parameters and ``run(df, ctx) -> StageOutput``.

    Subclasses set `name` and `Params` (a strict pydantic model of the spec keys)
    and implement `run`; `check` may add checks that need the spec (`SpecView`).
    """

    name: ClassVar[str] = "step"
    Params: ClassVar[type[BaseModel]]
    # True when each row's fate depends only on that row (and the step's resources), so an
    # engine may run the step on any partition of the rows and concatenate the results
    row_wise: ClassVar[bool] = False

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = dict(kwargs)  # the given, validated parameters

    @classmethod
    def validate(cls, params: dict[str, Any], where: str = "stage",
                 spec: SpecView | None = None) -> dict[str, Any]:
        """`params` checked against `Params` (and `check`): the given keys, coerced."""
        checked = validate_params(cls.Params, params, where=f"{where} ({cls.name})")
        return cls.check(checked, spec or SpecView(), f"{where} ({cls.name})")

    @classmethod
    def check(cls, params: dict[str, Any], spec: SpecView, where: str) -> dict[str, Any]:
        """Checks that need the spec; returns the params (paths resolved). Default: none."""
        return params

    @classmethod
    def build(cls, params: dict[str, Any] | None = None, where: str = "stage",
              spec: SpecView | None = None) -> Step:
        """A step ready to run, from spec parameters."""
        return cls(cls.validate(dict(params or {}), where, spec))

    def run(self, df: pl.DataFrame, ctx: StageContext) -> StageOutput:
        raise NotImplementedError


def row_wise(func: Stage) -> Stage:
    """Mark a stage function row-wise: each row is kept or dropped on its own evidence.

    An engine that splits the rows into blocks (Ray Data) runs a row-wise stage on
    every block and concatenates the results; any other stage sees all its rows.

    >>> @row_wise
    ... def short(df, *, limit: int = 3):
    ...     return split_by_mask(df, pl.col("x") <= limit, "too_big")
    >>> as_step(short, "short").row_wise
    True
    """
    func.row_wise = True  # type: ignore[attr-defined]
    return func


def as_step(obj: Any, name: str) -> type[Step]:
    """The Step class of a registered stage: a Step subclass as is, a function wrapped."""
    if isinstance(obj, type) and issubclass(obj, Step):
        return obj
    func = obj

    class FunctionStep(Step):
        Params = signature_model(func, name, skip_first=True)

        def run(self, df: pl.DataFrame, ctx: StageContext) -> StageOutput:
            return func(df, **self.kwargs)

    FunctionStep.name = name
    FunctionStep.row_wise = bool(getattr(func, "row_wise", False))
    FunctionStep.__name__ = FunctionStep.__qualname__ = f"{name}_step"
    FunctionStep.__doc__ = func.__doc__
    return FunctionStep


__all__ = ["DROP_REASON", "SpecView", "Stage", "StageContext", "StageOutput", "Step", "as_step",
           "row_wise", "split_by_mask"]
