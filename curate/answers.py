"""Answers: extract, normalize, type and compare final answers.

The trainer's rewards call `extract_answer` and `is_equivalent` for every
response of every step, so the common cases (plain numbers, choice letters,
short strings) are answered by a fast path in pure Python, and only real math
expressions go to math-verify (parse + verify), with its timeouts on, so a
pathological expression can never hang a training step.

>>> extract_answer("so the total is \\\\boxed{\\\\frac{1}{2}}.")
'\\\\frac{1}{2}'
>>> is_equivalent("0.5", "\\\\frac{1}{2}", "expression")
True
>>> is_equivalent("1,000", "1000", "numeric"), is_equivalent("(b)", "B", "choice")
(True, True)
>>> detect_answer_type("72"), detect_answer_type("x^2+1"), detect_answer_type("B", ["1", "2"])
('numeric', 'expression', 'choice')
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import polars as pl
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    pl = lazy_import("polars")

ANSWER_TYPES = ("numeric", "choice", "expression", "text")
CHOICE_LETTERS = "ABCDEFGHIJ"

# Expressions longer than this are not sent to math-verify (sympy can take
# minutes on adversarial inputs; no gold answer in a real set is this long).
MAX_EXPRESSION_CHARS = 400
# Budgets for one math-verify parse or verify call, in seconds of this process's CPU
# time (SIGVTALRM, so on the main thread only). Not math-verify's own wall-clock
# timeouts: on a loaded machine, or in a Ray worker (nice 15), a parse that takes 0.2 s
# of CPU took 5-20 s of wall time and timed out, and the curated set depended on the load.
PARSE_TIMEOUT_S = 2
VERIFY_TIMEOUT_S = 2

# ------------------------------------------------------------------ extraction

_ANSWER_TAG = re.compile(r"<answer>([\s\S]*?)</answer>", re.IGNORECASE)
_HASHES = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:)\s*[:\s]*([^\n]+)", re.IGNORECASE
)
_BOX_OPENERS = ("\\boxed{", "\\fbox{", "\\boxed {")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox``), nested braces included.

    >>> last_boxed("a \\\\boxed{1} b \\\\boxed{\\\\frac{2}{3}}")
    '\\\\frac{2}{3}'
    >>> last_boxed("\\\\boxed{unclosed") is None
    True
    """
    start = max(text.rfind(o) for o in _BOX_OPENERS)
    if start < 0:
        # `\boxed 5` (no braces) is also seen in model output
        m = re.search(r"\\boxed\s+([^\s$]+)", text)
        return m.group(1) if m else None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def _clean_tail(s: str) -> str:
    s = s.strip().rstrip(".").strip()
    return re.sub(r"^\$+|\$+$", "", s).strip().rstrip(".").strip()


def extract_answer(text: str | None) -> str | None:
    """The final answer of a response or solution, or None when there is none.

    Looks, in order, for an ``<answer>...</answer>`` tag (its boxed content if
    it has one), the last ``\\boxed{}``, GSM8K's ``#### N`` and "the answer is
    X". A bare response with no marker gives None: a reward must not guess.

    >>> extract_answer("<answer>42</answer>"), extract_answer("work\\n#### 1,234")
    ('42', '1,234')
    >>> extract_answer("So the answer is (C)."), extract_answer("just 3") is None
    ('(C)', True)
    """
    if not text:
        return None
    tags = _ANSWER_TAG.findall(text)
    if tags:
        inner = tags[-1]
        boxed = last_boxed(inner)
        return _clean_tail(boxed if boxed is not None else inner)
    boxed = last_boxed(text)
    if boxed is not None:
        return _clean_tail(boxed)
    hashes = _HASHES.findall(text)
    if hashes:
        return _clean_tail(hashes[-1])
    said = _ANSWER_IS.findall(text)
    if said:
        return _clean_tail(said[-1])
    return None


# --------------------------------------------------------------- normalization

_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?$")
_NUMBER_LOOSE = re.compile(r"^[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?\s*%?$")
_SIMPLE_FRACTION = re.compile(r"^([-+]?\d+)\s*/\s*(\d+)$")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\[dt]?frac\{?(\d+)\}?\{?(\d+)\}?$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_CHOICE = re.compile(r"^\(?\s*([A-Ja-j])\s*\)?[.:]?$")
_NUMBER_WITH_CONTEXT = re.compile(
    r"^(?:[A-Za-z]\w*\s*=\s*)?([-+]?\$?\s*[\d.,]+(?:\s*/\s*\d+)?\s*%?)(?:\s+[A-Za-z][A-Za-z\s.]*)?$")
_CHOICE_PREFIX = re.compile(r"^(?:option|choice|answer)\s*[:\s]\s*", re.IGNORECASE)


def _strip_latex_noise(s: str) -> str:
    s = s.strip().strip("$").strip()
    s = _TEXT_WRAP.sub(r"\1", s)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""),
                     ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", ""),
                     ("^{\\circ}", ""), ("\\%", "%"), ("\\$", "")):
        s = s.replace(old, new)
    return re.sub(r"\s+", " ", s).strip().rstrip(".").strip()


def to_number(s: str | None) -> float | None:
    """A plain number (commas, ``$``, ``%``, ``a/b``, ``\\frac{a}{b}``) as float, else None.

    >>> to_number("1,234.5"), to_number("$12"), to_number("3/4"), to_number("x") is None
    (1234.5, 12.0, 0.75, True)
    """
    if s is None:
        return None
    t = _strip_latex_noise(s)
    if not t:
        return None
    if _NUMBER_LOOSE.match(t) and any(ch.isdigit() for ch in t):
        t = t.replace(",", "").replace("$", "").replace("%", "").replace(" ", "")
        try:
            return float(t)
        except ValueError:
            return None
    if _NUMBER.match(t) and any(ch.isdigit() for ch in t):
        try:
            return float(t.replace(",", ""))
        except ValueError:
            return None
    m = _SIMPLE_FRACTION.match(t) or _LATEX_FRACTION.match(t)
    if m:
        groups = m.groups()
        sign = -1.0 if groups[0].startswith("-") else 1.0
        num, den = (abs(int(groups[0])), int(groups[1])) if len(groups) == 2 else (
            int(groups[1]), int(groups[2]))
        return None if den == 0 else sign * float(Fraction(num, den))
    return None


def _choice_letter(s: str) -> str | None:
    t = _CHOICE_PREFIX.sub("", _strip_latex_noise(s)).strip()
    m = _CHOICE.match(t)
    return m.group(1).upper() if m else None


def normalize_answer(answer: str | None, answer_type: str | None = None) -> str:
    """Canonical string form of an answer for exact comparison and dedup.

    Numbers lose commas, ``$``, ``%`` and trailing zeros; choices become one
    upper-case letter; text is lower-cased; LaTeX spacing and ``\\text{}``
    wrappers are dropped.

    >>> normalize_answer("1,000.50"), normalize_answer("(b)", "choice")
    ('1000.5', 'B')
    >>> normalize_answer("\\\\text{ Yes }", "text"), normalize_answer("\\\\dfrac{1}{2}")
    ('yes', '\\\\frac{1}{2}')
    """
    if answer is None:
        return ""
    answer_type = answer_type or detect_answer_type(answer)
    if answer_type == "choice":
        letter = _choice_letter(answer)
        return letter if letter else _strip_latex_noise(answer).lower()
    if answer_type == "numeric":
        x = to_number(answer)
        if x is not None and math.isfinite(x):
            return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)
    s = _strip_latex_noise(answer)
    if answer_type == "text":
        s = s.lower()
    return s


# ---------------------------------------------------------------- type detection

# vectorized patterns (polars regex dialect, also valid Python re)
_NUMERIC_PAT = r"^\s*\$?\s*[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?\s*%?\s*\.?\s*$|^\s*[-+]?\d+\s*/\s*\d+\s*$"
_HAS_DIGIT = r"\d"
_LONE_LETTER_PAT = r"^\(\s*[A-J]\s*\)$|^[A-E]$"
_EXPR_PAT = r"[\\^_=+*/<>()\[\]{}]|\d|^[a-zA-Z]$|\s-\s|\bsqrt\b|\bpi\b"


def detect_answer_type(answer: str | None, options: Sequence[str] | None = None) -> str:
    """numeric | choice | expression | text, from the answer string (and options).

    >>> [detect_answer_type(a) for a in ["3.5", "-1/2", "\\\\frac{1}{2}", "blue", "(C)"]]
    ['numeric', 'numeric', 'expression', 'text', 'choice']
    """
    if answer is None:
        return "text"
    s = _strip_latex_noise(answer)
    if options and (_choice_letter(s) is not None or s in options):
        return "choice"
    if re.match(_NUMERIC_PAT, s) and re.search(_HAS_DIGIT, s):
        return "numeric"
    if re.match(_LONE_LETTER_PAT, s):  # "(C)" or a bare A-E: a choice even without options
        return "choice"
    if re.search(_EXPR_PAT, s):
        return "expression"
    return "text"


def detect_answer_types(answers: pl.Series, has_options: pl.Series | None = None) -> pl.Series:
    """Vectorized `detect_answer_type` over a string column (polars regex).

    >>> detect_answer_types(pl.Series(["12", "x+1", "B", "cat"])).to_list()
    ['numeric', 'expression', 'choice', 'text']
    """
    frame = pl.DataFrame({"a": answers.cast(pl.Utf8)})
    opts = (has_options if has_options is not None else pl.Series([False] * len(answers)))
    frame = frame.with_columns(o=opts.fill_null(False))
    a = pl.col("a").fill_null("")
    # the same LaTeX noise `_strip_latex_noise` removes, so both detectors agree
    a = a.str.replace_all(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", "$1")
    for old in ("\\$", "\\!", "\\,", "\\;", "^\\circ", "^{\\circ}", "\\left", "\\right"):
        a = a.str.replace_all(old, "", literal=True)
    a = a.str.replace_all("\\%", "%", literal=True).str.strip_chars().str.strip_chars("$")
    a = a.str.strip_chars().str.strip_chars_end(".").str.strip_chars()
    letter = a.str.contains(r"^\(?\s*[A-Ja-j]\s*\)?[.:]?$")
    out = frame.select(
        pl.when(pl.col("o") & letter).then(pl.lit("choice"))
        .when(a.str.contains(_NUMERIC_PAT) & a.str.contains(_HAS_DIGIT)).then(pl.lit("numeric"))
        .when(a.str.contains(_LONE_LETTER_PAT)).then(pl.lit("choice"))
        .when(a.str.contains(_EXPR_PAT)).then(pl.lit("expression"))
        .otherwise(pl.lit("text"))
        .alias("answer_type")
    )
    return out.to_series()


# ------------------------------------------------------------------ equivalence

def _timeouts() -> tuple[int | None, int | None]:
    # the CPU-time budgets install a signal handler, which Python only allows on
    # the main thread; elsewhere we rely on the length guard instead.
    if threading.current_thread() is threading.main_thread():
        return PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S
    return None, None


class _OverBudget(BaseException):
    """A math-verify call ran out of its CPU-time budget (BaseException: math-verify
    catches Exception, and must not swallow this)."""


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns that its own timeout is off: ours (`_cpu_budget`) replaces it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


@contextmanager
def _cpu_budget(seconds: float | None) -> Iterator[None]:
    """Raise `_OverBudget` in the block after `seconds` of this process's CPU time.

    CPU time, not wall time, so that the same input gets the same answer on an idle
    laptop, a loaded machine and a niced worker. None: no budget (off the main thread).
    """
    if seconds is None:
        yield
        return

    def over(signum, frame):
        raise _OverBudget

    previous = signal.signal(signal.SIGVTALRM, over)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


@lru_cache(maxsize=100_000)
def _mv_parse(expr: str) -> tuple:
    """math-verify parse of an answer string (wrapped in $...$), cached; () on failure."""
    if len(expr) > MAX_EXPRESSION_CHARS:
        return ()
    from math_verify import parse

    parse_timeout, _ = _timeouts()
    expr = _strip_latex_noise(expr) or expr
    text = expr if "$" in expr or "\\boxed" in expr else f"${expr}$"
    try:
        with _cpu_budget(parse_timeout):
            parsed = parse(text, parsing_timeout=0)
        if not parsed:
            with _cpu_budget(parse_timeout):
                parsed = parse(expr, parsing_timeout=0)
    except _OverBudget:
        return ()
    except Exception:  # math-verify raises many kinds on junk input; junk is "not parseable"
        return ()
    return tuple(parsed)


_N = r"-?\d+(?:\.\d+)?"
_ATOM = rf"(?:{_N}|-?\d*\\sqrt\{{\d+\}}|-?\d*\\pi|[a-z])"
_TERM = rf"(?:-?\\frac\{{{_ATOM}\}}\{{{_ATOM}\}}|{_ATOM})"
# Forms math-verify always parses (fractions, roots, pi, tuples/intervals of them):
# answered without sympy, which costs milliseconds per call.
SURELY_PARSEABLE = re.compile(
    rf"^{_TERM}(?:\s*[-+]\s*{_TERM})?$|^[\(\[]\s*{_TERM}(?:\s*,\s*{_TERM})+\s*[\)\]]$")


def math_parseable(expr: str) -> bool:
    """Whether math-verify can parse `expr` (used by the "unverifiable" filter).

    >>> math_parseable("\\\\frac{1}{2}"), math_parseable(""), math_parseable("x^{")
    (True, False, False)
    """
    if not (expr and expr.strip()):
        return False
    if SURELY_PARSEABLE.match(_strip_latex_noise(expr)):
        return True
    # math-verify falls back to the raw string when it cannot parse: that is not a parse
    return any(not isinstance(x, str) for x in _mv_parse(expr.strip()))


# Forms sympy may take unbounded time on (power towers, huge factorials); refused
# when no timeout can guard the call (off the main thread).
_RISKY = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\d{3,}\s*!")


def _mv_equivalent(pred: str, gold: str) -> bool:
    if _timeouts()[1] is None and (_RISKY.search(pred) or _RISKY.search(gold)):
        return False
    g, p = _mv_parse(gold), _mv_parse(pred)
    if not g or not p:
        return False
    from math_verify import verify

    _, verify_timeout = _timeouts()
    try:
        with _cpu_budget(verify_timeout):
            return bool(verify(list(g), list(p), timeout_seconds=0))
    except _OverBudget:
        return False
    except Exception:
        return False


def _numbers_close(a: float, b: float, rel_tol: float, abs_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


@lru_cache(maxsize=200_000)
def _equivalent(pred: str, gold: str, answer_type: str, options: tuple[str, ...],
                rel_tol: float, abs_tol: float) -> bool:
    p, g = pred.strip(), gold.strip()
    if not p:
        return False
    if p == g:
        return True
    if answer_type == "choice":
        gl = _choice_letter(g)
        if gl is None and options and g in options:
            gl = CHOICE_LETTERS[options.index(g)]
        pl_ = _choice_letter(p)
        if pl_ is None and options:
            norm = _strip_latex_noise(p).lower()
            for i, o in enumerate(options):
                if _strip_latex_noise(o).lower() == norm:
                    pl_ = CHOICE_LETTERS[i]
                    break
        if gl is not None and pl_ is not None:
            return gl == pl_
        # a choice set whose options are values: compare the values
        return _strip_latex_noise(p).lower() == _strip_latex_noise(g).lower()
    gn, pn = to_number(g), to_number(p)
    if gn is not None and pn is None:
        # "x = 5" and "5 apples" answer a numeric question too (units-free comparison)
        m = _NUMBER_WITH_CONTEXT.match(_strip_latex_noise(p))
        if m:
            pn = to_number(m.group(1))
    if gn is not None and pn is not None:
        return _numbers_close(pn, gn, rel_tol, abs_tol)
    if answer_type == "text":
        if normalize_answer(p, "text") == normalize_answer(g, "text"):
            return True
        # a text answer that is really math (e.g. "x=2") still gets a math check
        if not re.search(_EXPR_PAT, g):
            return False
    elif _strip_latex_noise(p) == _strip_latex_noise(g):
        return True
    if answer_type == "numeric" and pn is None and not re.search(r"[\\^/]|sqrt|pi", p):
        return False  # a plain gold number and a word answer: no need for sympy
    return _mv_equivalent(p, g)


def is_equivalent(pred: str | None, gold: str | None, answer_type: str | None = None, *,
                  options: Sequence[str] | None = None, rel_tol: float = 1e-6,
                  abs_tol: float = 1e-9) -> bool:
    """Whether a predicted answer equals the gold one, by answer type.

    numeric: tolerant number comparison (commas, ``$``, ``%``, fractions), then
    math-verify for forms like ``\\sqrt{4}``; choice: letters (``B``, ``(b)``,
    ``Option B``) or the option text when `options` is given; expression:
    math-verify parse + verify (symbolic), guarded by a length limit and
    timeouts; text: normalized, case-insensitive. Results are cached.

    >>> is_equivalent("72", "72.0", "numeric"), is_equivalent("x+1", "1+x", "expression")
    (True, True)
    >>> is_equivalent("cat", "dog", "text"), is_equivalent(None, "1")
    (False, False)
    >>> is_equivalent("blue", "B", "choice", options=["red", "blue"])
    True
    """
    if pred is None or gold is None:
        return False
    answer_type = answer_type if answer_type in ANSWER_TYPES else detect_answer_type(gold, options)
    return _equivalent(str(pred), str(gold), answer_type, tuple(options or ()),
                       float(rel_tol), float(abs_tol))


def are_equivalent(preds: Sequence[str | None], golds: Sequence[str | None],
                   answer_types: Sequence[str | None] | None = None) -> list[bool]:
    """`is_equivalent` over aligned lists (a reward batch); duplicates hit the cache.

    >>> are_equivalent(["1", "2", None], ["1", "3", "1"], ["numeric"] * 3)
    [True, False, False]
    """
    types = answer_types if answer_types is not None else [None] * len(preds)
    return [is_equivalent(p, g, t) for p, g, t in zip(preds, golds, types, strict=True)]
