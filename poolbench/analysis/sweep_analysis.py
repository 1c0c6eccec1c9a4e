"""Analysis of a sweep folder: its runs, the statistics over seeds, the verdict and the published rows.

The score of a run is one of SCORES: its best test accuracy over the epochs (the protocol's,
the default), its last epoch's, or its test accuracy at the epoch best on held-out training
images (``--val-split``). Per setting and pooling ``build_report`` gives the completed seeds'
mean, sample std and 95% CI (Student's t), and the difference to a baseline paired by seed
(poolbench.analysis.paired: interval, d_z, paired t-test); the verdict compares each pooling with the
best baseline on every setting (the benchmark's rule), published leaderboard runs included when
the protocol matches theirs. Every comparison the report makes is one member of a ``Family``,
Holm-adjusted over all of them, and the verdicts read the adjusted p-values. Diverged, failed
and unfinished runs are never averaged in: they are counted next to the mean. Rendering the
result is poolbench.render.report's job.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import stats

from ..core.outcomes import RunStatus
from ..core.settings import SETTINGS, Protocol, is_1x1
from ..core.unique import unique
from ..storage import rundir
from ..storage.sweep_runs import ReportError, collect_runs, problems_by_pool
from ..training import catalog
from .fingerprint import Fingerprint, fingerprint
from .levels import ALPHA, MARGIN
from .paired import Difference, holm_adjust, non_inferiority, nothing, paired, welch
from .power import SeedPlan, plan_seeds
from .tradeoff import TaskCheck, TradeOffCheck

BASELINES = ("gap", "gmp", "gem", "avgmax")
#: score name -> what it is, as the report's tables name it
SCORES = {"best": "best test accuracy over all epochs",
          "final": "test accuracy of the last epoch",
          "val": "test accuracy at the epoch best on the held-out validation images"}
REFERENCE_FILE = "mls_bench_pooling_baselines.json"
REFERENCE_LABEL = "published (MLS-Bench leaderboard)"
REFERENCE_POOLS = {"avg_max": "avgmax", "gem": "gem", "global_max": "gmp"}  # leaderboard -> ours
PROPOSALS_FILE = "mls_bench_agent_proposals.json"
PROPOSAL_LABEL = "published proposal (MLS-Bench)"
PROPOSAL_POOLS = {"avg + gated std + (max - avg) residual": "std_residual",  # proposal name -> ours
                  "per-channel avg/max gate (LCGP)": "channel_gate", "global max": "gmp",
                  "variance-calibrated softmax pooling": "var_softmax", "signed GeM + spatial-std mix": "signed_gem"}
UNFINISHED = (RunStatus.RUNNING, RunStatus.INTERRUPTED, RunStatus.PENDING)
# --- Statistics -------------------------------------------------------------------------------

class Stats(NamedTuple):
    n: int
    mean: float
    std: float  # sample std (ddof=1); nan for n < 2
    ci_low: float  # 95% CI of the mean: Student's t, truncated to [0, 100]; nan for n < 2
    ci_high: float


ACCURACY_RANGE = (0.0, 100.0)
CI_METHOD = "Student's t interval truncated to the range of an accuracy, [0, 100]"


def describe(values: list[float]) -> Stats:
    """Mean, sample std and 95% confidence interval of the mean of accuracies ``values``.

    The interval is Student's t, ``mean ± t_{0.975, n-1} s / sqrt(n)``, intersected with [0, 100]:
    a mean accuracy cannot lie outside, so the intersection keeps the interval's 95% coverage, and
    a 3-seed interval near the ceiling no longer reads [80.09, 107.91] but [80.09, 100.00].
    """
    n = len(values)
    if n == 0:
        return Stats(n=0, mean=math.nan, std=math.nan, ci_low=math.nan, ci_high=math.nan)
    mean = float(np.mean(values))
    if n < 2:
        return Stats(n=1, mean=mean, std=math.nan, ci_low=math.nan, ci_high=math.nan)
    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    low, high = ACCURACY_RANGE
    return Stats(n=n, mean=mean, std=std, ci_low=max(low, mean - half), ci_high=min(high, mean + half))


def format_p(p: float) -> str:
    return "n/a" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float, name: str = "p") -> str:
    """``p=0.045`` or ``p<0.001``."""
    shown = format_p(p)
    return f"{name}{shown if shown.startswith('<') else '=' + shown}"


def difference_text(d: Difference, versus: str) -> str:
    """``+1.23 [+0.20, +2.26] vs gem, p Holm=0.045 *``: a difference, its 95% CI and adjusted p."""
    if math.isnan(d.diff):
        return f"no shared seed with {versus}"
    ci = f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if math.isfinite(d.ci_low) else ""
    p = p_text(d.p_holm, "p Holm") if not math.isnan(d.p_holm) else p_text(d.p_value)
    return f"{d.diff:+.2f}{ci} vs {versus}, {p}" + (" *" if d.significant() else "")


class Family:
    """Every comparison a report makes, each once: keyed by setting and the unordered pair of row
    labels, so the same two poolings compared for the table, the verdict and the no-trade-off
    check are one test, adjusted once."""

    def __init__(self) -> None:
        self._members: dict[tuple[str, frozenset[str]], tuple[str, str, Difference, Difference]] = {}

    def compare(self, setting: str, a: Row, b: Row) -> Difference:
        """``a - b`` on ``setting``: paired by seed, or Welch's when either is a published row."""
        key = (setting, frozenset((a.label, b.label)))
        if key not in self._members:
            if a.published or b.published:
                forward = welch(list(a.values.values()), list(b.values.values()))
            else:
                forward = paired(a.values, b.values)
            self._members[key] = (a.label, b.label, forward, forward.mirrored())
        first, _, forward, backward = self._members[key]
        return forward if a.label == first else backward

    def adjust(self) -> None:
        """Holm over every member with a p-value; both sides of each pair get the adjusted p."""
        holm_adjust([forward for _, _, forward, _ in self._members.values()])
        for _, _, forward, backward in self._members.values():
            backward.p_holm, backward.family = forward.p_holm, forward.family

    def members(self) -> list[tuple[str, str, str, Difference]]:
        """(setting, pooling, versus, difference) in the order the report made them."""
        return [(setting, first, second, forward)
                for (setting, _), (first, second, forward, _) in self._members.items()]

    @property
    def size(self) -> int:
        return sum(not math.isnan(forward.p_value) for _, _, forward, _ in self._members.values())


# --- The report's data ------------------------------------------------------------------------

@dataclass
class Row:
    """One pooling on one setting: the score of each completed seed, and the rest."""

    setting: str
    pool: str
    values: dict[int, float] = field(default_factory=dict)
    diverged: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)  # not started: the pooling failed the sweep's contract check
    unfinished: list[int] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # a damaged result.json: outcome unknown
    published: bool = False
    proposal: bool = False  # a published proposal's run: shown for reference, never a baseline
    versus: Difference = field(default_factory=nothing)  # vs the report's baseline, paired by seed

    @property
    def stats(self) -> Stats:
        return describe(list(self.values.values()))

    @property
    def label(self) -> str:
        if not self.published:
            return self.pool
        return f"{self.pool}: {PROPOSAL_LABEL if self.proposal else REFERENCE_LABEL}"

    @property
    def runs(self) -> int:
        return (len(self.values) + len(self.diverged) + len(self.failed) + len(self.refused) + len(self.unfinished)
                + len(self.unreadable))

    def not_in_mean(self) -> str:
        kinds = {"diverged": self.diverged, "failed": self.failed, "refused": self.refused,
                 "unfinished": self.unfinished, "unreadable": self.unreadable}
        return "; ".join(f"{len(seeds)} {kind} (seed {', '.join(map(str, sorted(seeds)))})"
                         for kind, seeds in kinds.items() if seeds)


@dataclass
class Comparison:
    """A pooling against the best baseline on one setting (the benchmark's rule)."""

    setting: str
    best: Row | None = None  # the baseline with the highest mean; None: nothing to compare with
    versus: Difference = field(default_factory=nothing)  # the pooling - best (paired, or Welch's)
    lead: float = math.nan  # the pooling's mean - best's mean: the benchmark's rule reads the means
    problem: str = ""  # why the pooling cannot beat the baseline here

    @property
    def beats(self) -> bool:
        return not self.problem and self.lead > 0

    @property
    def significant(self) -> bool:
        """Ahead, with a Holm-adjusted p below alpha."""
        return self.beats and self.versus.diff > 0 and self.versus.significant()

    def text(self) -> str:
        if self.problem or self.best is None:
            return self.problem
        return difference_text(self.versus, f"published {self.best.pool}" if self.best.published else self.best.pool)


@dataclass
class Verdict:
    pool: str
    comparisons: list[Comparison]

    @property
    def wins(self) -> bool:
        return bool(self.comparisons) and all(c.beats for c in self.comparisons)

    def text(self) -> str:
        if self.wins:
            significant = sum(c.significant for c in self.comparisons)
            return f"WINS, significant (Holm) on {significant}/{len(self.comparisons)}"
        return f"no: not ahead on {sum(not c.beats for c in self.comparisons)}/{len(self.comparisons)}"


@dataclass
class RunSet:
    """The runs of several inputs made one (poolbench.render.merge): a report reads them as it reads one folder."""

    summaries: list[rundir.RunSummary]
    inputs: list[str]  # the sweep folders and exported tables, as given
    notes: list[str] = field(default_factory=list)  # what the merge did: the report shows them first

    def __str__(self) -> str:
        return " + ".join(self.inputs)


@dataclass
class SweepAnalysis:
    """What `poolbench report` shows of a sweep, computed once: the measured and published rows per
    setting, the verdicts, the fingerprint and the pairwise comparisons (rendered by
    poolbench.render.report). Not the contract check's ContractReport."""

    root: Path | str  # the sweep folder; a merged report's inputs joined by " + "
    settings: list[str]
    rows: dict[str, list[Row]]  # per setting, measured, best mean first
    references: dict[str, list[Row]]  # per setting, published rows
    baseline: str | None
    verdicts: list[Verdict]
    protocols: dict[str, str]  # per setting, the protocol its runs used
    reference_in_verdict: dict[str, bool]
    curves: dict[str, dict[str, dict[str, list[list[float]]]]]  # metric -> setting -> pool -> per seed, per epoch
    notes: list[str] = field(default_factory=list)
    pool_inputs: dict[str, tuple[int, ...] | None] = field(default_factory=dict)  # setting -> (C, H, W)
    seed_plans: list[SeedPlan] = field(default_factory=list)
    fingerprint: Fingerprint | None = None
    tradeoffs: list[TradeOffCheck] = field(default_factory=list)  # the no-trade-off check, per new pooling
    sources: dict[str, str] = field(default_factory=dict)  # ad-hoc setting -> "MODEL on DATASET" of its runs
    score: str = "best"  # a SCORES key: which score of each run the tables hold
    margin: float = MARGIN  # the no-trade-off check's non-inferiority margin (points)
    family: Family = field(default_factory=Family)  # every comparison made, Holm-adjusted
    seeds: list[int] | None = None  # the seeds the report was restricted to (--seeds); None: all

    def pool_is_1x1(self, setting: str) -> bool:
        """Whether ``setting``'s pooling sees a 1x1 map, where parameter-free poolings are all the identity."""
        return is_1x1(self.pool_inputs.get(setting))


def published_reference() -> dict[str, dict[str, dict[int, float]]]:
    """setting -> pool -> seed -> best test accuracy of the leaderboard's current runs."""
    text = importlib.resources.files("poolbench").joinpath(f"reference/{REFERENCE_FILE}").read_text()
    table: dict[str, dict[str, dict[int, float]]] = {}
    for run in json.loads(text)["runs"]:
        pool = REFERENCE_POOLS.get(run["method"], run["method"])
        for setting, acc in run["best_test_acc"].items():
            table.setdefault(setting, {}).setdefault(pool, {})[int(run["seed"])] = float(acc)
    return table


def published_proposals() -> dict[str, list[Row]]:
    """setting -> a published row per proposal with seed-42 scores; a score at chance level (the
    original harness's score of a diverged run) is listed as diverged, not put in the mean."""
    text = importlib.resources.files("poolbench").joinpath(f"reference/{PROPOSALS_FILE}").read_text()
    data = json.loads(text)
    settings = [s.strip() for s in data["metric"].split("order", 1)[1].split("/")]
    table: dict[str, list[Row]] = {}
    for proposal in data["proposals"]:
        for setting, acc in zip(settings, proposal.get("published_seed42") or [], strict=False):
            row = Row(setting, PROPOSAL_POOLS.get(proposal["name"], proposal["name"]), published=True, proposal=True)
            chance = 100.0 / catalog.num_classes(SETTINGS[setting]) if setting in SETTINGS else None
            if chance is not None and float(acc) <= chance:
                row.diverged.append(42)
            else:
                row.values[42] = float(acc)
            table.setdefault(setting, []).append(row)
    return table


CURVE_METRICS = ("test_acc", "val_acc", "train_loss", "lr")  # per-epoch metrics the report plots


def run_score(summary: rundir.RunSummary, score: str) -> float | None:
    """A completed run's ``score`` (a SCORES key); None when the run does not have it."""
    if score == "best":
        return summary.best_test_acc
    value = (summary.result or {}).get("final_test_acc" if score == "final" else "val_test_acc")
    return float(value) if isinstance(value, (int, float)) else None


def build_report(root: str | Path | RunSet, baseline: str | None = None, detect: float | None = None, *,
                 margin: float = MARGIN, score: str = "best", seeds: list[int] | None = None,
                 variant: str | None = None) -> SweepAnalysis:
    """Read every run under ``root`` (a sweep folder, or the RunSet of several inputs that
    poolbench.render.merge gathers) and compute the report; ReportError on a user error.

    ``detect``: a difference (accuracy points) whose seeds-needed the seed plans also give.
    ``margin``: the no-trade-off check's non-inferiority margin in accuracy points.
    ``score``: which score of each run (a SCORES key). ``seeds``: only these seeds' runs.
    ``variant``: in a sweep of protocol variants, the one reported (its poolings compared with each
    other, never across variants: poolbench.analysis.variants puts the variants side by side).
    """
    if detect is not None and not 0 < detect <= 100:  # nan fails too
        raise ReportError(f"--detect takes a difference in accuracy points, above 0 and at most 100, got {detect:g}")
    if not 0 <= margin <= 100:
        raise ReportError(f"--margin takes a margin in accuracy points, from 0 to 100, got {margin:g}")
    if score not in SCORES:
        raise ReportError(f"--score {score!r} is not a score: choose one of {', '.join(SCORES)}")
    summaries = root.summaries if isinstance(root, RunSet) else collect_runs(root)
    variants = unique([s.variant for s in summaries])
    if variant is None and variants != [""]:
        raise ReportError(f"{root} holds protocol variants ({', '.join(variants)}): report one with variant=..., "
                          "or all side by side (poolbench.analysis.variants.build_variants_report)")
    if variant:
        if variant not in variants:
            raise ReportError(f"{root} has no protocol variant {variant!r}: choose one of {', '.join(variants)}")
        summaries = [s for s in summaries if s.variant == variant]
        if not isinstance(root, RunSet):
            root = Path(root) / variant
    if seeds is not None:
        summaries = [s for s in summaries if s.seed in seeds]
        if not summaries:
            raise ReportError(f"no run in {root} has one of the seeds {', '.join(map(str, seeds))}: "
                              "leave out --seeds or give seeds the sweep ran")
    completed = [s for s in summaries if s.status == RunStatus.COMPLETED]
    unscored = [s for s in completed if run_score(s, score) is None]
    if score == "val" and unscored:
        raise ReportError(f"--score val needs runs trained with --val-split N: {len(unscored)} of the "
                          f"{len(completed)} completed runs in {root} held no images out (e.g. {unscored[0].path}); "
                          "run the sweep with --val-split N into a new --out, or use --score best|final")
    settings = unique([s.setting for s in summaries])
    pools = unique([s.pool for s in summaries])
    rows = {(s, p): Row(s, p) for s in settings for p in pools}
    curves: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    unreadable: list[str] = []
    for summary in summaries:
        row = rows[summary.setting, summary.pool]
        value = run_score(summary, score) if summary.status == RunStatus.COMPLETED else None
        if value is not None:
            row.values[summary.seed] = float(value)
            for metric in CURVE_METRICS:
                per_epoch = [float(m[metric]) for m in summary.metrics if isinstance(m.get(metric), (int, float))]
                if per_epoch:
                    curves.setdefault(metric, {}).setdefault(summary.setting, {}).setdefault(
                        summary.pool, []).append(per_epoch)
        elif summary.status == RunStatus.DIVERGED:
            row.diverged.append(summary.seed)
        elif summary.status == RunStatus.FAILED:
            row.failed.append(summary.seed)
        elif summary.status == RunStatus.REFUSED:
            row.refused.append(summary.seed)
        elif summary.status == RunStatus.UNREADABLE:  # never counted as failed, never silently dropped
            row.unreadable.append(summary.seed)
            unreadable.append(summary.problem or str(summary.path))
        else:
            row.unfinished.append(summary.seed)

    family = Family()
    if baseline is None:
        baseline = "gap" if "gap" in pools else None
    elif baseline not in pools:
        raise ReportError(f"baseline {baseline!r} has no runs in {root}: choose one of {', '.join(pools)}")
    if baseline is not None:
        for (setting, pool), row in rows.items():
            if pool != baseline and row.values:
                row.versus = family.compare(setting, row, rows[setting, baseline])
    by_setting = {s: sorted((rows[s, p] for p in pools if rows[s, p].runs),
                            key=lambda r: -r.stats.mean if r.values else math.inf) for s in settings}

    published = published_reference()
    references = {s: [Row(s, pool, values=dict(values), published=True) for pool, values in published[s].items()]
                  for s in settings if s in published}
    for setting, rows_there in published_proposals().items():
        if setting in settings:
            references.setdefault(setting, []).extend(rows_there)
    protocols, notes, reference_in_verdict = {}, list(root.notes) if isinstance(root, RunSet) else [], {}
    if unreadable:
        notes.append(f"{len(unreadable)} runs are unreadable and left out of the means: " + "; ".join(unreadable))
    unfinished = sum(s.status in UNFINISHED for s in summaries)
    if unfinished:
        notes.append(f"{unfinished} runs are not finished: these numbers and the verdict are provisional")
    if seeds is not None:
        notes.append(f"only the runs of seeds {', '.join(map(str, seeds))} are in this report (--seeds)")
    notes += [f"{pool}: {problem}" for pool, problem in problems_by_pool(summaries).items()]
    for setting in settings:
        used = {Protocol(**s.config["protocol"]) for s in summaries if s.setting == setting and s.config}
        protocols[setting] = "; ".join(sorted(map(_describe_protocol, used))) or "no run started"
        if len(used) > 1:
            notes.append(f"{setting}: runs with different protocols are in one table ({protocols[setting]})")
        for pool in pools:  # an input edited between seeds: the row's mean mixes two experiments
            contents = {tuple(s.config.get(name) for name in rundir.CONTENT_FIELDS) for s in summaries
                        if s.setting == setting and s.pool == pool and s.config}
            if len(contents) > 1:
                notes.append(f"{setting} / {pool}: its runs were made from {len(contents)} different contents of "
                             f"the model file, pooling file or data set (edited between runs, or not the same on "
                             f"two machines): the mean mixes them; run them "
                             f"again into a new folder")
        # Published numbers are comparable only with runs of the full published protocol, scored as published.
        reference_in_verdict[setting] = (setting in references and used == {SETTINGS[setting].protocol}
                                         and score == "best")
        if setting in references and not reference_in_verdict[setting]:
            full = _describe_protocol(SETTINGS[setting].protocol)
            why = ("the published rows are best test accuracies, not this report's score"
                   if used == {SETTINGS[setting].protocol} else
                   f"the published rows come from the full protocol ({full}); this sweep's runs differ")
            notes.append(f"{setting}: {why}, so they are shown for reference only and left out of the verdict")
    sources = {setting: "; ".join(sorted({f"{s.config['arch']} on {s.config['dataset']}" for s in summaries
                                          if s.setting == setting and s.config and "arch" in s.config}))
               for setting in settings if setting not in SETTINGS}
    verdicts = [Verdict(p, [_compare(family, rows, references, s, p, reference_in_verdict[s]) for s in settings])
                for p in pools]
    pool_inputs = {setting: _pool_input(setting, summaries) for setting in settings}
    for setting in settings:
        shape = pool_inputs[setting]
        if shape is not None and is_1x1(shape):
            notes.append(f"{setting}: the pool input is {'x'.join(map(str, shape))}: on a 1x1 map every "
                         "spatial statistic (gap, gmp, avgmax, gem, lse, softpool, topk, ...) is the identity, "
                         "so with the same seed they train identically and differences between them here are "
                         "seed noise (see `poolbench check`, identity_1x1)")
    plans = [plan_seeds(s, {row.pool: row.values for row in by_setting[s]}, detect) for s in settings]
    favours = {s: str(SETTINGS[s].favours) for s in settings if s in SETTINGS and SETTINGS[s].favours}
    means = {s: {row.pool: row.stats.mean for row in by_setting[s] if row.values} for s in settings}
    tradeoffs = tradeoff_checks(family, rows, [s for s in settings if s in favours], pools, margin)
    family.adjust()  # every comparison is made: now Holm over all of them
    name = str(root) if isinstance(root, RunSet) else Path(root)
    return SweepAnalysis(root=name, settings=settings, rows=by_setting, references=references, baseline=baseline,
                  verdicts=verdicts, protocols=protocols, reference_in_verdict=reference_in_verdict, curves=curves,
                  notes=notes, pool_inputs=pool_inputs, seed_plans=plans, fingerprint=fingerprint(means, favours),
                  tradeoffs=tradeoffs, sources={setting: text for setting, text in sources.items() if text},
                  score=score, margin=margin, family=family, seeds=seeds)


def tradeoff_checks(family: Family, rows: dict[tuple[str, str], Row], tasks: list[str], pools: list[str],
                    margin: float = MARGIN) -> list[TradeOffCheck]:
    """The no-trade-off check (poolbench.analysis.tradeoff) of every pooling other than the four baselines that
    completed runs on every diagnostic task in ``tasks``; none unless all four baselines did too. Its
    comparisons with the worst baseline join ``family``."""
    def ran(task: str, pool: str) -> bool:
        return (task, pool) in rows and bool(rows[task, pool].values)

    if not tasks or not all(ran(t, b) for t in tasks for b in BASELINES):
        return []
    checks = []
    for pool in pools:
        if pool in BASELINES or not all(ran(t, pool) for t in tasks):
            continue
        per_task = []
        for task in tasks:
            means = {b: rows[task, b].stats.mean for b in BASELINES}
            best, worst = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
            own = rows[task, pool]
            per_task.append(TaskCheck(task=task, best=best, worst=worst,
                                      not_worse=non_inferiority(own.values, rows[task, best].values, margin),
                                      ahead=family.compare(task, own, rows[task, worst])))
        checks.append(TradeOffCheck(pool, tuple(per_task)))
    return checks


def _pool_input(setting: str, summaries: list[rundir.RunSummary]) -> tuple[int, ...] | None:
    """The (C, H, W) the setting's pooling sees: a named setting's measured on its model, else from
    its runs' results."""
    if setting in SETTINGS:
        return catalog.pool_input(SETTINGS[setting].arch, SETTINGS[setting].dataset)
    for summary in summaries:
        shape = (summary.result or {}).get("pool_input_shape") if summary.setting == setting else None
        if isinstance(shape, list) and len(shape) == 3:
            return tuple(int(d) for d in shape)
    return None


def _describe_protocol(p: Protocol) -> str:
    return (f"{p.epochs} epochs, batch {p.batch_size}, lr {p.lr}, momentum {p.momentum}, "
            f"weight decay {p.weight_decay}" + (", nesterov" if p.nesterov else "")
            + (f", images resized to {p.image_size}x{p.image_size}" if p.image_size else "")
            + (f", crop padding {p.crop_padding}" if p.crop_padding != Protocol().crop_padding else "")
            + (f", {p.val_split} training images held out for validation" if p.val_split else ""))


def _compare(family: Family, rows: dict[tuple[str, str], Row], references: dict[str, list[Row]], setting: str,
             pool: str, use_references: bool) -> Comparison:
    """The benchmark's rule on one setting: does ``pool``'s mean strictly beat every baseline's?"""
    own = rows[setting, pool]
    candidates = [rows[setting, b] for b in BASELINES
                  if b != pool and (setting, b) in rows and rows[setting, b].values]
    if use_references:
        candidates += [r for r in references.get(setting, []) if r.pool != pool and not r.proposal]
    if not candidates:
        return Comparison(setting, problem="no baseline to compare with")
    best = max(candidates, key=lambda r: r.stats.mean)
    if not own.values:
        return Comparison(setting, best=best, problem="no completed run")
    if own.diverged or own.failed or own.refused or own.unreadable:  # scored at chance by the original harness: no win
        return Comparison(setting, best=best, problem=f"{own.not_in_mean()}: cannot count as a win")
    return Comparison(setting, best=best, versus=family.compare(setting, own, best),
                      lead=own.stats.mean - best.stats.mean)
