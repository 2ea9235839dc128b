"""sampling: the live sample-statistics store and the dynamic samplers.

    stats = SampleStats.from_samples(table)          # priors from `difficulty`
    sampler = ThompsonSampler(stats, group_size=8, seed=0)   # or make_sampler("thompson", stats)
    ids = sampler.next_batch(256, step=t)            # list of sample ids
    sampler.last_selection["p_estimate"], sampler.last_selection["score"]
    stats.update(ids_per_response, rewards, step=t, lengths=None, responses=None)
    stats.save(run_dir)                              # RUN/stats/stats-<step:08d>.parquet
    state = sampler.state_dict()                     # checkpoint the sampler beside it
    stats = SampleStats.load(path); sampler.stats = stats; sampler.load_state_dict(state)
    stats.restore(path)                              # or in place, for a store others hold

Imports numpy, scipy and pyarrow only (torch only inside `TorchBatchSampler`).

>>> import pyarrow as pa
>>> stats = SampleStats.from_samples(pa.table({"id": ["a", "b", "c"], "difficulty": [0.1, 0.5, None]}))
>>> sampler = make_sampler("thompson", stats, group_size=8, seed=0)
>>> ids = sampler.next_batch(2, step=1)
>>> stats.update([i for i in ids for _ in range(8)], [1.0, 0.0] * 8, step=1)
>>> stats.to_arrow().column("n_seen").to_pylist().count(8)
2
"""

from sampling.quota import largest_remainder
from sampling.samplers import (
    SAMPLERS,
    CurriculumSampler,
    FilterSampler,
    Sampler,
    ThompsonSampler,
    UniformSampler,
    VarianceAwareSampler,
    make_sampler,
)
from sampling.store import STATS_COLUMNS, SampleStats, StoreParams
from sampling.torch_adapter import TorchBatchSampler

__all__ = [
    "SAMPLERS",
    "STATS_COLUMNS",
    "CurriculumSampler",
    "FilterSampler",
    "SampleStats",
    "Sampler",
    "StoreParams",
    "ThompsonSampler",
    "TorchBatchSampler",
    "UniformSampler",
    "VarianceAwareSampler",
    "largest_remainder",
    "make_sampler",
]
