"""Helpers shared by the plugins."""

from __future__ import annotations

from typing import Any

import numpy as np


def dataset_positions(store_ids: Any, dataset_ids: Any) -> np.ndarray:
    """For each store row, the dataset index holding the same sample id.

    >>> dataset_positions(["b", "a"], ["a", "b", "c"]).tolist()
    [1, 0]
    """
    store = np.asarray(list(store_ids), dtype=object).astype(str)
    ds = np.asarray(list(dataset_ids), dtype=object).astype(str)
    if len(ds) == 0:
        raise ValueError("the dataset is empty")
    order = np.argsort(ds, kind="stable")
    pos = np.clip(np.searchsorted(ds[order], store), 0, len(ds) - 1)
    found = ds[order][pos] == store
    if not found.all():
        missing = store[~found][:3].tolist()
        raise ValueError(f"sampler: store sample ids {missing} are not in the dataset; "
                         "build the store from the training set")
    return order[pos]
