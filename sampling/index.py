"""Dense id index: sample id (str) -> row number.

The store keeps every per-sample statistic in numpy arrays; this maps the
string ids the trainer speaks to rows.  Two implementations, measured side by
side in bench/store.py for the 4,096 lookups one GRPO step needs:

- `DictIdIndex` (default): a Python dict; lookups are C-level hash probes.
- `SortedIdIndex`: a sorted fixed-width byte array + `np.searchsorted`; less
  memory per id, slower per lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import TYPE_CHECKING

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")



class DictIdIndex:
    """id -> row through a dict; unknown ids map to -1.

    >>> ix = DictIdIndex(["a", "b", "c"])
    >>> ix.lookup(["c", "a", "zz"]).tolist()
    [2, 0, -1]
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self._map: dict[str, int] = dict(zip(ids, range(len(ids)), strict=True))
        if len(self._map) != len(ids):
            raise ValueError("ids are not unique")

    def __len__(self) -> int:
        return len(self._map)

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        get = self._map.get
        return np.fromiter(map(get, ids, repeat(-1)), dtype=np.int64, count=len(ids))


class SortedIdIndex:
    """id -> row through a sorted byte array and binary search; unknown -> -1.

    >>> ix = SortedIdIndex(["b", "a", "c"])
    >>> ix.lookup(["a", "c", "zz"]).tolist()
    [1, 2, -1]
    """

    def __init__(self, ids: Sequence[str]) -> None:
        keys = np.array([s.encode("utf-8") for s in ids], dtype=bytes)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = order.astype(np.int64)
        if len(keys) > 1 and (self._keys[1:] == self._keys[:-1]).any():
            raise ValueError("ids are not unique")

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        q = np.array([s.encode("utf-8") for s in ids], dtype=self._keys.dtype)
        pos = np.searchsorted(self._keys, q)
        pos_c = np.minimum(pos, len(self._keys) - 1)
        hit = (pos < len(self._keys)) & (self._keys[pos_c] == q)
        # a query longer than the fixed width is truncated by the cast: never a hit
        width = self._keys.dtype.itemsize
        too_long = np.fromiter((len(s.encode("utf-8")) > width for s in ids), bool, len(ids))
        return np.where(hit & ~too_long, self._rows[pos_c], -1)
