"""The README's "Use with TRL" and "Use with verl" snippets are run as written.

Each ```python block of those sections runs in a fresh interpreter from a
temporary folder (so relative `runs/...` paths stay out of the checkout), with
the repository on PYTHONPATH and the hub switched off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _section_blocks(title: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize("title", ["Use with TRL", "Use with verl"])
def test_readme_snippet_runs(title: str, tmp_path: Path) -> None:
    blocks = _section_blocks(title)
    assert blocks, f"no python snippet under '## {title}'"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for code in blocks:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{title} snippet failed:\n{proc.stderr[-3000:]}"
    # the snippets write a rollout log or a stats snapshot under runs/
    written = list((tmp_path / "runs").rglob("*.parquet"))
    assert written, f"{title} snippet wrote no Parquet under runs/"
