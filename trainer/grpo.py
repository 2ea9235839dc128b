"""GRPO driven by the dynamic sampler, with Parquet rollout logs and exact resume.

One step: ask the sampler for prompts -> generate G responses per prompt ->
score them -> group-relative advantages -> update `SampleStats` with every
reward -> clipped-surrogate updates on the informative groups -> write the
step's rollout-log part -> checkpoint (every `save_every` steps).

Resume: a run restarts from its newest complete checkpoint, deletes rollout
parts of later steps and replays them. Every source of randomness is either
restored from the checkpoint (model, optimizer, scheduler, sampler, stats,
RNG states) or re-seeded from (seed, step), so the replayed steps write the
same rows and a killed-and-resumed run ends with the same log as an
uninterrupted one.

>>> from trainer import GRPOConfig
>>> GRPOConfig(steps=2, group_size=4).loss_agg
'token'
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from curate.errors import DataError
from curate.rollout_log import RolloutWriter
from trainer import checkpoint as ckpt
from trainer.config import GRPOConfig
from trainer.generation import (
    concat_generations,
    generate_groups,
    response_logprobs,
)
from trainer.losses import group_advantages, informative_groups, policy_loss
from trainer.modeling import auto_device
from trainer.rewards import CombinedReward, default_reward
from trainer.schedule import make_scheduler
from trainer.vision import ImageBatch, ImageError, VisionInputs, is_vision_model
from trainer.vision_generation import (
    VisionGeneration,
    generate_vision_groups,
    vision_response_logprobs,
)

KILL_ENV = "THRESHER_KILL_AT"  # test hook: "<point>:<step>", point in {after_update, after_log, after_checkpoint}


@dataclass
class StepMetrics:
    step: int
    reward: float
    accuracy: float
    format_ok: float
    informative_ratio: float
    loss: float
    clip_frac: float
    kl: float
    tokens_per_s: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class _Round:
    """One round of rollouts in a step: the prompts asked for and all they produced."""

    ids: list[str]
    prompts: list[str]
    gen: Any
    cols: dict[str, list]
    rewards: torch.Tensor
    total: list[float]
    stat_r: list[float]
    adv: torch.Tensor
    informative: torch.Tensor
    correct: list[float]
    fmt: list[float]
    p_est: list[float | None]
    score: list[float | None]
    group0: int
    weight: list[float]  # the sampler's importance weight per group (1 unless it thins)
    keep: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))


def _kept_rows(rounds: list[_Round], g: int, pad_id: int):
    """The kept groups' rows of every round as one Generation, and their advantages.

    Image prompts keep their images: each distinct image once (by sha256) for
    the rows of every round."""
    parts, advs = [], []
    for r in rounds:
        idx = torch.nonzero(r.keep.repeat_interleave(g)).flatten()
        if idx.numel():
            parts.append(r.gen.select(idx.tolist()))
            advs.append(r.adv[idx])
    if not parts:
        return rounds[0].gen, torch.zeros(0)
    out = concat_generations(parts, pad_id)
    if isinstance(parts[0], VisionGeneration):
        out = VisionGeneration(out.prompt_ids, out.prompt_mask, out.response_ids, out.response_mask,
                               out.texts, ImageBatch.concat([p.images for p in parts]))
    return out, torch.cat(advs)


def _maybe_kill(point: str, step: int) -> None:
    """Test hook: SIGKILL this process at `point` of `step` (no cleanup, like kill -9)."""
    spec = os.environ.get(KILL_ENV)
    if spec and spec == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919) % (2**63 - 1)


class GRPOTrainer:
    """Group Relative Policy Optimization over a Sample-schema table.

    Args:
        model, tokenizer: a causal LM and its tokenizer (left padding is forced), or
            a vision-language model (Qwen2-VL family, `trainer.vision`) whose
            prompts carry the rows' images; text-only rows keep working in it.
        samples: the RL set (Sample schema: id, prompt, answer, answer_type, domain;
            `images` for image prompts).
        config: `GRPOConfig`.
        run_dir: where rollouts/, stats/ and checkpoints/ go.
        reward: a `CombinedReward` (default: correctness + format from config weights).
        stats, sampler: a `sampling.SampleStats` and a sampler; built from the
            config (`sampler`, `sampler_args`) when omitted.
        resume: continue from the newest checkpoint in `run_dir` when there is one.

    Example (a few seconds on CPU)::

        trainer = GRPOTrainer(model, tok, rl_table, GRPOConfig(steps=20), "runs/demo")
        metrics = trainer.train()

    One step with a reward that is equal within every group (no signal, so no update):

    >>> import tempfile
    >>> import pyarrow.parquet as pq
    >>> from curate.synthetic import make_suite
    >>> from trainer import TinyModelSpec, build_tiny_model, char_tokenizer, combine
    >>> tok = char_tokenizer()
    >>> spec = TinyModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    >>> cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=4, device="cpu")
    >>> same = combine({"one": (lambda prompts, completions, **_: [1.0] * len(completions), 1.0)})
    >>> run = tempfile.mkdtemp()
    >>> trainer = GRPOTrainer(build_tiny_model(tok, spec), tok, make_suite(8, seed=0, max_level=1),
    ...                       cfg, run, reward=same)
    >>> [(m.step, m.reward, m.informative_ratio, m.loss) for m in trainer.train()]
    [(1, 1.0, 0.0, 0.0)]
    >>> log = pq.read_table(f"{run}/rollouts")
    >>> log.num_rows, log["advantage"].to_pylist(), log["sampler"][0].as_py()
    (4, [0.0, 0.0, 0.0, 0.0], 'thompson')
    """

    def __init__(
        self, model, tokenizer, samples: pa.Table, config: GRPOConfig,
        run_dir: str | os.PathLike, reward: CombinedReward | None = None,
        stats=None, sampler=None, run_id: str | None = None, resume: bool = True,
        progress: bool = False,
    ) -> None:
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.run_id = run_id or self.run_dir.name
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device, self.dtype = auto_device(config.device)
        self.model = model.to(self.device)
        # image prompts: decoded once per sha256, the vision tower run once per image
        self.vision = VisionInputs(model, tokenizer) if is_vision_model(model) else None
        self.image_errors: list[ImageError] = []
        self.reward = reward or default_reward(config.reward_correct, config.reward_format,
                                               config.reward_length, config.max_new_tokens)
        self.progress = progress
        self._index_samples(samples)
        from sampling import SampleStats, StoreParams, make_sampler

        if stats is None:
            params = StoreParams(**config.store_args) if config.store_args else None
            stats = SampleStats.from_samples(samples, params=params)
        self.stats = stats
        self._make_sampler = lambda st: make_sampler(config.sampler, st, **self._sampler_kwargs())
        self.sampler = sampler if sampler is not None else self._make_sampler(self.stats)
        self.sampler_name = config.sampler if sampler is None else type(sampler).__name__
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        updates_per_step = config.inner_updates * config.minibatches
        self.scheduler = make_scheduler(self.optimizer, config.lr_schedule,
                                        config.warmup_steps * updates_per_step,
                                        config.steps * updates_per_step)
        self.writer = RolloutWriter(self.run_dir, self.run_id)
        self.step = 0  # completed steps
        self.fill_rate = 0.5  # running informative share of fill rounds (sizes the next round)
        self.ref_model = None
        self.history: list[StepMetrics] = []
        if resume and ckpt.latest_checkpoint(self.run_dir) is not None:
            self._resume(ckpt.latest_checkpoint(self.run_dir))
        if config.beta > 0 and self.ref_model is None:
            self.ref_model = self._make_reference()

    def _sampler_kwargs(self) -> dict[str, Any]:
        return {"group_size": self.cfg.group_size, "seed": self.cfg.seed, **self.cfg.sampler_args}

    # ----------------------------------------------------------------- data
    def _index_samples(self, samples: pa.Table) -> None:
        need = ("id", "prompt", "answer")
        missing = [c for c in need if c not in samples.column_names]
        if missing:
            raise ValueError(f"RL samples lack column(s) {missing}; expected the Sample schema")
        ids = samples.column("id").to_pylist()
        self._row = {sid: i for i, sid in enumerate(ids)}
        if len(self._row) != len(ids):
            raise ValueError("RL samples have duplicate ids; deduplicate them first (curate.dedup_exact)")

        def col(name: str, default: str) -> list[str]:
            if name in samples.column_names:
                return [v if v is not None else default for v in samples.column(name).to_pylist()]
            return [default] * len(ids)

        self._prompt = col("prompt", "")
        self._answer = col("answer", "")
        self._answer_type = col("answer_type", "text")
        self._domain = col("domain", "")
        self._images = [v or [] for v in samples.column("images").to_pylist()] \
            if "images" in samples.column_names else [[] for _ in ids]
        if self.vision is None:
            with_images = [i for i, v in enumerate(self._images) if v]
            if with_images:
                raise DataError(
                    f"RL samples: row {with_images[0]} (id {ids[with_images[0]]!r}) has images but "
                    f"the model is a text-only LM ({len(with_images)} rows with images); train a "
                    "vision-language model (trainer.vision) or drop the image rows")

    # ----------------------------------------------------------- reference
    def _make_reference(self):
        ref_dir = self.run_dir / "checkpoints" / "reference"
        if not (ref_dir / "config.json").exists():
            self.model.save_pretrained(ref_dir)
        ref = copy.deepcopy(self.model)
        ref.eval().requires_grad_(False)
        return ref

    # --------------------------------------------------------------- train
    def train(self) -> list[StepMetrics]:
        """Run until `config.steps` steps are done (continuing a resumed run)."""
        bar = _Progress(self.cfg.steps, self.step, enabled=self.progress)
        with bar:
            while self.step < self.cfg.steps:
                m = self.train_step()
                bar.update(m)
        return self.history

    def train_step(self) -> StepMetrics:
        cfg = self.cfg
        t = self.step + 1
        t0 = time.perf_counter()
        seed = _step_seed(cfg.seed, t)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

        # 1-4. prompts -> G responses each -> rewards, advantages -> store update, per round
        if cfg.fill:
            rounds, short = self._fill_rounds(t)
        else:
            rounds, short = [self._rollout(cfg.prompts_per_step, t, group0=0)], False
            r = rounds[0]
            r.keep = r.informative.clone() if cfg.drop_uninformative else \
                torch.ones_like(r.informative)

        # 5. policy update on the kept groups
        _importance_scale(rounds, cfg.group_size)
        if len(rounds) == 1:
            r = rounds[0]
            loss, clip_frac, kl = self._update(r.gen, r.adv, r.keep.repeat_interleave(cfg.group_size))
        else:
            gen, adv = _kept_rows(rounds, cfg.group_size, self.tokenizer.pad_token_id)
            loss, clip_frac, kl = self._update(gen, adv, torch.ones(len(adv), dtype=torch.bool))
        _maybe_kill("after_update", t)

        # 6. the step's rollout-log parts (one per round), then (maybe) a checkpoint
        for seq, r in enumerate(rounds):
            self._log_round(r, t, seq)
        _maybe_kill("after_log", t)
        self.step = t
        if t % cfg.save_every == 0 or t == cfg.steps:
            self.save()
            _maybe_kill("after_checkpoint", t)

        secs = time.perf_counter() - t0
        n_resp = sum(len(r.stat_r) for r in rounds)
        informative = torch.cat([r.informative for r in rounds])
        rewards = torch.cat([r.rewards for r in rounds])
        correct = [c for r in rounds for c in r.correct]
        fmt = [f for r in rounds for f in r.fmt]
        tokens = sum(sum(r.gen.response_lengths) for r in rounds)
        m = StepMetrics(
            step=t, reward=float(rewards.mean()), accuracy=_nanmean(correct),
            format_ok=_nanmean(fmt), informative_ratio=float(informative.float().mean()),
            loss=loss, clip_frac=clip_frac, kl=kl,
            tokens_per_s=float(tokens) / max(secs, 1e-9), seconds=secs,
            extra={"rollouts": float(n_resp), "groups": float(len(informative)),
                   "kept_groups": float(sum(int(r.keep.sum()) for r in rounds)),
                   "rounds": float(len(rounds)), "fill_short": float(short)},
        )
        self.history.append(m)
        return m

    def _rollout(self, k: int, t: int, group0: int) -> _Round:
        """Ask the sampler for k prompts, sample G responses each, score them, update the store."""
        cfg = self.cfg
        ids = [str(i) for i in self.sampler.next_batch(k, step=t)]
        p_est, score, weight = _selection_info(self.sampler, ids)
        rows = [self._row[i] for i in ids]
        g = cfg.group_size
        if self.vision is not None:  # image prompts: a bad image leaves out its prompt only
            batch = self.vision.encode([self._prompt[r] for r in rows], [self._images[r] for r in rows],
                                       ids, self.device, on_error="skip")
            self._image_errors(batch.errors)
            ids = [ids[i] for i in batch.rows]
            p_est, score = [p_est[i] for i in batch.rows], [score[i] for i in batch.rows]
            weight = [weight[i] for i in batch.rows]
            rows = [rows[i] for i in batch.rows]
        prompts = [self._prompt[r] for r in rows for _ in range(g)]
        # each prompt prefilled once, its KV cache shared by its G responses
        with self._autocast():
            if self.vision is not None:
                gen = generate_vision_groups(self.model, self.vision, batch, g, cfg.max_new_tokens,
                                             cfg.temperature, cfg.top_p)
            else:
                gen = generate_groups(self.model, self.tokenizer, [self._prompt[r] for r in rows], g,
                                      cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        cols = {
            "answer": [self._answer[r] for r in rows for _ in range(g)],
            "answer_type": [self._answer_type[r] for r in rows for _ in range(g)],
            "domain": [self._domain[r] for r in rows for _ in range(g)],
            "sample_id": [i for i in ids for _ in range(g)],
            "response_tokens": gen.response_lengths,
            "images": [self._images[r] for r in rows for _ in range(g)],
        }
        rew = self.reward(prompts, gen.texts, **{c: v for c, v in cols.items() if c != "images"})
        rewards = torch.tensor(rew.total, dtype=torch.float32)
        # the store wants rewards in [0, 1]: correctness when known, else the clipped total
        stat_r = rew.components["correct"] if "correct" in rew.components else \
            [min(1.0, max(0.0, v)) for v in rew.total]
        # fresh statistics for the next selection (in fill mode: the next round's)
        self.stats.update(cols["sample_id"], stat_r, step=t, lengths=gen.response_lengths,
                          responses=gen.texts)
        return _Round(
            ids=ids, prompts=prompts, gen=gen, cols=cols, rewards=rewards,
            total=rew.total, stat_r=stat_r,
            adv=group_advantages(rewards, g, cfg.adv_scale),
            informative=informative_groups(rewards, g),
            correct=rew.components.get("correct", [float("nan")] * len(prompts)),
            fmt=rew.components.get("format", [float("nan")] * len(prompts)),
            p_est=p_est, score=score, group0=group0, weight=weight,
        )

    def _fill_rounds(self, t: int) -> tuple[list[_Round], bool]:
        """DAPO dynamic sampling: roll out rounds of groups until B informative ones are in hand.

        Each round asks the sampler for about as many prompts as the running
        informative share says will fill the rest (`fill_rate`, updated after
        every round), never more than `fill_round_max` x B; the sampler never
        hands out a prompt twice in one step. The update uses the first B
        informative groups, in the order generated; informative groups beyond
        B are logged with kept = false. After `fill_max_rounds` rounds, or once
        every prompt of the pool has been drawn in the step, the step goes on
        with what it has (fill_short = 1 in the step's metrics).
        """
        cfg = self.cfg
        b, rounds, have = cfg.prompts_per_step, [], 0
        while have < b and len(rounds) < cfg.fill_max_rounds:
            left = len(self.stats) - sum(len(r.ids) for r in rounds)
            if left <= 0:  # every prompt of the pool drawn this step: go on with what we have
                break
            want = int(np.ceil((b - have) / max(self.fill_rate, 0.05)))
            k = min(max(1, want), int(cfg.fill_round_max * b), left)
            r = self._rollout(k, t, group0=sum(len(x.ids) for x in rounds))
            n_inf = int(r.informative.sum())
            r.keep = r.informative.clone()
            if have + n_inf > b:  # keep the first B informative groups in all
                extra = torch.nonzero(r.keep).flatten()[b - have:]
                r.keep[extra] = False
            have += int(r.keep.sum())
            share = n_inf / len(r.ids)
            self.fill_rate = 0.7 * self.fill_rate + 0.3 * share
            rounds.append(r)
        return rounds, have < b

    def _log_round(self, r: _Round, t: int, seq: int) -> None:
        g = self.cfg.group_size
        n = len(r.prompts)
        keep = r.keep.repeat_interleave(g).tolist()
        self.writer.write({
            "step": [t] * n,
            "sample_id": r.cols["sample_id"],
            "group": [r.group0 + k // g for k in range(n)],
            "response_idx": [k % g for k in range(n)],
            "domain": r.cols["domain"],
            "prompt": r.prompts,
            "response": r.gen.texts,
            "reward": r.total,
            "correct": [bool(c >= 0.5) if c == c else None for c in r.correct],
            "format_ok": [bool(f >= 0.5) if f == f else None for f in r.fmt],
            "advantage": r.adv.tolist(),
            "prompt_tokens": r.gen.prompt_lengths,
            "response_tokens": r.gen.response_lengths,
            "sampler": [self.sampler_name] * n,
            "p_estimate": [r.p_est[k // g] for k in range(n)],
            "score": [r.score[k // g] for k in range(n)],
            "policy_version": [t - 1] * n,
            "kept": keep,
            "images": r.cols["images"],
        }, seq=seq)

    def _image_errors(self, errors: list[ImageError]) -> None:
        """Report prompts left out for a bad image (once per sample and path)."""
        import warnings

        seen = {(e.sample_id, e.path) for e in self.image_errors}
        for e in errors:
            if (e.sample_id, e.path) not in seen:
                warnings.warn(f"GRPO step {self.step + 1}: prompt left out: {e}", UserWarning,
                              stacklevel=3)
                self.image_errors.append(e)
                seen.add((e.sample_id, e.path))

    def _autocast(self):
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()

    def _update(self, gen, adv: torch.Tensor, keep: torch.Tensor) -> tuple[float, float, float]:
        cfg = self.cfg
        idx = torch.nonzero(keep).flatten()
        if idx.numel() == 0:  # nothing informative: no gradient, no optimizer step
            return 0.0, 0.0, 0.0
        dev = self.device
        r_len = int(gen.response_mask[idx].sum(dim=1).max())
        p_ids, p_mask = gen.prompt_ids[idx], gen.prompt_mask[idx]
        r_ids, r_mask = gen.response_ids[idx, :r_len], gen.response_mask[idx, :r_len]
        images = gen.images.select_rows(idx.tolist()) if isinstance(gen, VisionGeneration) else None
        a = adv[idx].to(dev)
        n = idx.numel()
        mb_size = -(-n // cfg.minibatches)
        on_policy = cfg.inner_updates == 1 and cfg.minibatches == 1
        old_logp = ref_logp = None
        with torch.no_grad(), self._autocast():
            if not on_policy:
                old_logp = self._logp_batched(self.model, p_ids, p_mask, r_ids, r_mask, images)
            if self.ref_model is not None:
                ref_logp = self._logp_batched(self.ref_model, p_ids, p_mask, r_ids, r_mask, images)
        self.model.train()
        losses, clips, kls = [], [], []
        for _ in range(cfg.inner_updates):
            for s in range(0, n, mb_size):
                sl = slice(s, s + mb_size)
                with self._autocast():
                    logp = self._logp_batched(
                        self.model, p_ids[sl], p_mask[sl], r_ids[sl], r_mask[sl],
                        images.select_rows(range(n)[sl]) if images is not None else None)
                old = logp.detach() if old_logp is None else old_logp[sl]
                loss, info = policy_loss(
                    logp, old, a[sl], r_mask[sl], cfg.clip_low, cfg.clip_high, cfg.loss_agg,
                    ref_logp[sl] if ref_logp is not None else None, cfg.beta, cfg.max_new_tokens)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                losses.append(float(loss.detach()))
                clips.append(info["clip_frac"])
                kls.append(info["kl"])
        return float(np.mean(losses)), float(np.mean(clips)), float(np.mean(kls))

    def _logp_batched(self, model, p_ids, p_mask, r_ids, r_mask,
                      images: ImageBatch | None = None) -> torch.Tensor:
        """Response log-probs under `model` (policy, old policy or reference: the same inputs)."""
        if images is not None:
            return vision_response_logprobs(model, p_ids, p_mask, r_ids, r_mask, images,
                                            self.cfg.temperature, self.vision.blocked_ids)
        return response_logprobs(model, p_ids, p_mask, r_ids, r_mask, self.cfg.temperature)

    # ---------------------------------------------------------- checkpoint
    def save(self) -> Path:
        """Checkpoint now (atomic) and snapshot the statistics store."""
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "config": self.cfg.to_dict(),
            "history": [m.__dict__ for m in self.history],
            "fill_rate": self.fill_rate,
        }

        def extra(folder: Path) -> None:
            # the sampler's state (RNG, position) rides in the snapshot's metadata
            self.stats.save(folder / "stats.parquet", sampler=_stateful(self.sampler))

        path = ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.tokenizer, state,
                                    extra, keep=self.cfg.keep_checkpoints)
        stats_dir = self.run_dir / "stats"
        stats_dir.mkdir(parents=True, exist_ok=True)
        self.stats.save(stats_dir / f"stats-{self.step:08d}.parquet")
        return path

    def _resume(self, path: Path) -> None:
        from sampling import SampleStats

        state = ckpt.load_trainer_state(path)
        # the model's own class: a causal LM or a vision-language model alike
        loaded = type(self.model).from_pretrained(path / "model", local_files_only=True)
        self.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.stats = SampleStats.load(path / "stats.parquet")
        if self.sampler_name == self.cfg.sampler:
            self.sampler = self._make_sampler(self.stats)
        elif hasattr(self.sampler, "stats"):  # a sampler object the caller passed in
            self.sampler.stats = self.stats
        sampler_state = SampleStats.load_sampler_state(path / "stats.parquet")
        if sampler_state is not None and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(sampler_state)
        self.step = int(state["step"])
        self.fill_rate = float(state.get("fill_rate", 0.5))
        self.history = [StepMetrics(**m) for m in state.get("history", [])]
        # parts of steps after the checkpoint are replayed: drop them so none is duplicated
        for part in self.writer.dir.glob("part-*.parquet"):
            if int(part.name.split("-")[1]) > self.step:
                part.unlink()
        ref_dir = self.run_dir / "checkpoints" / "reference"
        if self.cfg.beta > 0 and (ref_dir / "config.json").exists():
            ref = type(self.model).from_pretrained(ref_dir, local_files_only=True).to(self.device)
            self.ref_model = ref.eval().requires_grad_(False)


# --------------------------------------------------------- sampler adapters
def _selection_info(sampler, ids: list[str]) -> tuple[list[float | None], list[float | None],
                                                      list[float]]:
    """The sampler's posterior mean, selection score and importance weight for `ids`, as
    at selection (`last_selection`; None, None and 1 where the sampler gives none)."""
    n = len(ids)
    sel = getattr(sampler, "last_selection", None)
    if isinstance(sel, pa.Table):
        sel = sel.to_pydict()
    if not isinstance(sel, dict):
        return [None] * n, [None] * n, [1.0] * n
    p_est = [_f(v) for v in sel["p_estimate"]] if "p_estimate" in sel else [None] * n
    score = [_f(v) for v in sel["score"]] if "p_estimate" in sel and "score" in sel else [None] * n
    w = sel.get("weight")
    weight = [float(v) for v in w] if w is not None and len(w) == n else [1.0] * n
    return p_est, score, weight


def _importance_scale(rounds: list[_Round], g: int) -> None:
    """Scale kept groups' advantages by their importance weights, normalized to mean 1.

    With a thinning sampler (`UniformSampler(importance=True)`) a prompt rolled
    out with probability a counts 1/a times, so the expected update is uniform
    sampling's; the normalization keeps the step size of an unweighted update.
    Nothing changes when every weight is 1.
    """
    kept = [w for r in rounds for w, k in zip(r.weight, r.keep.tolist(), strict=True) if k]
    if not kept or all(w == 1.0 for w in kept):
        return
    mean = float(np.mean(kept))
    for r in rounds:
        scale = torch.tensor(r.weight, dtype=r.adv.dtype) / mean
        r.adv = r.adv * scale.repeat_interleave(g)


def _f(v: Any) -> float | None:
    return None if v is None or v != v else float(v)  # NaN (no score) -> null


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(arr[~np.isnan(arr)].mean()) if (~np.isnan(arr)).any() else float("nan")


def _stateful(sampler):
    return sampler if hasattr(sampler, "state_dict") else None


# ------------------------------------------------------------------ progress
class _Progress:
    """Rich progress: step, reward, accuracy, informative-group ratio, tokens/s."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total, self.done = total, done
        self._p = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._p = Progress(TextColumn("GRPO"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
            self._p.__enter__()
            self._task = self._p.add_task("grpo", total=self.total, completed=self.done, info="")
        return self

    def update(self, m: StepMetrics) -> None:
        if self._p is None:
            return
        info = (f"reward {m.reward:.3f}  acc {m.accuracy:.2f}  informative {m.informative_ratio:.2f}"
                f"  {m.tokens_per_s:,.0f} tok/s")
        self._p.update(self._task, completed=m.step, info=info)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
