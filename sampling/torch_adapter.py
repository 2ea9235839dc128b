"""Adapter to `torch.utils.data` (torch is imported only when it is built).

`TorchBatchSampler(sampler, batch_size, num_steps)` is a batch sampler for a
`DataLoader(dataset, batch_sampler=...)`: step t yields the dataset positions of
`sampler.next_batch(batch_size, step=t)`.  Positions are the store's rows, so
build the store from the same table, in the same order, as the dataset.  It
does not update the statistics: call `stats.update(...)` with each step's
rewards as usual.
"""

from __future__ import annotations

from typing import Any


def TorchBatchSampler(sampler: Any, batch_size: int, num_steps: int, start_step: int = 1) -> Any:  # noqa: N802 (reads as a class)
    """A `torch.utils.data.Sampler` yielding one list of row positions per step.

    >>> import pyarrow as pa
    >>> from sampling import SampleStats, UniformSampler
    >>> s = SampleStats.from_samples(pa.table({"id": list("abcd")}))
    >>> bs = TorchBatchSampler(UniformSampler(s, seed=0), batch_size=2, num_steps=2)
    >>> len(bs), sorted(sum(list(bs), []))
    (2, [0, 1, 2, 3])
    """
    import torch.utils.data

    class _Batches(torch.utils.data.Sampler):
        def __init__(self) -> None:
            self.sampler = sampler
            self.batch_size = int(batch_size)
            self.num_steps = int(num_steps)
            self.start_step = int(start_step)

        def __len__(self) -> int:
            return self.num_steps

        def __iter__(self):
            for t in range(self.start_step, self.start_step + self.num_steps):
                yield self.sampler.next_rows(self.batch_size, step=t).tolist()

    return _Batches()
