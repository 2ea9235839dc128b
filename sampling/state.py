"""JSON encoding of sampler state dicts (numpy arrays as base64 .npy bytes).

Sampler state is a plain dict of ints, floats, strings, lists, dicts and numpy
arrays, so it pickles (torch.save) as is; this turns it into JSON for the
Parquet metadata of a stats snapshot, losslessly.

>>> import numpy as np
>>> s = {"rng": {"state": 2**100}, "perm": np.arange(3), "pos": 1}
>>> out = decode_state(encode_state(s))
>>> out["perm"].tolist(), out["rng"]["state"] == 2**100, out["pos"]
([0, 1, 2], True, 1)
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

from curate.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
else:  # loaded on first use, so reading a config stays fast (see curate.lazy)
    np = lazy_import("numpy")



def encode_state(obj: Any) -> Any:
    """Make `obj` JSON-serialisable; numpy arrays become {"__ndarray__": base64}."""
    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return {"__ndarray__": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(obj, dict):
        return {str(k): encode_state(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [encode_state(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def decode_state(obj: Any) -> Any:
    """Inverse of `encode_state`."""
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return np.load(io.BytesIO(base64.b64decode(obj["__ndarray__"])), allow_pickle=False)
        return {k: decode_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    return obj
