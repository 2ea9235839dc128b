"""One module per CLI verb; see pipelines/cli.py. Helpers the verbs share."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Print the warnings raised inside the block as ``warning: ...`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)


def open_runs(run_or_glob: str) -> Any:
    """`pipelines.query.connect`, its skipped-part warnings printed on stderr."""
    from pipelines.query import connect

    with warnings_to_stderr():
        return connect(run_or_glob)
