"""The shape of the code base (docs/architecture.md): dependency rule, one home per idea."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("curate", "sampling", "trainer", "pipelines")
# what each room may import of the others; sampling may use the leaf modules of curate
# that import nothing of thresher but each other (the atomic writer, the config base,
# the deferred import)
ALLOWED = {
    "curate": set(),
    "sampling": {"curate.io", "curate.errors", "curate.config", "curate.lazy"},
    "trainer": {"curate", "sampling"},
    "pipelines": {"curate", "sampling", "trainer"},
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _py(room: str) -> list[Path]:
    return sorted((ROOT / room).rglob("*.py"))


def test_dependencies_point_one_way():
    bad = []
    for room in ROOMS:
        for f in _py(room):
            for mod in _imports(f):
                top = mod.split(".")[0]
                if top in ROOMS and top != room:
                    ok = ALLOWED[room]
                    if not (top in ok or mod in ok):
                        bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_library_never_imports_the_cli():
    lib = [f for room in ROOMS for f in _py(room)
           if "commands" not in f.parts and f.name != "cli.py"]
    bad = [str(f.relative_to(ROOT)) for f in lib if "pipelines.cli" in _imports(f)]
    assert not bad, bad


def _code_only(text: str) -> str:
    """`text` without its docstrings (their examples may name stages)."""
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            doc_lines |= set(range(body[0].lineno, body[0].end_lineno + 1))
    return "\n".join(line for i, line in enumerate(text.splitlines(), 1) if i not in doc_lines)


def test_the_runner_has_no_named_stage():
    for name in ("curation.py", "spec.py"):
        text = _code_only((ROOT / "pipelines" / name).read_text())
        registry = text[text.find("STAGES: dict"):text.find("}", text.find("STAGES: dict"))] \
            if "STAGES: dict" in text else ""
        rest = text.replace(registry, "")
        assert not re.search(r"""["'](decontaminate|dedup_\w+|length_bounds|unverifiable)["']""", rest), name
        assert "__pydantic_extra__" not in text and "RUNNER_ARGS" not in text


def _defs(pattern: str) -> list[str]:
    hits = []
    for room in ROOMS:
        for f in _py(room):
            if re.search(pattern, f.read_text(encoding="utf-8"), re.M):
                hits.append(str(f.relative_to(ROOT)))
    return hits


def test_one_definition_each():
    assert _defs(r"^def write_parquet_atomic|^def _write_parquet_atomic|tempfile\.mkstemp") == ["curate/io.py"]
    assert _defs(r"^ROLLOUT_SCHEMA\s*=") == ["curate/rollout_log.py"]
    assert _defs(r"^def \w+\(exc: ValidationError") == ["curate/config.py"]


def test_user_errors_share_one_base():
    from curate.embedding import EmbeddingModelMissing
    from curate.errors import ConfigError, DataError, ThresherError
    from curate.importers import RolloutImportError
    from curate.mixture import MixtureInputError
    from curate.rollout_log import RolloutLogError
    from pipelines.query import LakeError

    for cls in (ConfigError, DataError, RolloutImportError, MixtureInputError, RolloutLogError,
                LakeError, EmbeddingModelMissing):
        assert issubclass(cls, ThresherError), cls
