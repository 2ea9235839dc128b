"""A synthetic, verifiable, multi-domain task suite with a difficulty knob.

Every row is a Sample (curate.schema.SAMPLE_SCHEMA) whose answer a program
checks, so a tiny model can be cold-started and then trained with GRPO on CPU
in minutes, and the data flows through curation like any other data set.

Domains (``difficulty knob`` = digits or length, ``level`` 1..max_level):

========  ===========================  ==================  =========================
domain    prompt                       answer              knob
========  ===========================  ==================  =========================
add       ``add:47+8=``                ``55``              digits of each operand
mul       ``mul:12*7=``                ``84``              digits of the operands
cmp       ``max:31,19=``               ``31``              digits
count     ``cnt:a:abcaab=``            ``3``               string length
sort      ``srt:3142=``                ``1234``            number of digits
radd      ``rad:19+4=``                ``32`` (23 written   digits (the *conflicting*
          (reversed-output addition)   backwards)           domain, see below)
dsort     ``srt:3142=`` (the same tag  ``4321``             number of digits (the
          as ``sort``)                                      *contradicting* domain)
========  ===========================  ==================  =========================

Interactions built in (for ``thresher mixture search``):

* ``add``, ``mul`` and ``cmp`` *help each other*: they share the digit
  vocabulary, the place-value alignment of operands and the carry/compare
  logic, so training on one raises accuracy on the others.
* ``count`` and ``sort`` share "scan the string" skills and help each other.
* ``radd`` *hurts*: it is addition with the same surface form as ``add`` (only
  the three-letter tag differs) but its answer is written least-significant
  digit first (``rad:19+4=`` -> ``\\boxed{32}``). Its output convention conflicts with
  ``add``'s, so a small model trained on a mixture heavy in ``radd`` gets
  worse at ``add``.
* ``dsort`` *contradicts* ``sort``: the very same prompts (``srt:`` tag and
  all) with the digits sorted in descending order, like a source that follows
  another convention under the same instruction. No model can satisfy both,
  so every share of ``dsort`` in a mixture costs ``sort`` accuracy. It is the
  strong form of ``radd``'s conflict.

Measured in real GRPO pilots (``thresher mixture search`` with
examples/mixture_search.toml, 3 seeds; bench/mixture_interactions.py,
docs/mixture.md): ``dsort`` wipes out ``sort``'s gain (sort beside dsort
+0.03 vs beside cmp +0.27), and training on ``sort`` raises ``mul`` and
``count`` (+0.06 each). The other designed effects do not show at that
scale: ``radd`` beside ``add`` costs ``add`` no more than ``cmp`` or ``count``
do, and ``add``/``mul``/``cmp`` alone do not raise each other.

Every response ends with the final-answer tag ``\\boxed{...}``; ``solution``
holds the cold-start target (the tagged answer; answering directly keeps
responses a few tokens long, so rollouts are cheap on CPU).

>>> train, held_out = make_splits(n_train=60, n_eval=12, seed=0)
>>> train.num_rows, held_out.num_rows
(60, 12)
>>> set(train.column("id").to_pylist()).isdisjoint(held_out.column("id").to_pylist())
True
>>> row = generate("add", 3, seed=1, level=1).to_pylist()[0]
>>> row["prompt"].startswith("add:"), row["solution"].endswith("}")
(True, True)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from curate.schema import SAMPLE_SCHEMA, sample_ids
from curate.suites import DEFAULT_TEXT_DOMAINS, TEXT_DOMAINS

DOMAINS: tuple[str, ...] = TEXT_DOMAINS  # names in curate.suites (read by config checks)
DEFAULT_DOMAINS: tuple[str, ...] = DEFAULT_TEXT_DOMAINS
MAX_LEVEL = 4
SOURCE = "thresher-synthetic"
LETTERS = "abcd"


def boxed(answer: str) -> str:
    """The final-answer tag every response ends with."""
    return "\\boxed{" + answer + "}"


def _numbers(rng: np.random.Generator, n: int, digits: np.ndarray) -> np.ndarray:
    """Uniform integers with exactly `digits` digits (1 digit includes 0)."""
    lo = np.where(digits <= 1, 0, 10 ** (digits - 1))
    hi = 10**digits
    return rng.integers(lo, hi)


def _levels(rng: np.random.Generator, n: int, level: int | None, max_level: int) -> np.ndarray:
    if level is not None:
        return np.full(n, level, dtype=np.int64)
    return rng.integers(1, max_level + 1, size=n)


# Each builder returns (prompts, answers, solutions, levels) for n rows.
Built = tuple[list[str], list[str], list[str], np.ndarray]


def _add(rng: np.random.Generator, n: int, lv: np.ndarray, reverse: bool = False) -> Built:
    # level 1: 1-digit + 1-digit ... level 4: 4-digit + up-to-4-digit
    a = _numbers(rng, n, lv)
    b = _numbers(rng, n, rng.integers(1, lv + 1))
    s = a + b
    tag = "rad" if reverse else "add"
    prompts = [f"{tag}:{x}+{y}=" for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    answers = [str(v)[::-1] if reverse else str(v) for v in s.tolist()]
    return prompts, answers, [boxed(a_) for a_ in answers], lv


def _mul(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    # level k: a k-digit number times a 1-digit number (k>=3: times up to 2 digits)
    a = _numbers(rng, n, lv)
    b = _numbers(rng, n, np.where(lv >= 3, rng.integers(1, 3, size=n), 1))
    prompts = [f"mul:{x}*{y}=" for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    answers = [str(v) for v in (a * b).tolist()]
    return prompts, answers, [boxed(a_) for a_ in answers], lv


def _cmp(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    a = _numbers(rng, n, lv + 1)
    b = _numbers(rng, n, np.maximum(1, lv + 1 - rng.integers(0, 2, size=n)))
    prompts = [f"max:{x},{y}=" for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    answers = [str(v) for v in np.maximum(a, b).tolist()]
    return prompts, answers, [boxed(a_) for a_ in answers], lv


def _count(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    lengths = 2 + 2 * lv  # 4, 6, 8, 10 letters
    prompts, answers, solutions = [], [], []
    target_idx = rng.integers(0, len(LETTERS), size=n)
    for length, t in zip(lengths.tolist(), target_idx.tolist(), strict=True):
        s = "".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), size=length))
        c = LETTERS[t]
        k = s.count(c)
        prompts.append(f"cnt:{c}:{s}=")
        answers.append(str(k))
        solutions.append(boxed(str(k)))
    return prompts, answers, solutions, lv


def _sort(rng: np.random.Generator, n: int, lv: np.ndarray, descending: bool = False) -> Built:
    lengths = 1 + lv  # 2..5 digits
    prompts, answers = [], []
    for length in lengths.tolist():
        d = rng.integers(0, 10, size=length)
        prompts.append("srt:" + "".join(map(str, d.tolist())) + "=")
        s = np.sort(d)
        answers.append("".join(map(str, (s[::-1] if descending else s).tolist())))
    return prompts, answers, [boxed(a_) for a_ in answers], lv


_BUILDERS: dict[str, Callable[..., Built]] = {
    "add": _add,
    "mul": _mul,
    "cmp": _cmp,
    "count": _count,
    "sort": _sort,
    "radd": lambda rng, n, lv: _add(rng, n, lv, reverse=True),
    "dsort": lambda rng, n, lv: _sort(rng, n, lv, descending=True),
}
_TASK = {"add": "math", "mul": "math", "cmp": "math", "count": "count", "sort": "text", "radd": "text",
         "dsort": "text"}
_ANSWER_TYPE = {"add": "numeric", "mul": "numeric", "cmp": "numeric", "count": "numeric",
                "sort": "text", "radd": "text", "dsort": "text"}


# ------------------------------------------------------- the weak teacher
# A real weaker model is not wrong at random: it has misconceptions and is
# wrong *consistently* on the problems they touch. With noise_style =
# "systematic" the cold-start teacher carries one misconception per domain
# (below). SFT on its traces teaches the student a wrong *mode* on those
# problems, which greedy decoding reproduces and only the verifiable reward
# can correct; random near-miss noise ("random") is averaged away by SFT and
# hidden by greedy decoding.
NOISE_STYLES: tuple[str, ...] = ("random", "systematic")


def _digits_no_carry(x: int, y: int) -> str:
    """Column addition that forgets every carry: 89+7 -> 86, 6+8 -> 4."""
    a, b = str(x), str(y)
    n = max(len(a), len(b))
    a, b = a.rjust(n, "0"), b.rjust(n, "0")
    out = "".join(str((int(p) + int(q)) % 10) for p, q in zip(a, b, strict=True))
    return out.lstrip("0") or "0"


def _mul_no_carry(x: int, y: int) -> int:
    """Long multiplication that forgets the carries of each partial product.

    47*8 -> 326 (7*8 = 56: writes 6, drops the 5; 4*8 = 32); the partial
    products of a multi-digit multiplier are then added correctly.
    """
    a = str(x)
    total = 0
    for shift, q in enumerate(reversed(str(y))):
        head, *rest = a
        part = str(int(head) * int(q)) + "".join(str(int(p) * int(q) % 10) for p in rest)
        total += int(part) * 10**shift
    return total


def _bug_add(prompt: str, reverse: bool = False) -> str:
    x, y = prompt[4:-1].split("+")
    out = _digits_no_carry(int(x), int(y))
    return out[::-1] if reverse else out


def _bug_mul(prompt: str) -> str:
    x, y = prompt[4:-1].split("*")
    return str(_mul_no_carry(int(x), int(y)))


def _bug_cmp(prompt: str) -> str:
    # compares the numbers as strings: max:9,31= -> 9
    return max(prompt[4:-1].split(","))


def _bug_count(prompt: str) -> str:
    # off by one: the scan starts at the second letter
    _, letter, s = prompt[:-1].split(":")
    return str(s[1:].count(letter))


def _bug_sort(prompt: str) -> str:
    # an insertion sort that stops one element early: the last digit stays put
    d = prompt[4:-1]
    return "".join(sorted(d[:-1])) + d[-1]


_BUGS: dict[str, Callable[[str], str]] = {
    "add": _bug_add, "mul": _bug_mul, "cmp": _bug_cmp, "count": _bug_count, "sort": _bug_sort,
    "radd": lambda p: _bug_add(p, reverse=True),
    "dsort": lambda p: "".join(sorted(p[4:-2], reverse=True)) + p[-2],  # same bug, descending
}


def teacher_bug(domain: str, prompt: str) -> str:
    """The systematic teacher's answer to `prompt` (equal to the right one where
    its misconception does not matter).

    >>> teacher_bug("add", "add:89+7="), teacher_bug("cmp", "max:9,31="), teacher_bug("sort", "srt:3142=")
    ('86', '9', '1342')
    """
    return _BUGS[domain](prompt)


def _noisy_rows(domain: str, prompts: list[str], answers: list[str], solution_noise: float,
                noise_style: str, rng: np.random.Generator) -> tuple[np.ndarray, list[str | None]]:
    """Which rows get a wrong cold-start solution, and that wrong answer (None = near miss).

    "random": a share `solution_noise` of rows, uniformly. "systematic": the
    same expected share of wrong rows, spent first on the problems the
    teacher's misconception touches (each of those is wrong with probability
    min(1, solution_noise / share touched)); what is left of the budget goes
    to near misses on the other rows.
    """
    n = len(prompts)
    if noise_style == "random":
        return rng.random(n) < solution_noise, [None] * n
    bugged = [teacher_bug(domain, p) for p in prompts]
    touched = np.array([b != a for b, a in zip(bugged, answers, strict=True)], dtype=bool)
    share = touched.mean() if n else 0.0
    p_bug = min(1.0, solution_noise / share) if share > 0 else 0.0
    p_rest = max(0.0, solution_noise - share) / (1 - share) if share < 1 else 0.0
    u = rng.random(n)
    noisy = np.where(touched, u < p_bug, u < p_rest)
    return noisy, [b if t else None for b, t in zip(bugged, touched, strict=True)]


def _near_miss(answers: list[str], rng: np.random.Generator) -> list[str]:
    """A plausible wrong answer per row: one digit nudged by +-1 (never the right answer)."""
    out = []
    for a, pos, step in zip(answers, rng.integers(0, 1 << 30, size=len(answers)).tolist(),
                            rng.choice([-1, 1], size=len(answers)).tolist(), strict=True):
        digits = [i for i, c in enumerate(a) if c.isdigit()]
        if not digits:
            out.append(a + "0")
            continue
        i = digits[pos % len(digits)]
        d = (int(a[i]) + step) % 10
        out.append(a[:i] + str(d) + a[i + 1:])
    return out


def generate(
    domain: str, n: int, seed: int = 0, level: int | None = None, max_level: int = MAX_LEVEL,
    solution_noise: float = 0.0, noise_style: str = "random",
) -> pa.Table:
    """`n` problems of one domain as a Sample-schema table (seeded).

    `level` fixes the difficulty knob (1 = easiest); by default levels are
    drawn uniformly from 1..max_level. The level is kept in `meta` as JSON.
    `solution_noise` is the share of rows whose `solution` (the cold-start
    target, not the verified `answer`) holds a near-miss wrong answer: a
    cold-start teacher that is right only `1 - solution_noise` of the time,
    which verifiable-reward RL can then correct. `meta.noisy` marks them.
    `noise_style` says how the teacher is wrong: "random" (a near miss on
    random rows) or "systematic" (a misconception per domain, see
    `teacher_bug`, applied consistently to the problems it touches).
    """
    if domain not in _BUILDERS:
        raise ValueError(f"unknown synthetic domain {domain!r}; expected one of {DOMAINS}")
    if noise_style not in NOISE_STYLES:
        raise ValueError(f"unknown noise_style {noise_style!r}; expected one of {NOISE_STYLES}")
    if level is not None and not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be in 1..{MAX_LEVEL}, got {level}")
    # one stream per (seed, domain) so adding a domain never changes another's rows
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    lv = _levels(rng, n, level, max_level)
    prompts, answers, solutions, levels = _BUILDERS[domain](rng, n, lv)
    noisy = np.zeros(n, dtype=bool)
    if solution_noise > 0:
        noise_rng = np.random.default_rng([seed, DOMAINS.index(domain), 7])
        noisy, bugged = _noisy_rows(domain, prompts, answers, solution_noise, noise_style, noise_rng)
        wrong = _near_miss([a for a, z, b in zip(answers, noisy, bugged, strict=True)
                            if z and b is None], noise_rng)
        it = iter(wrong)
        solutions = [sol if not z else boxed(b if b is not None else next(it))
                     for sol, z, b in zip(solutions, noisy, bugged, strict=True)]
    metas = [json.dumps({"level": int(v), "generator": "curate.synthetic", "noisy": bool(z)})
             for v, z in zip(levels.tolist(), noisy.tolist(), strict=True)]
    return pa.table(
        {
            "id": sample_ids(prompts, answers),
            "source": [SOURCE] * n,
            "domain": [domain] * n,
            "task": [_TASK[domain]] * n,
            "prompt": prompts,
            "images": pa.array([[] for _ in range(n)], SAMPLE_SCHEMA.field("images").type),
            "answer": answers,
            "answer_type": [_ANSWER_TYPE[domain]] * n,
            "solution": solutions,
            "difficulty": pa.nulls(n, pa.float64()),
            "n_rollouts": pa.array([0] * n, pa.int64()),
            "meta": metas,
        },
        schema=SAMPLE_SCHEMA,
    )


def make_suite(
    n: int,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    max_level: int = MAX_LEVEL,
    solution_noise: float = 0.0,
    noise_style: str = "random",
) -> pa.Table:
    """`n` problems split across `domains` by `weights` (default: equal), de-duplicated.

    Duplicated prompts (small levels have few distinct problems) are dropped, so
    the result can hold slightly fewer than `n` rows.
    """
    w = np.ones(len(domains)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(domains) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(domains)} non-negative numbers, not all zero")
    counts = np.floor(w / w.sum() * n).astype(int)
    counts[np.argmax(w)] += n - counts.sum()
    parts = [generate(d, int(k), seed=seed, max_level=max_level, solution_noise=solution_noise,
                      noise_style=noise_style)
             for d, k in zip(domains, counts.tolist(), strict=True) if k > 0]
    table = pa.concat_tables(parts)
    _, first = np.unique(np.asarray(table.column("id").to_pylist()), return_index=True)
    return table.take(np.sort(first))


def make_splits(
    n_train: int,
    n_eval: int,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    max_level: int = MAX_LEVEL,
    solution_noise: float = 0.0,
    shuffle: bool = False,
    noise_style: str = "random",
) -> tuple[pa.Table, pa.Table]:
    """Train and held-out eval splits with disjoint ids (held-out is an equal mix).

    The held-out split is generated from a different seed stream, and any
    problem that also occurs in train is removed from train (exact
    decontamination here; `thresher run` also decontaminates through curation).
    `solution_noise` and `noise_style` apply to train only (see `generate`). Train rows are
    grouped by domain unless `shuffle` (seeded).
    """
    held_out = make_suite(n_eval * 2, domains, None, seed=seed + 1_000_003, max_level=max_level)
    held_out = _take_per_domain(held_out, n_eval, domains)
    train = make_suite(n_train * 2, domains, weights, seed=seed, max_level=max_level,
                       solution_noise=solution_noise, noise_style=noise_style)
    held_ids = set(held_out.column("id").to_pylist())
    keep = np.array([i not in held_ids for i in train.column("id").to_pylist()], dtype=bool)
    train = train.filter(pa.array(keep))
    w = np.ones(len(domains)) if weights is None else np.asarray(weights, dtype=float)
    train = _take_per_domain(train, n_train, domains, w)
    if shuffle:  # rows come grouped by domain; shuffled, any slice keeps the mix
        train = train.take(np.random.default_rng([seed, 99]).permutation(train.num_rows))
    return train, held_out


def _take_per_domain(
    table: pa.Table, n: int, domains: Sequence[str], weights: np.ndarray | None = None
) -> pa.Table:
    """The first rows of each domain so that domains keep their share of `n`."""
    w = np.ones(len(domains)) if weights is None else weights
    counts = np.floor(w / w.sum() * n).astype(int)
    counts[np.argmax(w)] += n - counts.sum()
    dom = np.asarray(table.column("domain").to_pylist())
    idx = [np.flatnonzero(dom == d)[:k] for d, k in zip(domains, counts.tolist(), strict=True)]
    return table.take(np.concatenate(idx)) if idx else table
