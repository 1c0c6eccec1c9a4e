"""Reports of a sweep folder: the statistics and verdict of poolbench.analysis.sweep_analysis rendered as
Markdown, CSV or one self-contained HTML page (with plots). The ``report`` verb that writes them
is poolbench.cli.report_verb.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from ..analysis.levels import ALPHA, POWER
from ..analysis.paired import Decision, Difference
from ..analysis.sweep_analysis import BASELINES, CI_METHOD, SCORES, SweepAnalysis, difference_text, format_p
from ..analysis.tradeoff import RULE as TRADEOFF_RULE
from ..analysis.tradeoff import TaskCheck
from ..analysis.variants import SettingAcross, VariantsAnalysis
from ..core.settings import BENCHMARK_SETTINGS, SETTINGS
from ..core.unique import unique
from .markdown import md_table, setting_title
from .plots import (
    Bar,
    DifferenceBar,
    MarginBar,
    accuracy_bars_png,
    differences_png,
    epoch_curves_png,
    fingerprint_png,
    non_inferiority_png,
)

# --- Tables -----------------------------------------------------------------------------------

def format_number(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_p_exact(p: float) -> str:
    return "" if math.isnan(p) else f"{p:.6g}"


def interval(d: Difference) -> str:
    """``+1.23 [+0.20, +2.26]``: a difference with its 95% CI (the point alone without a CI)."""
    if math.isnan(d.diff):
        return ""
    return f"{d.diff:+.2f}" + (f" [{d.ci_low:+.2f}, {d.ci_high:+.2f}]" if math.isfinite(d.ci_low) else "")


def holm_cell(d: Difference) -> str:
    """The Holm-adjusted p, starred when significant."""
    return "" if math.isnan(d.p_holm) else format_p(d.p_holm) + (" *" if d.significant() else "")


def setting_table(report: SweepAnalysis, setting: str) -> tuple[list[str], list[list[str]]]:
    """The leaderboard of one setting: measured rows by mean, then the published ones; each measured
    pooling's paired difference to the baseline with its CI, effect size, raw and Holm-adjusted p."""
    versus = report.baseline or "baseline"
    header = ["#", "pooling", "n", "mean ± std", "95% CI", f"Δ vs {versus} [95% CI]", "d_z", "p (paired t)",
              "p Holm", "not in mean"]
    body = []
    for rank, row in enumerate(report.rows[setting] + report.references.get(setting, []), start=1):
        st = row.stats
        mean = f"{st.mean:.2f} ± {format_number(st.std) or 'n/a'}" if st.n else "n/a"
        ci = f"[{st.ci_low:.2f}, {st.ci_high:.2f}]" if st.n > 1 else ""
        d = row.versus
        compared = not row.published and report.baseline not in (None, row.pool) and d.n > 0
        body.append(["" if row.published else str(rank), row.label, f"{st.n}/{row.runs}", mean, ci,
                     interval(d) if compared else "", format_number(d.effect) if compared else "",
                     format_p(d.p_value) if compared and not math.isnan(d.p_value) else "",
                     holm_cell(d) if compared else "", row.not_in_mean()])
    return header, body


def verdict_table(report: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    header = ["pooling", "verdict", *report.settings]
    return header, [[v.pool, v.text(), *(c.text() for c in v.comparisons)] for v in report.verdicts]


def verdict_rule(report: SweepAnalysis) -> list[str]:
    with_published = [s for s in report.settings if report.reference_in_verdict[s]]
    lines = [
        "Rule (MLS-Bench): a pooling wins when its mean strictly beats the best baseline's mean on every "
        "setting. Baselines: " + ", ".join(BASELINES) + " as measured in this sweep"
        + (f", and the published leaderboard runs on {', '.join(with_published)}" if with_published else "")
        + ". A diverged or failed run on a setting rules a win there out (the original harness scored such "
        "runs at chance).",
        f"Each cell: the difference to the best baseline there with its 95% CI and its p-value Holm-adjusted "
        f"over all {report.family.size} comparisons of this report (listed under Comparisons); * marks an adjusted "
        f"p < {ALPHA}. Paired t-test by seed against a measured baseline, Welch's t-test against published runs. "
        "A win reads the means, as the benchmark does; \"significant (Holm) on k/n\" says on how many settings "
        "the lead also survives the correction.",
    ]
    if set(report.settings) != set(BENCHMARK_SETTINGS):
        lines.append(f"This verdict covers the settings of this sweep ({', '.join(report.settings)}); the "
                     f"benchmark's covers {', '.join(BENCHMARK_SETTINGS)}.")
    return lines


def final_metrics(report: SweepAnalysis) -> dict[str, list[str]]:
    """The original tooling's summary lines, per pooling: the mean best accuracy of completed seeds."""
    lines: dict[str, list[str]] = {}
    for verdict in report.verdicts:  # the sweep's pooling order
        for setting in report.settings:
            row = next((r for r in report.rows[setting] if r.pool == verdict.pool), None)
            if row is not None and row.values:
                lines.setdefault(row.pool, []).append(
                    f"Final metrics ({setting}): test_acc_{setting}={row.stats.mean:.2f}")
    return lines


def _counts(report: SweepAnalysis) -> str:
    measured = [row for s in report.settings for row in report.rows[s]]
    total = sum(row.runs for row in measured)
    parts = [f"{sum(len(row.values) for row in measured)} completed"] + [
        f"{sum(len(getattr(row, kind)) for row in measured)} {kind}"
        for kind in ("diverged", "failed", "refused", "unfinished", "unreadable")]
    return f"{total} runs: " + ", ".join(parts)


def setting_facts(report: SweepAnalysis, setting: str) -> str:
    """The line under a setting's title: its protocol, pool input and, for a diagnostic task, its side."""
    shape = report.pool_inputs.get(setting)
    text = f"Protocol: {report.protocols[setting]}."
    if shape is not None:
        text += f" Pool input: {'x'.join(map(str, shape))}."
    if report.pool_is_1x1(setting):
        text += (" 1x1: every parameter-free pooling is the identity here, so their differences on this "
                 "setting are seed noise.")
    favours = SETTINGS[setting].favours if setting in SETTINGS else None
    if favours:
        text += f" Diagnostic task: theory favours {favours}-type pooling."
    return text


def fingerprint_table(report: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per pooling: accuracy on each diagnostic task, the two side averages and the lean (gap 0, gmp 1)."""
    fp = report.fingerprint
    assert fp is not None, "no diagnostic task in this report"
    header = ["pooling", *(f"{task} ({fp.favours[task]})" for task in fp.tasks), "mean side", "max side",
              "lean (gap 0, gmp 1)", "profile"]
    body = [[row.pool, *(format_number(row.accuracy.get(task)) for task in fp.tasks),
             format_number(row.mean_side), format_number(row.max_side), format_number(row.lean), fp.profile(row)]
            for row in fp.rows]
    return header, body


MARKS = {Decision.SHOWN: "", Decision.UNDECIDED: " ?"}


def tradeoff_cell(check: TaskCheck) -> str:
    """One task of the no-trade-off check: the difference to the best baseline with its one-sided
    lower bound against the margin, then to the worst with its Holm-adjusted p; WORSE / NOT AHEAD
    mark a failed condition, ? an undecided one."""
    nw, ahead = check.not_worse, check.ahead
    first = f"{nw.text()} vs {check.best}" + MARKS.get(nw.decision, " WORSE")
    second = difference_text(ahead, check.worst) + MARKS.get(check.ahead_decision, " NOT AHEAD")
    return f"{first}; {second}"


def tradeoff_table(report: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per pooling beyond the baselines: whether it escapes the trade-off, and each task's two comparisons."""
    tasks = [t.task for t in report.tradeoffs[0].tasks]
    return ["pooling", "no trade-off", *tasks], [[c.pool, c.text(), *map(tradeoff_cell, c.tasks)]
                                                 for c in report.tradeoffs]


def tradeoff_rule(report: SweepAnalysis) -> str:
    return TRADEOFF_RULE.format(baselines=", ".join(BASELINES), alpha=ALPHA, margin=report.margin)


def comparisons_table(report: SweepAnalysis) -> tuple[list[str], list[list[str]]]:
    """Every comparison the report makes, each once: the family its Holm adjustment is over."""
    header = ["setting", "pooling", "versus", "n", "Δ [95% CI]", "effect", "test", "p", "p Holm"]
    body = [[setting, first, second, str(d.n), interval(d),
             f"{d.effect_name} {format_number(d.effect)}" if math.isfinite(d.effect) else "", d.test,
             format_p(d.p_value) if not math.isnan(d.p_value) else "", holm_cell(d)]
            for setting, first, second, d in report.family.members()]
    return header, body


def comparisons_intro(report: SweepAnalysis) -> str:
    return (f"Every comparison this report makes, each once: {report.family.size} tests with a p-value, "
            f"Holm-adjusted together so that the chance of any false * among them is at most {ALPHA}. Δ is the "
            "mean difference (the first pooling minus the second) with its 95% CI; effect is Cohen's d_z (paired: "
            "mean / sd of the paired differences) or d (Welch: difference / pooled sd).")


FINGERPRINT_INTRO = ("Fingerprint: the mean score (%) on each diagnostic task; *mean side* and *max side* "
                     "average the tasks that favour mean-type and max-type pooling; *lean* places a pooling between "
                     "gap (0) and gmp (1). A pooling good on both sides has both side scores high. It describes "
                     "the pooling; it does not predict accuracy on natural images.")

SEED_PLAN_INTRO = ("Seed planning, per setting for its two leading poolings: the smallest difference their seeds "
                   f"detect with {POWER:.0%} power in a paired t-test at alpha {ALPHA:g} (statsmodels' power "
                   "solver agrees), from the spread of their own paired differences, and the seeds the measured "
                   "difference needs (`poolbench report DIR --detect D` adds the seeds a difference of D points "
                   "needs).")


def intro(report: SweepAnalysis) -> str:
    """What the tables hold: the score, the statistics and what is left out of them."""
    return (f"Score: {SCORES[report.score]} (%) (`--score {report.score}`); mean ± sample std over the completed "
            f"seeds (n = completed/runs), 95% CI of the mean: {CI_METHOD}. Δ: the mean difference to the "
            "baseline paired by seed, with its 95% CI, Cohen's d_z and the paired t-test's p, raw and Holm-adjusted "
            f"over every comparison of the report (* adjusted p < {ALPHA:g}). Diverged, failed, refused and "
            "unfinished runs are never in the mean: they are listed in the last column.")


CSV_COLUMNS = ["setting", "pool", "source", "score", "rank", "n", "runs", "diverged", "failed", "refused",
               "unfinished", "mean", "std", "ci95_low", "ci95_high", "min", "max", "score_by_seed", "baseline",
               "diff_vs_baseline", "diff_ci95_low", "diff_ci95_high", "d_z_vs_baseline", "p_vs_baseline",
               "p_holm_vs_baseline", "n_paired", "best_baseline", "best_baseline_mean", "diff_vs_best_baseline",
               "diff_vs_best_ci95_low", "diff_vs_best_ci95_high", "effect_vs_best_baseline", "p_vs_best_baseline",
               "p_holm_vs_best_baseline", "test_vs_best_baseline", "beats_best_baseline", "significant", "wins",
               "holm_family_size"]


def _difference_columns(d: Difference, prefix: str, ci: str, effect: str) -> dict[str, str]:
    return {f"diff_vs_{prefix}": format_number(d.diff, 4), f"{ci}_low": format_number(d.ci_low, 4),
            f"{ci}_high": format_number(d.ci_high, 4), effect: format_number(d.effect, 4),
            f"p_vs_{prefix}": format_p_exact(d.p_value), f"p_holm_vs_{prefix}": format_p_exact(d.p_holm)}


def setting_records(report: SweepAnalysis, setting: str) -> list[dict[str, object]]:
    """The CSV rows of one setting (CSV_COLUMNS): its measured rows, then the published ones."""
    verdicts = {v.pool: v for v in report.verdicts}
    records: list[dict[str, object]] = []
    for rank, row in enumerate(report.rows[setting] + report.references.get(setting, []), start=1):
        st, values = row.stats, list(row.values.values())
        record: dict[str, object] = {
            "setting": setting, "pool": row.pool,
            "source": ("published proposal" if row.proposal else "published") if row.published else "measured",
            "score": "best" if row.published else report.score,
            "rank": "" if row.published else rank, "n": st.n, "runs": row.runs,
            "diverged": len(row.diverged), "failed": len(row.failed), "refused": len(row.refused),
            "unfinished": len(row.unfinished),
            "mean": format_number(st.mean, 4), "std": format_number(st.std, 4),
            "ci95_low": format_number(st.ci_low, 4), "ci95_high": format_number(st.ci_high, 4),
            "min": format_number(min(values, default=math.nan), 4),
            "max": format_number(max(values, default=math.nan), 4),
            "score_by_seed": ";".join(f"{k}:{acc}" for k, acc in sorted(row.values.items())),
            "holm_family_size": report.family.size,
        }
        if not row.published and report.baseline not in (None, row.pool):
            record.update(baseline=report.baseline, n_paired=row.versus.n,
                          **_difference_columns(row.versus, "baseline", "diff_ci95", "d_z_vs_baseline"))
        verdict = verdicts.get(row.pool) if not row.published else None
        if verdict is not None:
            c = verdict.comparisons[report.settings.index(setting)]
            record.update(best_baseline=c.best.label if c.best else "",
                          best_baseline_mean=format_number(c.best.stats.mean, 4) if c.best else "",
                          test_vs_best_baseline=c.versus.test if c.best and not c.problem else "",
                          beats_best_baseline=c.beats, significant=c.significant, wins=verdict.wins,
                          **_difference_columns(c.versus, "best_baseline", "diff_vs_best_ci95",
                                                "effect_vs_best_baseline"))
        records.append(record)
    return records


def bar_data(report: SweepAnalysis) -> dict[str, list[Bar]]:
    """The bar chart's input: per setting, measured rows with a mean, then the published ones, each
    with its seeds' scores."""
    bars = {}
    for setting in report.settings:
        rows = [r for r in report.rows[setting] + report.references.get(setting, []) if r.values]
        if rows:
            bars[setting] = [Bar(label=("published " if r.published else "") + r.pool, mean=r.stats.mean,
                                 ci_low=r.stats.ci_low, ci_high=r.stats.ci_high, published=r.published,
                                 values=list(r.values.values())) for r in rows]
    return bars


def difference_data(report: SweepAnalysis) -> dict[str, list[DifferenceBar]]:
    """The forest plot's input: per setting, each measured pooling's paired difference to the baseline."""
    data = {}
    for setting in report.settings:
        bars = [DifferenceBar(label=r.pool, diff=r.versus.diff, ci_low=r.versus.ci_low, ci_high=r.versus.ci_high,
                              significant=r.versus.significant())
                for r in report.rows[setting] if r.pool != report.baseline and r.versus.n > 0]
        if bars:
            data[setting] = bars
    return data


#: per-epoch metric -> (y label, title, log scale)
CURVES = {"test_acc": ("test accuracy (%)", "Test accuracy per epoch", False),
          "val_acc": ("validation accuracy (%)", "Accuracy on the held-out validation images per epoch", False),
          "train_loss": ("train loss", "Train loss per epoch", True),
          "lr": ("learning rate", "Learning rate per epoch", False)}
BAND = ": mean over seeds, band ± 1 standard error"

PLOT_TITLES = {"curves": CURVES["test_acc"][1], "val-curves": CURVES["val_acc"][1],
               "loss-curves": CURVES["train_loss"][1], "lr-curves": CURVES["lr"][1],
               "bars": "Score with 95% CI and every seed",
               "differences": "Paired difference to the baseline with 95% CI",
               "fingerprint": "Fingerprint: mean side vs max side",
               "margin": "No trade-off: not worse than the best baseline, against the margin"}
_CURVE_PLOTS = {"curves": "test_acc", "val-curves": "val_acc", "loss-curves": "train_loss", "lr-curves": "lr"}


def plots(report: SweepAnalysis) -> dict[str, bytes]:
    """Name (a PLOT_TITLES key) -> PNG of the report's plots; none when no run completed."""
    images = {}
    score = SCORES[report.score]
    if report.curves.get("test_acc"):
        images["curves"] = epoch_curves_png(report.curves["test_acc"], CURVES["test_acc"][0],
                                            CURVES["test_acc"][1] + BAND)
    bars, differences = bar_data(report), difference_data(report)
    if bars:
        images["bars"] = accuracy_bars_png(bars, score)
    if report.baseline is not None and differences:
        images["differences"] = differences_png(differences, report.baseline, score)
    for name, metric in _CURVE_PLOTS.items():
        if name != "curves" and report.curves.get(metric):
            label, title, log_y = CURVES[metric]
            images[name] = epoch_curves_png(report.curves[metric], label, title + BAND, log_y)
    points = fingerprint_points(report)
    if points:
        images["fingerprint"] = fingerprint_png(points)
    margins = margin_data(report)
    if margins:
        images["margin"] = non_inferiority_png(margins, report.margin)
    return images


def margin_data(report: SweepAnalysis) -> dict[str, list[MarginBar]]:
    """The no-trade-off plot's input: per task, each checked pooling against the best baseline there."""
    data: dict[str, list[MarginBar]] = {}
    for check in report.tradeoffs:
        for task in check.tasks:
            test = task.not_worse
            data.setdefault(task.task, []).append(
                MarginBar(label=check.pool, versus=task.best, diff=test.difference.diff, lower=test.lower,
                          decision=str(test.decision)))
    return data


def fingerprint_points(report: SweepAnalysis) -> list[tuple[str, float, float]]:
    """(pooling, mean side, max side) of every pooling that ran all diagnostic tasks."""
    fp = report.fingerprint
    rows = fp.rows if fp is not None else []
    return [(r.pool, r.mean_side, r.max_side) for r in rows if not (math.isnan(r.mean_side) or math.isnan(r.max_side))]


# --- Sections ---------------------------------------------------------------------------------

class Table(NamedTuple):
    """A section's table; ``published``: per row, whether the HTML shows it in the published style."""

    header: list[str]
    rows: list[list[str]]
    published: list[bool] | None = None


class Items(NamedTuple):
    """A bulleted list."""

    items: list[str]


class Code(NamedTuple):
    """Preformatted lines in groups; ``caption``: the line Markdown writes above its fence (the HTML
    page shows the block alone)."""

    caption: str
    groups: list[list[str]]


class Plots(NamedTuple):
    """The report's plots, each under its title: files linked from Markdown, PNGs inlined in HTML."""


Body = Table | Items | Code | Plots
R = TypeVar("R", SweepAnalysis, VariantsAnalysis)


@dataclass(frozen=True)
class Section(Generic[R]):
    """One section of a report, written by every renderer (to_markdown, to_html, to_csv) in the order
    of SECTIONS. A section is written once, or once per setting (``per_setting``); its functions
    take the report and the setting ("" for a section written once).

    ``title``: its heading; ``intro``: the paragraphs under it; ``body``: what follows them;
    ``shown``: whether the report has its data; ``records``: its rows of the CSV (CSV_COLUMNS), if any.
    """

    title: str | Callable[[R, str], str]
    intro: Callable[[R, str], list[str]]
    body: Callable[[R, str], Body]
    shown: Callable[[R], bool] = lambda report: True
    per_setting: bool = False
    records: Callable[[R, str], list[dict[str, object]]] | None = None

    def keys(self, report: R) -> list[str]:
        """The settings it is written for, or [""] once, or [] when not shown."""
        if not self.shown(report):
            return []
        if not self.per_setting:
            return [""]
        return list(report.settings) if isinstance(report, SweepAnalysis) else [a.setting for a in report.settings]

    def heading(self, report: R, key: str) -> str:
        return self.title if isinstance(self.title, str) else self.title(report, key)


def _published_marks(report: SweepAnalysis, setting: str) -> list[bool]:
    return [False] * len(report.rows[setting]) + [True] * len(report.references.get(setting, []))


#: The sections of a report, in order: a new section is one entry here (and its data in the analysis).
SECTIONS: list[Section[SweepAnalysis]] = [
    Section(title=lambda r, s: setting_title(s, r), intro=lambda r, s: [setting_facts(r, s)],
            body=lambda r, s: Table(*setting_table(r, s), _published_marks(r, s)), per_setting=True,
            records=setting_records),
    Section("Fingerprint", intro=lambda r, _: [FINGERPRINT_INTRO], body=lambda r, _: Table(*fingerprint_table(r)),
            shown=lambda r: r.fingerprint is not None),
    Section("No trade-off", intro=lambda r, _: [tradeoff_rule(r)], body=lambda r, _: Table(*tradeoff_table(r)),
            shown=lambda r: bool(r.tradeoffs)),
    Section("", intro=lambda r, _: [], body=lambda r, _: Plots()),
    Section("Seed planning", intro=lambda r, _: [SEED_PLAN_INTRO],
            body=lambda r, _: Items([plan.text() for plan in r.seed_plans])),
    Section("Verdict", intro=lambda r, _: verdict_rule(r), body=lambda r, _: Table(*verdict_table(r))),
    Section("Comparisons", intro=lambda r, _: [comparisons_intro(r)], body=lambda r, _: Table(*comparisons_table(r)),
            shown=lambda r: bool(r.family.members())),
    Section("Final metrics", intro=lambda r, _: [],
            body=lambda r, _: Code("The original tooling's summary lines (mean over completed seeds):",
                                   [[f"# {pool}", *lines] for pool, lines in final_metrics(r).items()])),
]


def _across(vr: VariantsAnalysis, setting: str) -> SettingAcross:
    return next(across for across in vr.settings if across.setting == setting)


#: The side-by-side sections of a sweep of protocol variants (each variant's own report follows them).
VARIANT_SECTIONS: list[Section[VariantsAnalysis]] = [
    Section(title=lambda vr, s: setting_title(s, next(iter(vr.reports.values()))), intro=lambda vr, s: [],
            body=lambda vr, s: Table(*variant_setting_table(vr, _across(vr, s))), per_setting=True),
    Section("How much the ranking moves", intro=lambda vr, _: [],
            body=lambda vr, _: Table(*variant_agreement_table(vr))),
    Section("Fingerprint per variant", intro=lambda vr, _: [FINGERPRINT_INTRO],
            body=lambda vr, _: Table(*variant_fingerprint_table(vr)), shown=lambda vr: vr.has_fingerprints()),
]


# --- Formats: each walks the sections ---------------------------------------------------------

def md_sections(report: R, sections: list[Section[R]], level: int = 2,
                images: dict[str, str] | None = None) -> list[str]:
    """The Markdown lines of ``sections`` (headings of ``level``); ``images``: plot name -> file."""
    out: list[str] = []
    for section in sections:
        for key in section.keys(report):
            body: Body = section.body(report, key)
            if isinstance(body, Plots):  # no heading of its own: each image has its title
                for name, path in (images or {}).items():
                    out += [f"![{PLOT_TITLES[name]}]({path})", ""]
                continue
            paragraphs: list[str] = section.intro(report, key)
            out += [f"{'#' * level} {section.heading(report, key)}", "", *paragraphs] + ([""] if paragraphs else [])
            if isinstance(body, Table):
                out += [md_table(body.header, body.rows), ""]
            elif isinstance(body, Items):
                out += [f"- {item}" for item in body.items] + [""]
            else:
                lines: list[str] = [line for group in body.groups for line in group]
                out += [body.caption, "", "```", *lines, "```", ""]
    return out


def to_markdown(report: SweepAnalysis, images: dict[str, str] | None = None) -> str:
    """The report as Markdown; ``images`` (plot name -> file) are linked after the tables."""
    out = [f"# poolbench report: {report.root}", "", _counts(report) + ".", "", intro(report), ""]
    out += [f"Note: {note}" for note in report.notes] + ([""] if report.notes else [])
    return "\n".join(out + md_sections(report, SECTIONS, images=images))


HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}tr.published{color:#666;font-style:italic}img{max-width:100%}
pre{background:#f6f6f6;padding:1em}.note{color:#a60}"""


def _html_table(header: list[str], body: list[list[str]], published: list[bool] | None = None) -> str:
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
    rows = [f"<tr{' class=published' if published and published[i] else ''}>{cells('td', r)}</tr>"
            for i, r in enumerate(body)]
    return f"<table><tr>{cells('th', header)}</tr>{''.join(rows)}</table>"


def html_sections(report: R, sections: list[Section[R]], level: int = 2) -> list[str]:
    """The HTML lines of ``sections`` (headings of ``level``); plots are inlined as base64 PNG."""
    e = html.escape
    out: list[str] = []
    for section in sections:
        for key in section.keys(report):
            body: Body = section.body(report, key)
            if isinstance(body, Plots):
                assert isinstance(report, SweepAnalysis), "plots belong to one report"
                out += [f"<h{level}>{PLOT_TITLES[name]}</h{level}>"
                        f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
                        for name, png in plots(report).items()]
                continue
            heading = f"<h{level}>{e(section.heading(report, key))}</h{level}>"
            paragraphs: list[str] = [f"<p>{e(text)}</p>" for text in section.intro(report, key)]
            # one paragraph shares the heading's line; several follow it, one a line
            out += [heading + paragraphs[0]] if len(paragraphs) == 1 else [heading, *paragraphs]
            if isinstance(body, Table):
                out.append(_html_table(*body))
            elif isinstance(body, Items):
                out[-1] += "<ul>"
                out += [f"<li>{html.escape(item)}</li>" for item in body.items] + ["</ul>"]
            else:
                out[-1] += "<pre>"
                out += [html.escape("\n".join(group)) + "\n" for group in body.groups] + ["</pre>"]
    return out


HTML_HEAD = (f"<!doctype html><html><head><meta charset='utf-8'><title>poolbench report</title>"
             f"<style>{HTML_STYLE}</style></head><body>")


def to_html(report: SweepAnalysis) -> str:
    """One self-contained HTML file: tables, verdict, and the plots inlined as base64 PNG."""
    e = html.escape
    head = f"<h1>poolbench report: {e(str(report.root))}</h1><p>{e(_counts(report))}.</p><p>{e(intro(report))}</p>"
    notes = [f"<p class=note>Note: {e(note)}</p>" for note in report.notes]
    return "\n".join([HTML_HEAD, head, *notes, *html_sections(report, SECTIONS)]) + "</body></html>\n"


def to_csv(report: SweepAnalysis) -> str:
    """One row per setting and pooling (published rows too), every statistic in its own column."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for section in SECTIONS:
        if section.records is not None:
            for key in section.keys(report):
                writer.writerows(section.records(report, key))
    return buffer.getvalue()


# --- Protocol variants side by side -----------------------------------------------------------

def variant_title(vr: VariantsAnalysis, variant: str) -> str:
    """``lr0.05 (lr 0.05)``: a variant's folder and the protocol values that make it."""
    return f"{variant} ({', '.join(f'{name} {value}' for name, value in vr.values[variant].items())})"


def variants_intro(vr: VariantsAnalysis) -> str:
    return (f"This sweep ran its grid under {len(vr.variants)} protocol variants: "
            f"{'; '.join(variant_title(vr, v) for v in vr.variants)}. Each variant is reported on its own below: "
            "its poolings are compared with each other, never with another variant's runs (each has its own Holm "
            "family). Side by side, per setting: each pooling's mean score (completed seeds) and rank (1 = best) "
            "under every variant and how many places it moves, and Kendall's tau-b between two variants' orders "
            "of the poolings (1 the same order, -1 reversed, 0 unrelated; over a few poolings and seeds it "
            "describes the sweep, it is no test).")


def variant_setting_table(vr: VariantsAnalysis, across: SettingAcross) -> tuple[list[str], list[list[str]]]:
    """One setting: per pooling its mean (n) and rank under each variant, and how far its rank moves."""
    header = ["pooling", *(f"{v} mean (n)" for v in vr.variants), *(f"rank {v}" for v in vr.variants), "moves"]
    body = []
    for pool in across.pools:
        means, seeds, ranks = across.means.get(pool, {}), across.seeds.get(pool, {}), across.ranks.get(pool, {})
        moves = across.moves(pool)
        body.append([pool, *(f"{means[v]:.2f} ({seeds[v]})" if v in means else "" for v in vr.variants),
                     *(str(ranks[v]) if v in ranks else "" for v in vr.variants),
                     "" if moves is None else str(moves)])
    return header, body


def variant_agreement_table(vr: VariantsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per setting and pair of variants: Kendall's tau of their orders of the poolings."""
    header = ["setting", "variants", "Kendall tau", "poolings ranked in both"]
    return header, [[across.setting, f"{a.first} vs {a.second}", format_number(a.tau), str(a.n)]
                    for across in vr.settings for a in across.agreements]


def variant_fingerprint_table(vr: VariantsAnalysis) -> tuple[list[str], list[list[str]]]:
    """Per pooling, its fingerprint's mean side, max side and lean under each variant."""
    fingerprints = {v: r.fingerprint for v, r in vr.reports.items() if r.fingerprint is not None}
    header = ["pooling", *(f"{v} {part}" for v in fingerprints for part in ("mean side", "max side", "lean"))]
    rows = {v: {row.pool: row for row in fp.rows} for v, fp in fingerprints.items()}
    body = []
    for pool in unique([pool for by_pool in rows.values() for pool in by_pool]):
        cells = [pool]
        for variant in fingerprints:
            row = rows[variant].get(pool)
            cells += ([format_number(row.mean_side), format_number(row.max_side), format_number(row.lean)]
                      if row is not None else ["", "", ""])
        body.append(cells)
    return header, body


def _demoted_markdown(text: str, title: str) -> list[str]:
    """A report's Markdown one heading level down under ``title`` (its own title line replaced);
    lines inside code blocks (the final metrics' ``# pool``) are left as they are."""
    lines, fenced = [f"## {title}"], False
    for line in text.splitlines()[1:]:
        fenced ^= line.startswith("```")
        lines.append("#" + line if line.startswith("#") and not fenced else line)
    return lines


def variants_to_markdown(vr: VariantsAnalysis, images: dict[str, dict[str, str]] | None = None) -> str:
    """The variants side by side, then each variant's own report (``images``: variant -> plot -> file)."""
    out = [f"# poolbench report: {vr.root}", "", variants_intro(vr), "", "## Protocol variants side by side", ""]
    out += md_sections(vr, VARIANT_SECTIONS, level=3)
    for variant, report in vr.reports.items():
        text = to_markdown(report, (images or {}).get(variant))
        out += _demoted_markdown(text, f"Variant {variant_title(vr, variant)}: {report.root}")
    return "\n".join(out)


def variants_to_html(vr: VariantsAnalysis) -> str:
    """One self-contained HTML page: the variants side by side, then each variant's report."""
    e = html.escape
    out = [HTML_HEAD, f"<h1>poolbench report: {e(str(vr.root))}</h1><p>{e(variants_intro(vr))}</p>",
           "<h2>Protocol variants side by side</h2>", *html_sections(vr, VARIANT_SECTIONS, level=3)]
    for variant, report in vr.reports.items():
        body = to_html(report).split("<body>", 1)[1].rsplit("</body>", 1)[0]
        for tag in ("h2", "h1"):  # one level down, h2 first so that h1 becomes h2 only once
            body = body.replace(f"<{tag}>", f"<h{int(tag[1]) + 1}>").replace(f"</{tag}>", f"</h{int(tag[1]) + 1}>")
        out += [f"<h2>Variant {e(variant_title(vr, variant))}</h2>", body]
    return "\n".join(out + ["</body></html>", ""])


def variants_to_csv(vr: VariantsAnalysis) -> str:
    """Every variant's CSV rows (to_csv), each with the variant in a first column."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["variant", *CSV_COLUMNS], lineterminator="\n")
    writer.writeheader()
    for variant, report in vr.reports.items():
        for record in csv.DictReader(io.StringIO(to_csv(report))):
            writer.writerow({"variant": variant, **record})
    return buffer.getvalue()
