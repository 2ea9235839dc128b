"""Every ```python block of the README runs as written.

Each block runs in a fresh interpreter from a temporary folder (so relative
`runs/...` paths stay out of the checkout), with the repository on PYTHONPATH
and the hub switched off. The "Use with TRL" and "Use with verl" snippets must
also leave a rollout log or a stats snapshot behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[tuple[str, str]]:
    """(section title, code) for every python block, in README order."""
    out, title = [], ""
    text = (ROOT / "README.md").read_text()
    for m in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```", text, flags=re.S | re.M):
        if m.group(1):
            title = m.group(1).strip()
        else:
            out.append((title, m.group(2)))
    return out


BLOCKS = _blocks()


def test_the_plugin_sections_have_snippets() -> None:
    titles = {t for t, _ in BLOCKS}
    assert {"Use with TRL", "Use with verl"} <= titles


@pytest.mark.parametrize(("title", "code"), BLOCKS, ids=[f"{i}-{t}" for i, (t, _) in enumerate(BLOCKS)])
def test_readme_snippet_runs(title: str, code: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"README snippet in '{title}' failed:\n{proc.stderr[-3000:]}"
    if title in ("Use with TRL", "Use with verl"):
        written = list((tmp_path / "runs").rglob("*.parquet"))
        assert written, f"{title} snippet wrote no Parquet under runs/"
