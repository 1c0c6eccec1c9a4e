"""Reports of a sweep folder: statistics over seeds, the benchmark's verdict, the published
reference rows, and the ``report`` (md, csv, html) and ``status`` verbs.

The score of a run is its best test accuracy. Per setting and pooling the report gives the
completed seeds' mean, sample std and 95% CI (Student's t), and the difference to a
baseline paired by seed with a paired t-test. Diverged, failed and unfinished runs are never
averaged in: they are counted next to the mean.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import importlib.resources
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import stats

from . import runs
from .settings import BENCHMARK_SETTINGS, SETTINGS, Protocol
from .sweep import load_sweep

BASELINES = ("gap", "gmp", "gem", "avgmax")
ALPHA = 0.05
REFERENCE_FILE = "mls_bench_pooling_baselines.json"
REFERENCE_LABEL = "published (MLS-Bench leaderboard)"
REFERENCE_POOLS = {"avg_max": "avgmax", "gem": "gem", "global_max": "gmp"}  # leaderboard -> ours
UNFINISHED = (runs.RUNNING, runs.INTERRUPTED, runs.PENDING)
EXIT_BAD_INPUT = 2


class ReportError(ValueError):
    """A user error: the message names the problem and the fix."""


# --- Statistics -------------------------------------------------------------------------------

class Stats(NamedTuple):
    n: int
    mean: float
    std: float  # sample std (ddof=1); nan for n < 2
    ci_low: float  # 95% CI of the mean from Student's t; nan for n < 2
    ci_high: float


def describe(values: list[float]) -> Stats:
    """Mean, sample std and 95% t confidence interval of ``values``."""
    n = len(values)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(np.mean(values))
    if n < 2:
        return Stats(1, mean, math.nan, math.nan, math.nan)
    std = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """(mean of a - b, two-sided paired t-test p, n) over the seeds both have; nan when undefined."""
    seeds = sorted(set(a) & set(b))
    diffs = np.array([a[s] - b[s] for s in seeds])
    if len(seeds) == 0:
        return math.nan, math.nan, 0
    if len(seeds) < 2 or np.ptp(diffs) == 0:  # no spread: the t statistic is undefined
        return float(diffs.mean()), math.nan, len(seeds)
    p = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue
    return float(diffs.mean()), float(p), len(seeds)


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p (unpaired: published runs share seeds, not hardware or code)."""
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


# --- The report's data ------------------------------------------------------------------------

@dataclass
class Row:
    """One pooling on one setting: the best test accuracy of each completed seed, and the rest."""

    setting: str
    pool: str
    values: dict[int, float] = field(default_factory=dict)
    diverged: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unfinished: list[int] = field(default_factory=list)
    published: bool = False
    diff: float = math.nan  # vs the report's baseline, paired by seed
    p_value: float = math.nan
    n_paired: int = 0

    @property
    def stats(self) -> Stats:
        return describe(list(self.values.values()))

    @property
    def label(self) -> str:
        return f"{self.pool}: {REFERENCE_LABEL}" if self.published else self.pool

    @property
    def runs(self) -> int:
        return len(self.values) + len(self.diverged) + len(self.failed) + len(self.unfinished)

    def not_in_mean(self) -> str:
        kinds = {"diverged": self.diverged, "failed": self.failed, "unfinished": self.unfinished}
        return "; ".join(f"{len(seeds)} {kind} (seed {', '.join(map(str, sorted(seeds)))})"
                         for kind, seeds in kinds.items() if seeds)


@dataclass
class Comparison:
    """A pooling against the best baseline on one setting (the benchmark's rule)."""

    setting: str
    best: Row | None = None  # the baseline with the highest mean; None: nothing to compare with
    diff: float = math.nan
    p_value: float = math.nan
    test: str = ""
    problem: str = ""  # why the pooling cannot beat the baseline here

    @property
    def beats(self) -> bool:
        return not self.problem and self.diff > 0

    @property
    def significant(self) -> bool:
        return self.beats and self.p_value < ALPHA

    def text(self) -> str:
        if self.problem:
            return self.problem
        versus = f"published {self.best.pool}" if self.best.published else self.best.pool
        p = format_p(self.p_value)
        p = p if p.startswith("<") else f"={p}"
        return f"{self.diff:+.2f} vs {versus} (p{p}){' *' if self.significant else ''}"


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
            return f"WINS, significant on {significant}/{len(self.comparisons)}"
        return f"no: not ahead on {sum(not c.beats for c in self.comparisons)}/{len(self.comparisons)}"


@dataclass
class Report:
    root: Path
    settings: list[str]
    rows: dict[str, list[Row]]  # per setting, measured, best mean first
    references: dict[str, list[Row]]  # per setting, published rows
    baseline: str | None
    verdicts: list[Verdict]
    protocols: dict[str, str]  # per setting, the protocol its runs used
    reference_in_verdict: dict[str, bool]
    curves: dict[str, dict[str, list[list[float]]]]  # setting -> pool -> test acc per epoch, per seed
    notes: list[str] = field(default_factory=list)


def published_reference() -> dict[str, dict[str, dict[int, float]]]:
    """setting -> pool -> seed -> best test accuracy of the leaderboard's current runs."""
    text = importlib.resources.files("poolbench").joinpath("reference", REFERENCE_FILE).read_text()
    table: dict[str, dict[str, dict[int, float]]] = {}
    for run in json.loads(text)["runs"]:
        pool = REFERENCE_POOLS.get(run["method"], run["method"])
        for setting, acc in run["best_test_acc"].items():
            table.setdefault(setting, {}).setdefault(pool, {})[int(run["seed"])] = float(acc)
    return table


def collect_runs(root: str | Path) -> list[runs.RunSummary]:
    """Every run of the sweep in ``root``, in grid order: the cells of its sweep.json (pending
    when their folder does not exist yet) and any other run folder there. ReportError if none.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"folder {root} not found: give a sweep folder (made by poolbench sweep --out)")
    found = {(s.setting, s.pool, s.seed): s for s in map(runs.summarize, runs.find_run_dirs(root))}
    sweep = load_sweep(root)
    for run in sweep.runs() if sweep else []:
        key = (run.setting, run.pool, run.seed)
        if key not in found:
            found[key] = runs.RunSummary(sweep.path(run), *key, runs.PENDING, None, 0, None, [], None, None)
    if not found:
        raise ReportError(f"no runs in {root} (expected {root}/<setting>/<pool>/seed<k>/): "
                          f"start a sweep with `poolbench sweep --pools gap,gem --out {root}`")
    settings = _ordered((sweep.settings if sweep else []) + sorted(k[0] for k in found))
    pools = _ordered((list(sweep.pools) if sweep else []) + sorted(k[1] for k in found))
    return sorted(found.values(), key=lambda s: (settings.index(s.setting), pools.index(s.pool), s.seed))


def build_report(root: str | Path, baseline: str | None = None) -> Report:
    """Read every run under ``root`` and compute the report; ReportError on a user error."""
    summaries = collect_runs(root)
    settings = _ordered([s.setting for s in summaries])
    pools = _ordered([s.pool for s in summaries])
    rows = {(s, p): Row(s, p) for s in settings for p in pools}
    curves: dict[str, dict[str, list[list[float]]]] = {}
    for summary in summaries:
        row = rows[summary.setting, summary.pool]
        if summary.status == runs.COMPLETED and summary.best_test_acc is not None:
            row.values[summary.seed] = float(summary.best_test_acc)
            accs = [float(m["test_acc"]) for m in summary.metrics]
            curves.setdefault(summary.setting, {}).setdefault(summary.pool, []).append(accs)
        elif summary.status == runs.DIVERGED:
            row.diverged.append(summary.seed)
        elif summary.status == runs.FAILED:
            row.failed.append(summary.seed)
        else:
            row.unfinished.append(summary.seed)

    if baseline is None:
        baseline = "gap" if "gap" in pools else None
    elif baseline not in pools:
        raise ReportError(f"baseline {baseline!r} has no runs in {root}: choose one of {', '.join(pools)}")
    if baseline is not None:
        for (setting, _), row in rows.items():
            versus = rows[setting, baseline].values
            row.diff, row.p_value, row.n_paired = paired_difference(row.values, versus)
    by_setting = {s: sorted((rows[s, p] for p in pools if rows[s, p].runs),
                            key=lambda r: -r.stats.mean if r.values else math.inf) for s in settings}

    published = published_reference()
    references = {s: [Row(s, pool, dict(values), published=True) for pool, values in published[s].items()]
                  for s in settings if s in published}
    protocols, notes, reference_in_verdict = {}, [], {}
    unfinished = sum(s.status in UNFINISHED for s in summaries)
    if unfinished:
        notes.append(f"{unfinished} runs are not finished: these numbers and the verdict are provisional")
    for setting in settings:
        used = {Protocol(**s.config["protocol"]) for s in summaries if s.setting == setting and s.config}
        protocols[setting] = "; ".join(sorted(map(_describe_protocol, used))) or "no run started"
        if len(used) > 1:
            notes.append(f"{setting}: runs with different protocols are in one table ({protocols[setting]})")
        # Published numbers are comparable only with runs of the full published protocol.
        reference_in_verdict[setting] = setting in references and used == {SETTINGS[setting].protocol}
        if setting in references and not reference_in_verdict[setting]:
            notes.append(f"{setting}: the published rows come from the full protocol "
                         f"({_describe_protocol(SETTINGS[setting].protocol)}); this sweep's runs differ, so "
                         f"they are shown for reference only and left out of the verdict")
    verdicts = [Verdict(p, [_compare(rows, references, s, p, reference_in_verdict[s]) for s in settings])
                for p in pools]
    return Report(Path(root), settings, by_setting, references, baseline, verdicts, protocols,
                  reference_in_verdict, curves, notes)


def _ordered(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _describe_protocol(p: Protocol) -> str:
    return (f"{p.epochs} epochs, batch {p.batch_size}, lr {p.lr}, momentum {p.momentum}, "
            f"weight decay {p.weight_decay}" + (", nesterov" if p.nesterov else ""))


def _compare(rows: dict[tuple[str, str], Row], references: dict[str, list[Row]], setting: str, pool: str,
             use_references: bool) -> Comparison:
    """The benchmark's rule on one setting: does ``pool``'s mean strictly beat every baseline's?"""
    own = rows[setting, pool]
    candidates = [rows[setting, b] for b in BASELINES
                  if b != pool and (setting, b) in rows and rows[setting, b].values]
    if use_references:
        candidates += [r for r in references.get(setting, []) if r.pool != pool]
    if not candidates:
        return Comparison(setting, problem="no baseline to compare with")
    best = max(candidates, key=lambda r: r.stats.mean)
    if not own.values:
        return Comparison(setting, best, problem="no completed run")
    if own.diverged or own.failed:  # the original harness scores such runs at chance: no win
        return Comparison(setting, best, problem=f"{own.not_in_mean()}: cannot count as a win")
    diff = own.stats.mean - best.stats.mean
    if best.published:
        return Comparison(setting, best, diff, welch_p(list(own.values.values()), list(best.values.values())),
                          "Welch t")
    return Comparison(setting, best, diff, paired_difference(own.values, best.values)[1], "paired t")


# --- Tables -----------------------------------------------------------------------------------

def format_number(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_p_exact(p: float) -> str:
    return "" if math.isnan(p) else f"{p:.6g}"


def format_p(p: float) -> str:
    return "n/a" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def setting_table(report: Report, setting: str) -> tuple[list[str], list[list[str]]]:
    """The leaderboard of one setting: measured rows by mean, then the published ones."""
    versus = report.baseline or "baseline"
    header = ["#", "pooling", "n", "mean ± std", "95% CI", f"Δ vs {versus}", "p (paired t)", "not in mean"]
    body = []
    for rank, row in enumerate(report.rows[setting] + report.references.get(setting, []), start=1):
        st = row.stats
        mean = f"{st.mean:.2f} ± {format_number(st.std) or 'n/a'}" if st.n else "n/a"
        ci = f"[{st.ci_low:.2f}, {st.ci_high:.2f}]" if st.n > 1 else ""
        compared = not row.published and report.baseline not in (None, row.pool) and row.n_paired
        body.append(["" if row.published else str(rank), row.label, f"{st.n}/{row.runs}", mean, ci,
                     f"{row.diff:+.2f}" if compared else "", format_p(row.p_value) if compared else "",
                     row.not_in_mean()])
    return header, body


def verdict_table(report: Report) -> tuple[list[str], list[list[str]]]:
    header = ["pooling", "verdict", *report.settings]
    return header, [[v.pool, v.text(), *(c.text() for c in v.comparisons)] for v in report.verdicts]


def verdict_rule(report: Report) -> list[str]:
    with_published = [s for s in report.settings if report.reference_in_verdict[s]]
    lines = [
        "Rule (MLS-Bench): a pooling wins when its mean strictly beats the best baseline's mean on every "
        "setting. Baselines: " + ", ".join(BASELINES) + " as measured in this sweep"
        + (f", and the published leaderboard runs on {', '.join(with_published)}" if with_published else "")
        + ". A diverged or failed run on a setting rules a win there out (the original harness scored such "
        "runs at chance).",
        f"Each cell: the difference to the best baseline's mean there. Significant (*): p < {ALPHA}, "
        "paired t-test by seed against a measured baseline, Welch's t-test against published runs.",
    ]
    if set(report.settings) != set(BENCHMARK_SETTINGS):
        lines.append(f"This verdict covers the settings of this sweep ({', '.join(report.settings)}); the "
                     f"benchmark's covers {', '.join(BENCHMARK_SETTINGS)}.")
    return lines


def final_metrics(report: Report) -> dict[str, list[str]]:
    """The original tooling's summary lines, per pooling: the mean best accuracy of completed seeds."""
    lines: dict[str, list[str]] = {}
    for verdict in report.verdicts:  # the sweep's pooling order
        for setting in report.settings:
            row = next((r for r in report.rows[setting] if r.pool == verdict.pool), None)
            if row is not None and row.values:
                lines.setdefault(row.pool, []).append(
                    f"Final metrics ({setting}): test_acc_{setting}={row.stats.mean:.2f}")
    return lines


def _counts(report: Report) -> str:
    measured = [row for s in report.settings for row in report.rows[s]]
    total = sum(row.runs for row in measured)
    parts = [f"{sum(len(row.values) for row in measured)} completed"] + [
        f"{sum(len(getattr(row, kind)) for row in measured)} {kind}"
        for kind in ("diverged", "failed", "unfinished")]
    return f"{total} runs: " + ", ".join(parts)


def _title(setting: str) -> str:
    description = SETTINGS[setting].description if setting in SETTINGS else ""
    return f"{setting}: {description}" if description else setting


INTRO = ("Score: best test accuracy over all epochs (%); mean ± sample std over the completed seeds "
         "(n = completed/runs), 95% CI from Student's t. Δ and p: paired by seed against the baseline. "
         "Diverged, failed and unfinished runs are never in the mean: they are listed in the last column.")


# --- Formats ----------------------------------------------------------------------------------

def md_table(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table padded to line up in a terminal too."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def to_markdown(report: Report, images: dict[str, str] | None = None) -> str:
    """The report as Markdown; ``images`` (plot name -> file) are linked after the tables."""
    out = [f"# poolbench report: {report.root}", "", _counts(report) + ".", "", INTRO, ""]
    out += [f"Note: {note}" for note in report.notes] + ([""] if report.notes else [])
    for setting in report.settings:
        out += [f"## {_title(setting)}", "", f"Protocol: {report.protocols[setting]}.", "",
                md_table(*setting_table(report, setting)), ""]
    for name, path in (images or {}).items():
        out += [f"![{PLOT_TITLES[name]}]({path})", ""]
    out += ["## Verdict", "", *verdict_rule(report), "", md_table(*verdict_table(report)), ""]
    out += ["## Final metrics", "", "The original tooling's summary lines (mean over completed seeds):", "",
            "```"]
    for pool, lines in final_metrics(report).items():
        out += [f"# {pool}", *lines]
    return "\n".join(out + ["```", ""])


CSV_COLUMNS = ["setting", "pool", "source", "rank", "n", "runs", "diverged", "failed", "unfinished", "mean",
               "std", "ci95_low", "ci95_high", "min", "max", "best_test_acc_by_seed", "baseline",
               "diff_vs_baseline", "p_vs_baseline", "n_paired", "best_baseline", "best_baseline_mean",
               "diff_vs_best_baseline", "p_vs_best_baseline", "test_vs_best_baseline", "beats_best_baseline",
               "significant", "wins"]


def to_csv(report: Report) -> str:
    """One row per setting and pooling (published rows too), every statistic in its own column."""
    verdicts = {v.pool: v for v in report.verdicts}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for setting in report.settings:
        for rank, row in enumerate(report.rows[setting] + report.references.get(setting, []), start=1):
            st, values = row.stats, list(row.values.values())
            record = {
                "setting": setting, "pool": row.pool, "source": "published" if row.published else "measured",
                "rank": "" if row.published else rank, "n": st.n, "runs": row.runs,
                "diverged": len(row.diverged), "failed": len(row.failed), "unfinished": len(row.unfinished),
                "mean": format_number(st.mean, 4), "std": format_number(st.std, 4),
                "ci95_low": format_number(st.ci_low, 4), "ci95_high": format_number(st.ci_high, 4),
                "min": format_number(min(values, default=math.nan), 4),
                "max": format_number(max(values, default=math.nan), 4),
                "best_test_acc_by_seed": ";".join(f"{k}:{acc}" for k, acc in sorted(row.values.items())),
            }
            if not row.published and report.baseline not in (None, row.pool):
                record.update(baseline=report.baseline, diff_vs_baseline=format_number(row.diff, 4),
                              p_vs_baseline=format_p_exact(row.p_value), n_paired=row.n_paired)
            verdict = verdicts.get(row.pool) if not row.published else None
            if verdict is not None:
                c = verdict.comparisons[report.settings.index(setting)]
                record.update(best_baseline=c.best.label if c.best else "",
                              best_baseline_mean=format_number(c.best.stats.mean, 4) if c.best else "",
                              diff_vs_best_baseline=format_number(c.diff, 4),
                              p_vs_best_baseline=format_p_exact(c.p_value), test_vs_best_baseline=c.test,
                              beats_best_baseline=c.beats, significant=c.significant, wins=verdict.wins)
            writer.writerow(record)
    return buffer.getvalue()


def plot_data(report: Report) -> dict:
    """The bar chart's input: per setting, measured rows with a mean, then the published ones."""
    bars = {}
    for setting in report.settings:
        rows = [r for r in report.rows[setting] + report.references.get(setting, []) if r.values]
        if rows:
            bars[setting] = [(("published " if r.published else "") + r.pool, r.stats.mean,
                              r.stats.ci_high - r.stats.mean, r.published) for r in rows]
    return bars


PLOT_TITLES = {"curves": "Test accuracy per epoch", "bars": "Best test accuracy with 95% CI"}


def plots(report: Report) -> dict[str, bytes]:
    """Name (a PLOT_TITLES key) -> PNG of the report's plots; none when no run completed."""
    from .plots import accuracy_bars_png, accuracy_curves_png

    images = {}
    if report.curves:
        images["curves"] = accuracy_curves_png(report.curves)
    if plot_data(report):
        images["bars"] = accuracy_bars_png(plot_data(report))
    return images


HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}tr.published{color:#666;font-style:italic}img{max-width:100%}
pre{background:#f6f6f6;padding:1em}.note{color:#a60}"""


def _html_table(header: list[str], body: list[list[str]], published: list[bool] | None = None) -> str:
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)  # noqa: E731
    rows = [f"<tr{' class=published' if published and published[i] else ''}>{cells('td', r)}</tr>"
            for i, r in enumerate(body)]
    return f"<table><tr>{cells('th', header)}</tr>{''.join(rows)}</table>"


def to_html(report: Report) -> str:
    """One self-contained HTML file: tables, verdict, and the plots inlined as base64 PNG."""
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>poolbench report</title>"
           f"<style>{HTML_STYLE}</style></head><body>",
           f"<h1>poolbench report: {e(str(report.root))}</h1><p>{e(_counts(report))}.</p><p>{e(INTRO)}</p>"]
    out += [f"<p class=note>Note: {e(note)}</p>" for note in report.notes]
    for setting in report.settings:
        published = [False] * len(report.rows[setting]) + [True] * len(report.references.get(setting, []))
        out += [f"<h2>{e(_title(setting))}</h2><p>Protocol: {e(report.protocols[setting])}.</p>",
                _html_table(*setting_table(report, setting), published)]
    for name, png in plots(report).items():
        out.append(f"<h2>{PLOT_TITLES[name]}</h2>"
                   f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    out += ["<h2>Verdict</h2>", *(f"<p>{e(line)}</p>" for line in verdict_rule(report)),
            _html_table(*verdict_table(report)), "<h2>Final metrics</h2><pre>"]
    for pool, lines in final_metrics(report).items():
        out.append(e("\n".join([f"# {pool}", *lines])) + "\n")
    return "\n".join(out + ["</pre></body></html>", ""])


# --- The `report` and `status` verbs ----------------------------------------------------------

def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``poolbench report``."""
    parser.add_argument("folder", metavar="DIR", help="sweep folder")
    parser.add_argument("--format", choices=["md", "html", "csv"],
                        help="default: from the --output suffix, else md")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE (default: stdout)")
    parser.add_argument("--baseline", help="pooling the others are compared with, paired by seed "
                                           "(default gap)")


def report_main(args: argparse.Namespace) -> int:
    """``poolbench report``: 0, or 2 on a user error (nothing is written then)."""
    output = Path(args.output) if args.output else None
    fmt = args.format or (output.suffix.lstrip(".").replace("markdown", "md") if output else "md")
    try:
        if fmt not in ("md", "html", "csv"):
            raise ReportError(f"cannot tell the format of {output}: add --format md|html|csv")
        if output is not None and not output.parent.is_dir():
            raise ReportError(f"folder {output.parent} of --output does not exist: create it first")
        report = build_report(args.folder, args.baseline)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if fmt == "html":
        text = to_html(report)
    elif fmt == "csv":
        text = to_csv(report)
    else:
        images = {}
        if output is not None:  # a Markdown file gets its plots as PNG files beside it
            for name, png in plots(report).items():
                path = output.with_name(f"{output.stem}-{name}.png")
                runs.atomic_write_bytes(path, png)
                images[name] = path.name
        text = to_markdown(report, images)
    if output is None:
        sys.stdout.write(text)
    else:
        runs.atomic_write_bytes(output, text.encode())
        print(f"wrote {output}", file=sys.stderr)
    return 0


STATUS_ORDER = (runs.COMPLETED, runs.RUNNING, runs.DIVERGED, runs.FAILED, runs.INTERRUPTED, runs.PENDING)


def status_cell(summary: runs.RunSummary) -> str:
    """``completed 93.21``, ``running 85.10 (3/8)``, ``diverged (epoch 2)``, ``pending``."""
    text = summary.status
    if summary.best_test_acc is not None and summary.status != runs.DIVERGED:
        text += f" {summary.best_test_acc:.2f}"
    if summary.status in (runs.RUNNING, runs.INTERRUPTED):
        text += f" ({summary.epochs_completed}/{summary.epochs or '?'})"
    if summary.status == runs.DIVERGED and (summary.result or {}).get("diverged_at"):
        text += f" (epoch {summary.result['diverged_at']['epoch']})"
    return text


def status_text(root: Path, summaries: list[runs.RunSummary]) -> str:
    """Per setting a grid: poolings down, seeds across; counts on top."""
    counts = {kind: sum(s.status == kind for s in summaries) for kind in STATUS_ORDER}
    out = [f"{root}: {len(summaries)} runs: " + ", ".join(f"{n} {kind}" for kind, n in counts.items())]
    for setting in _ordered([s.setting for s in summaries]):
        in_setting = [s for s in summaries if s.setting == setting]
        seeds = sorted({s.seed for s in in_setting})
        cells = {(s.pool, s.seed): status_cell(s) for s in in_setting}
        body = [[pool, *(cells.get((pool, seed), "") for seed in seeds)]
                for pool in _ordered([s.pool for s in in_setting])]
        out += ["", _title(setting), md_table(["pooling", *(f"seed {k}" for k in seeds)], body)]
    return "\n".join(out) + "\n"


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``poolbench status``."""
    parser.add_argument("folder", metavar="DIR", help="sweep folder")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def status_main(args: argparse.Namespace) -> int:
    """``poolbench status``: the grid of a sweep folder with each run's state and best accuracy."""
    try:
        summaries = collect_runs(args.folder)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        records = [{"setting": s.setting, "pool": s.pool, "seed": s.seed, "status": s.status,
                    "best_test_acc": s.best_test_acc, "epochs_completed": s.epochs_completed,
                    "epochs": s.epochs, "path": str(s.path)} for s in summaries]
        counts = {kind: sum(s.status == kind for s in summaries) for kind in STATUS_ORDER}
        print(json.dumps({"root": str(args.folder), "counts": counts, "runs": records}, indent=1))
    else:
        sys.stdout.write(status_text(Path(args.folder), summaries))
    return 0
