"""Plugins that put Thresher's sampler, statistics store and rollout log inside
other trainers.  TRL and verl are imported only when a plugin is used, so
`import trainer.plugins` needs neither.

- `trainer.plugins.trl.ThresherGRPOTrainer`: `trl.GRPOTrainer` driven by any
  Thresher sampler (see docs/plugins.md, "Use with TRL").
- `trainer.plugins.verl.ThresherCurriculumSampler`: a verl curriculum sampler
  for `data.sampler.class_path` / `class_name` (see "Use with verl").
"""
