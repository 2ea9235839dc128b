"""Visual verifiable tasks: questions about small rendered grids, answers checked by program.

The multimodal sibling of `curate.synthetic`. Every image is a grid of coloured
cells rendered with numpy (``IMAGE_PX`` x ``IMAGE_PX`` pixels, written once as a
PNG named by its sha256), every row is a Sample (curate.schema.SAMPLE_SCHEMA)
whose ``images`` column references that file (path + sha256), and every answer
is checked by the usual verifiers (`curate.answers.is_equivalent`). The prompt
text is the same for many rows (``bar:tallest=`` for every bar chart), so the
answer cannot be read from the text: the image is required.

==========  ======================  ==============  ======================================
domain      prompt                  answer          what the image holds
==========  ======================  ==============  ======================================
bars        ``bar:tallest=``        ``3``           vertical bars of random colours; the
                                                    column (1 = left) of the tallest one
majority    ``maj:red,blue=``       ``blue``        cells of two colours; the one with more
vcount      ``num:green=``          ``5``           cells of several colours; how many are
                                                    green
cell        ``at:2,3=``             ``yellow``      a full grid; the colour at row 2,
                                                    column 3 (1-based, from the top left)
==========  ======================  ==============  ======================================

Difficulty knob (``level`` 1..4, kept in ``meta`` like the text domains'):
levels 1-2 draw a 4x4 grid (8-pixel cells), levels 3-4 an 8x8 grid (4-pixel
cells); the even levels are the harder variant of the same grid: the tallest
bar wins by one cell instead of two, the majority by one or two cells instead
of four or more, distractor cells come in three colours instead of one, and
the ``cell`` grid uses four colours instead of two.

A fallible teacher for the cold start, as in `curate.synthetic`:
``solution_noise = q`` makes a share q of the ``solution`` column (the SFT
target; ``answer`` stays right) wrong. ``noise_style = "systematic"`` spends
it on one misconception per domain (`teacher_bug`: counts the bars' columns
from the right, names the colour the question names first, misses one
cell, swaps row and column), applied to the problems it touches;
``"random"`` puts a wrong answer from the domain's answer space on random rows.

The image is required. `text_only_prior` measures the best an image-blind
answerer can do (the most frequent answer for each prompt text, fitted on the
very rows it is scored on, so an upper bound). Measured on the suite of
16,000 rows (15,769 after de-duplication), levels 1-4 mixed, seed 0: bars
0.19 (0.26 on the 4-column levels, 0.13 on the 8-column ones), majority 0.52,
vcount 0.12, cell 0.30: about chance, where a model that sees the image can
be right every time.

>>> import tempfile
>>> images = tempfile.mkdtemp()
>>> t = generate_vision("bars", 4, images, seed=0, level=1)
>>> t.column("prompt").to_pylist()[0], len(t.column("images")[0].as_py())
('bar:tallest=', 1)
>>> from PIL import Image
>>> Image.open(t.column("images")[0].as_py()[0]["path"]).size
(32, 32)
>>> train, held_out = make_vision_splits(40, 8, images, seed=0)
>>> train.num_rows, held_out.num_rows
(40, 8)
>>> set(train.column("id").to_pylist()).isdisjoint(held_out.column("id").to_pylist())
True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io import write_bytes_atomic
from curate.schema import SAMPLE_SCHEMA, sample_ids
from curate.suites import VISION_DOMAINS as SUITE_DOMAINS
from curate.synthetic import NOISE_STYLES, boxed

VISION_DOMAINS: tuple[str, ...] = SUITE_DOMAINS  # names in curate.suites (read by config checks)
MAX_LEVEL = 4
IMAGE_PX = 32
SOURCE = "thresher-synthetic-vision"
# index 0 is the background; names are what prompts and answers say
COLOURS: tuple[str, ...] = ("black", "red", "green", "blue", "yellow")
PALETTE = np.array(
    [[0, 0, 0], [230, 40, 40], [40, 200, 60], [50, 90, 240], [240, 220, 40]], dtype=np.uint8
)

# (prompts, answers, grids) for n rows; each grid is a (g, g) array of colour indices
Built = tuple[list[str], list[str], list[np.ndarray]]


def grid_side(level: int) -> int:
    """Cells per side of the grid at `level` (4 for levels 1-2, 8 for 3-4).

    >>> [grid_side(lv) for lv in (1, 2, 3, 4)]
    [4, 4, 8, 8]
    """
    return 4 if level <= 2 else 8


def render(grid: np.ndarray, px: int = IMAGE_PX) -> np.ndarray:
    """(px, px, 3) uint8 RGB pixels of a (g, g) grid of colour indices (g divides px).

    >>> render(np.array([[1, 0], [0, 3]]), px=4)[:, :, 0].tolist()
    [[230, 230, 0, 0], [230, 230, 0, 0], [0, 0, 50, 50], [0, 0, 50, 50]]
    """
    g = grid.shape[0]
    if px % g:
        raise ValueError(f"a {g}x{g} grid does not tile {px} pixels")
    cell = px // g
    return PALETTE[np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)]


def _bars(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    prompts, answers, grids = [], [], []
    for level in lv.tolist():
        g = grid_side(level)
        margin = 1 if level % 2 == 0 else 2
        top = int(rng.integers(margin + 1, g + 1))
        heights = rng.integers(1, top - margin + 1, size=g)
        col = int(rng.integers(0, g))
        heights[col] = top
        grid = np.zeros((g, g), dtype=np.int64)
        rows = np.arange(g)[:, None]
        colours = rng.integers(1, len(COLOURS), size=g)  # each bar its own colour
        grid[:] = np.where(rows >= g - heights[None, :], colours[None, :], 0)  # on the bottom row
        prompts.append("bar:tallest=")
        answers.append(str(col + 1))
        grids.append(grid)
    return prompts, answers, grids


def _majority(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    prompts, answers, grids = [], [], []
    for level in lv.tolist():
        g = grid_side(level)
        cells = g * g
        a, b = (rng.permutation(len(COLOURS) - 1)[:2] + 1).tolist()  # two colours, not black
        big_gap = level % 2 == 1
        lo_gap, hi_gap = (cells // 4, cells // 2) if big_gap else (1, 2)
        gap = int(rng.integers(lo_gap, hi_gap + 1))
        more = int(rng.integers(gap + 1, (cells + gap) // 2 + 1))  # more + less <= cells
        less = more - gap
        flat = np.zeros(cells, dtype=np.int64)
        where = rng.permutation(cells)
        flat[where[:more]] = a
        flat[where[more:more + less]] = b
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        prompts.append(f"maj:{COLOURS[first]},{COLOURS[second]}=")
        answers.append(COLOURS[a])
        grids.append(flat.reshape(g, g))
    return prompts, answers, grids


def _vcount(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    prompts, answers, grids = [], [], []
    for level in lv.tolist():
        g = grid_side(level)
        cells = g * g
        target = int(rng.integers(1, len(COLOURS)))
        others = [c for c in range(1, len(COLOURS)) if c != target]
        distractors = others if level % 2 == 0 else [others[int(rng.integers(0, len(others)))]]
        k = int(rng.integers(0, 10))  # 0..9 target cells: a one-digit answer
        flat = np.zeros(cells, dtype=np.int64)
        where = rng.permutation(cells)
        flat[where[:k]] = target
        rest = where[k:]
        n_dis = int(rng.integers(0, min(len(rest), cells // 2) + 1))
        flat[rest[:n_dis]] = np.asarray(distractors)[rng.integers(0, len(distractors), size=n_dis)]
        prompts.append(f"num:{COLOURS[target]}=")
        answers.append(str(k))
        grids.append(flat.reshape(g, g))
    return prompts, answers, grids


def _cell(rng: np.random.Generator, n: int, lv: np.ndarray) -> Built:
    prompts, answers, grids = [], [], []
    for level in lv.tolist():
        g = grid_side(level)
        palette = np.arange(1, len(COLOURS)) if level % 2 == 0 else \
            rng.permutation(np.arange(1, len(COLOURS)))[:2]
        grid = palette[rng.integers(0, len(palette), size=(g, g))]
        r, c = (int(v) for v in rng.integers(0, g, size=2))
        prompts.append(f"at:{r + 1},{c + 1}=")
        answers.append(COLOURS[int(grid[r, c])])
        grids.append(grid)
    return prompts, answers, grids


_BUILDERS: dict[str, Callable[[np.random.Generator, int, np.ndarray], Built]] = {
    "bars": _bars, "majority": _majority, "vcount": _vcount, "cell": _cell,
}
_TASK = {"bars": "grounding", "majority": "choice", "vcount": "count", "cell": "grounding"}
_ANSWER_TYPE = {"bars": "numeric", "majority": "text", "vcount": "numeric", "cell": "text"}


def teacher_bug(domain: str, prompt: str, grid: np.ndarray) -> str:
    """The systematic teacher's answer (right where its misconception does not matter).

    bars: counts the columns from the right; majority: names the colour the
    question names first; vcount: misses one cell; cell: reads (row, column)
    as (column, row).

    >>> g = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 2, 0, 0], [1, 2, 3, 0]])
    >>> teacher_bug("bars", "bar:tallest=", g), teacher_bug("majority", "maj:green,red=", g)
    ('4', 'green')
    >>> teacher_bug("vcount", "num:red=", g), teacher_bug("cell", "at:4,1=", g)
    ('2', 'black')
    """
    if domain == "bars":
        return str(grid.shape[1] - int(np.argmax((grid != 0).sum(axis=0))))
    if domain == "majority":
        return prompt.split(":", 1)[1].split(",", 1)[0]
    if domain == "vcount":
        k = int((grid == COLOURS.index(prompt[4:-1])).sum())
        return str(max(0, k - 1))
    if domain == "cell":
        r, c = (int(v) for v in prompt[3:-1].split(","))
        return COLOURS[int(grid[c - 1, r - 1])]
    raise ValueError(f"unknown visual domain {domain!r}; expected one of {VISION_DOMAINS}")


def _random_wrong(domain: str, answer: str, grid: np.ndarray, rng: np.random.Generator) -> str:
    """A wrong answer from the domain's answer space (the "random" teacher)."""
    if domain == "bars":
        options = [str(c) for c in range(1, grid.shape[1] + 1) if str(c) != answer]
    elif domain == "vcount":
        options = [str(int(answer) + d) for d in (-1, 1) if int(answer) + d >= 0]
    else:  # majority, cell: another colour
        options = [c for c in COLOURS[1:] if c != answer]
    return options[int(rng.integers(0, len(options)))]


def _noisy_solutions(domain: str, prompts: list[str], answers: list[str], grids: list[np.ndarray],
                     solution_noise: float, noise_style: str, rng: np.random.Generator
                     ) -> tuple[list[str], list[bool]]:
    """Cold-start targets with a share `solution_noise` wrong (`curate.synthetic`'s rule:
    the systematic teacher spends its errors first on the problems its
    misconception touches, the rest of the budget on random wrong answers)."""
    n = len(prompts)
    if noise_style == "systematic":
        bugged = [teacher_bug(domain, p, g) for p, g in zip(prompts, grids, strict=True)]
        touched = np.array([b != a for b, a in zip(bugged, answers, strict=True)], dtype=bool)
    else:
        bugged, touched = [None] * n, np.zeros(n, dtype=bool)
    share = touched.mean() if n else 0.0
    p_bug = min(1.0, solution_noise / share) if share > 0 else 0.0
    p_rest = max(0.0, solution_noise - share) / (1 - share) if share < 1 else 0.0
    u = rng.random(n)
    noisy = np.where(touched, u < p_bug, u < p_rest)
    out = []
    for a, g, z, t, b in zip(answers, grids, noisy.tolist(), touched.tolist(), bugged, strict=True):
        out.append(a if not z else (b if t else _random_wrong(domain, a, g, rng)))
    return [boxed(a) for a in out], noisy.tolist()


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding of (h, w, 3) uint8 pixels (fixed settings: same pixels, same bytes).

    >>> png_bytes(np.zeros((2, 2, 3), np.uint8))[:4]
    b'\\x89PNG'
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_images(pixels: Sequence[np.ndarray], image_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Write each image as ``image_dir/<sha256>.png`` (once; atomically) -> [{path, sha256}].

    Files are named by the sha256 of their bytes, so the same picture is one
    file however many rows (or runs) reference it.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> refs = write_images([np.zeros((4, 4, 3), np.uint8)] * 2, d)
    >>> refs[0] == refs[1], len(os.listdir(d)), refs[0]["path"].endswith(refs[0]["sha256"] + ".png")
    (True, 1, True)
    """
    folder = Path(image_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for px in pixels:
        data = png_bytes(px)
        digest = hashlib.sha256(data).hexdigest()
        path = folder / f"{digest}.png"
        if not path.exists():
            write_bytes_atomic(data, path)
        refs.append({"path": str(path), "sha256": digest})
    return refs


def generate_vision(
    domain: str, n: int, image_dir: str | os.PathLike, seed: int = 0, level: int | None = None,
    max_level: int = MAX_LEVEL, solution_noise: float = 0.0, noise_style: str = "random",
) -> pa.Table:
    """`n` problems of one visual domain as a Sample-schema table, images under `image_dir`.

    `level` fixes the difficulty knob (1 = easiest); by default levels are
    drawn uniformly from 1..max_level. Seeded: the same arguments give the
    same rows and the same image files. The id covers the image's sha256, so
    rows with the same prompt text stay distinct. `solution_noise` and
    `noise_style` make the cold-start `solution` of some rows wrong (a
    fallible teacher, `teacher_bug`); `meta.noisy` marks them. The rows and
    images do not depend on the noise.
    """
    if domain not in _BUILDERS:
        raise ValueError(f"unknown visual domain {domain!r}; expected one of {VISION_DOMAINS}")
    if noise_style not in NOISE_STYLES:
        raise ValueError(f"unknown noise_style {noise_style!r}; expected one of {NOISE_STYLES}")
    for name, v in (("level", level), ("max_level", max_level)):
        if v is not None and not 1 <= v <= MAX_LEVEL:
            raise ValueError(f"{name} must be in 1..{MAX_LEVEL}, got {v}")
    # one stream per (seed, domain), offset from curate.synthetic's streams
    rng = np.random.default_rng([seed, 100 + VISION_DOMAINS.index(domain)])
    lv = np.full(n, level, np.int64) if level is not None else rng.integers(1, max_level + 1, n)
    prompts, answers, grids = _BUILDERS[domain](rng, n, lv)
    refs = write_images([render(g) for g in grids], image_dir)
    solutions, noisy = [boxed(a) for a in answers], [False] * n
    if solution_noise > 0:
        noise_rng = np.random.default_rng([seed, 100 + VISION_DOMAINS.index(domain), 7])
        solutions, noisy = _noisy_solutions(domain, prompts, answers, grids, solution_noise,
                                            noise_style, noise_rng)
    metas = [json.dumps({"level": int(v), "grid": int(g.shape[0]),
                         "generator": "curate.synthetic_vision", "noisy": bool(z)})
             for v, g, z in zip(lv.tolist(), grids, noisy, strict=True)]
    return pa.table(
        {
            "id": sample_ids(prompts, answers, [[r["sha256"]] for r in refs]),
            "source": [SOURCE] * n,
            "domain": [domain] * n,
            "task": [_TASK[domain]] * n,
            "prompt": prompts,
            "images": pa.array([[r] for r in refs], SAMPLE_SCHEMA.field("images").type),
            "answer": answers,
            "answer_type": [_ANSWER_TYPE[domain]] * n,
            "solution": solutions,
            "difficulty": pa.nulls(n, pa.float64()),
            "n_rollouts": pa.array([0] * n, pa.int64()),
            "meta": metas,
        },
        schema=SAMPLE_SCHEMA,
    )


def make_vision_suite(
    n: int, image_dir: str | os.PathLike, domains: Sequence[str] = VISION_DOMAINS,
    weights: Sequence[float] | None = None, seed: int = 0, max_level: int = MAX_LEVEL,
    solution_noise: float = 0.0, noise_style: str = "random",
) -> pa.Table:
    """`n` visual problems split across `domains` by `weights` (default: equal), de-duplicated."""
    counts = _counts(n, domains, weights)
    parts = [generate_vision(d, k, image_dir, seed=seed, max_level=max_level,
                             solution_noise=solution_noise, noise_style=noise_style)
             for d, k in zip(domains, counts.tolist(), strict=True) if k > 0]
    table = pa.concat_tables(parts)
    _, first = np.unique(np.asarray(table.column("id").to_pylist()), return_index=True)
    return table.take(np.sort(first))


def make_vision_splits(
    n_train: int, n_eval: int, image_dir: str | os.PathLike,
    domains: Sequence[str] = VISION_DOMAINS, weights: Sequence[float] | None = None,
    seed: int = 0, max_level: int = MAX_LEVEL, shuffle: bool = False,
    solution_noise: float = 0.0, noise_style: str = "random",
) -> tuple[pa.Table, pa.Table]:
    """Train and held-out splits of visual problems with disjoint ids, like `make_splits`.

    The held-out split (`n_eval` rows, an equal mix) comes from another seed
    stream; a train row whose id (prompt, image sha256, answer) is also held
    out is removed. Both splits write their images under `image_dir`. Train
    rows are grouped by domain unless `shuffle` (seeded). `solution_noise` /
    `noise_style` apply to the train split's solutions only.
    """
    held_out = make_vision_suite(n_eval + n_eval // 2 + len(domains), image_dir, domains,
                                 seed=seed + 1_000_003, max_level=max_level)
    held_out = _take_per_domain(held_out, n_eval, domains, None)
    train = make_vision_suite(n_train + n_train // 2 + len(domains), image_dir, domains, weights,
                              seed=seed, max_level=max_level, solution_noise=solution_noise,
                              noise_style=noise_style)
    held = set(held_out.column("id").to_pylist())
    train = train.filter(pa.array([i not in held for i in train.column("id").to_pylist()]))
    train = _take_per_domain(train, n_train, domains, weights)
    if shuffle:
        train = train.take(np.random.default_rng([seed, 98]).permutation(train.num_rows))
    return train, held_out


def text_only_prior(table: pa.Table) -> dict[str, float]:
    """Per domain, the accuracy of the best image-blind answerer: for each prompt
    text, the answer most frequent among the rows with that text (fitted on the
    rows it is scored on, so it is an upper bound on any text-only model).

    >>> import tempfile
    >>> t = make_vision_suite(400, tempfile.mkdtemp(), domains=("bars",), seed=0, max_level=2)
    >>> text_only_prior(t)["bars"] < 0.4   # four columns: about one in four
    True
    """
    import polars as pl

    df = pl.from_arrow(table.select(["domain", "prompt", "answer"]))
    best = (df.group_by(["domain", "prompt", "answer"]).len()
            .group_by(["domain", "prompt"]).agg(pl.col("len").max().alias("hit"), pl.col("len").sum())
            .group_by("domain").agg((pl.col("hit").sum() / pl.col("len").sum()).alias("acc")))
    return {d: round(float(a), 4) for d, a in best.sort("domain").iter_rows()}


def _counts(n: int, domains: Sequence[str], weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    w = np.ones(len(domains)) if weights is None else np.asarray(weights, dtype=float)
    if len(w) != len(domains) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(domains)} non-negative numbers, not all zero")
    counts = np.floor(w / w.sum() * n).astype(int)
    counts[np.argmax(w)] += n - counts.sum()
    return counts


def _take_per_domain(table: pa.Table, n: int, domains: Sequence[str],
                     weights: Sequence[float] | None) -> pa.Table:
    counts = _counts(n, domains, weights)
    dom = np.asarray(table.column("domain").to_pylist())
    idx = [np.flatnonzero(dom == d)[:k] for d, k in zip(domains, counts.tolist(), strict=True)]
    return table.take(np.concatenate(idx)) if idx else table
