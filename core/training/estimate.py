"""How long a phase takes: the tokens it trains (its rows mixed by type as the worker mixes them, counted
with the base model's tokenizer) over the throughput earlier runs of the same base model and backend
measured, times the measured share of evaluations and checkpoint saves, capped by the time budget.

The one estimate behind a phase's plan, the pre-continue checklist, the advisor's proposal, the Train page
and the Runs page (a run in progress: the time it still takes)."""

import statistics
from dataclasses import dataclass

from core import data, store
from core.config import Config
from core.training import models


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Estimate:
    seconds: float | None  # at the median measured throughput; None: no measurement yet
    low: float | None  # at the fastest measured throughput (90th percentile)
    high: float | None  # at the slowest (10th percentile)
    tokens: int  # tokens the phase still trains on
    basis: str  # where the numbers come from

    def span(self) -> str:
        """The time with its range, as every page shows it: "≈ 12 min (9–15 min)"."""
        if self.seconds is None or self.low is None or self.high is None:  # all three or none
            return "no estimate yet"
        low, high = duration(self.low), duration(self.high)
        return f"≈ {duration(self.seconds)}" + (f" ({low}–{high})" if low != high else "")

    def describe(self) -> str:
        if self.seconds is None:
            return self.basis
        return f"{self.span()} for {self.tokens:,} tokens; {self.basis}"


def throughput(base: str, backend: str, run_id: str | None = None) -> tuple[list[float], dict[str, str]]:
    """tokens_per_s measurements and the runs they come from ({id: name}): the run's own when it has
    logged two or more (a phase in progress is its own best measure), else those of earlier runs of
    this base model on this backend (any backend for auto)."""
    if run_id:
        own = store.metrics.positive_samples("tokens_per_s", run_id=run_id)
        if len(own) >= 2:
            return [s.value for s in own], {run_id: own[0].run_name}
    found = store.metrics.positive_samples("tokens_per_s", base_model=base, backend=backend, except_run=run_id)
    return [s.value for s in found], dict(sorted({(s.run_id, s.run_name) for s in found}, key=lambda p: p[1]))


def overhead(run_ids) -> float | None:
    """Wall-clock time over training time (evaluations and checkpoint saves on top), the median over
    runs that logged both `elapsed_s` and `time/train_s`; None when none did."""
    run_ids = list(run_ids)
    if not run_ids:
        return None
    found = store.metrics.maxima_of_runs(run_ids, ["elapsed_s", "time/train_s"]).values()
    ratios = [
        m["elapsed_s"] / m["time/train_s"]
        for m in found
        if m["elapsed_s"] and m["time/train_s"] and m["elapsed_s"] >= m["time/train_s"]
    ]
    return statistics.median(ratios) if ratios else None


def count_tokens(config: Config, rows: list[data.Row]) -> tuple[list[int], str]:
    """Tokens per training row as the trainer sees them (`data.token_lengths`: the chat template, counted
    once per rows and tokenizer), cut at max_seq_length, with the base model's tokenizer when its folder
    is on disk, else characters / 3.5; and how they were counted."""
    folder = models.base_dir(config.model.base)
    lengths, how = data.token_lengths(rows, folder)
    return [min(total, config.training.max_seq_length) for _, total in lengths], how


def estimate(
    config: Config, run: store.Run | None = None, done: float = 0.0, rows: list[data.Row] | None = None
) -> Estimate:
    """How long the phase takes — or, for its `run` in progress `done` (0..1) of the way, how long it
    still takes: the tokens left over the measured throughput (see `throughput`), times the measured
    share of evaluations and checkpoint saves (`overhead`), capped by training.time_budget_minutes.
    The tokens are those of the rows the phase trains, mixed by type as the worker mixes them
    (`data.training_rows`; `rows` when the plan has them already). The one estimate behind the
    phase's plan, the pre-continue checklist, the Train page and the Runs page."""
    if rows is None:
        rows = data.training_rows(
            config.data.train_source, config.data.train_mix, config.training.seed, config.data.columns
        )
    counts, how = count_tokens(config, rows)
    t = config.training
    if t.max_steps > 0:
        # a packed micro-batch holds up to tokens_per_batch tokens (its last row may not fit: ~half a row less)
        per_batch = (
            t.tokens_per_batch - statistics.fmean(counts) / 2
            if t.tokens_per_batch
            else t.rows_per_micro_batch * statistics.fmean(counts)
        )
        total = t.max_steps * t.gradient_accumulation_steps * per_batch
    else:
        total = sum(counts) * t.num_train_epochs
    tokens = round(total * (1 - min(max(done, 0.0), 1.0)))
    base, backend = config.model.base, t.backend
    samples, measured_runs = throughput(base, backend, run.id if run else None)
    on = f"{base} on {'any backend' if backend == 'auto' else backend}"
    if not samples:
        return Estimate(
            None,
            None,
            None,
            tokens,
            f"no measurement yet: no earlier run of {on} logged its throughput ({tokens:,} tokens, {how})",
        )
    names = ", ".join(measured_runs.values())
    middle = statistics.median(samples)
    if len(samples) == 1:
        slow = fast = middle
        measured = f"1 throughput measurement of {on} from {names}: {middle:.0f} tokens/s"
    else:
        slow, fast = statistics.quantiles(samples, n=10, method="inclusive")[::8]
        measured = (
            f"{len(samples)} throughput measurements of {on} from {names}: median "
            f"{middle:.0f} tokens/s, 10th–90th percentile {slow:.0f}–{fast:.0f}"
        )
    factor = overhead(measured_runs)
    extra = (
        f"evaluations and checkpoint saves add {factor - 1:.0%} as measured"
        if factor
        else "training time only (evaluations and checkpoint saves come on top)"
    )
    factor = factor or 1.0
    seconds = [tokens / rate * factor for rate in (middle, fast, slow)]
    if t.time_budget_minutes:
        spent = _elapsed(run.id) if run else 0.0
        left = max(t.time_budget_minutes * 60 - spent, 0.0)
        seconds = [min(s, left) for s in seconds]
        extra += f"; at most the time budget of {t.time_budget_minutes:g} min"
    return Estimate(seconds[0], seconds[1], seconds[2], tokens, f"{measured}; tokens {how}; {extra}")


def _elapsed(run_id: str) -> float:
    """Wall-clock seconds the run has logged so far."""
    return store.metrics.maxima(run_id, ["elapsed_s"]).get("elapsed_s") or 0.0
