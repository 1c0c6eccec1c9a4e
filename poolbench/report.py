"""Reports of a sweep folder: the statistics and verdict of poolbench.analysis rendered as
Markdown, CSV or one self-contained HTML page (with plots). The ``report`` verb that writes them
is poolbench.cli.report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math

from .analysis import ALPHA, BASELINES, Report, format_p, versus_text
from .plots import accuracy_bars_png, accuracy_curves_png, fingerprint_png
from .settings import BENCHMARK_SETTINGS, SETTINGS
from .tradeoff import RULE as TRADEOFF_RULE
from .tradeoff import TaskCheck

# --- Tables -----------------------------------------------------------------------------------

def format_number(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_p_exact(p: float) -> str:
    return "" if math.isnan(p) else f"{p:.6g}"


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
        for kind in ("diverged", "failed", "refused", "unfinished", "unreadable")]
    return f"{total} runs: " + ", ".join(parts)


def setting_title(setting: str, report: Report | None = None) -> str:
    """``name: description``; an ad-hoc setting is described by the model and data set of its runs."""
    description = SETTINGS[setting].description if setting in SETTINGS else ""
    if not description and report is not None:
        description = report.sources.get(setting, "")
    return f"{setting}: {description}" if description else setting


def setting_facts(report: Report, setting: str) -> str:
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


def fingerprint_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Per pooling: accuracy on each diagnostic task, the two side averages and the lean (gap 0, gmp 1)."""
    fp = report.fingerprint
    assert fp is not None, "no diagnostic task in this report"
    header = ["pooling", *(f"{task} ({fp.favours[task]})" for task in fp.tasks), "mean side", "max side",
              "lean (gap 0, gmp 1)", "profile"]
    body = [[row.pool, *(format_number(row.accuracy.get(task)) for task in fp.tasks),
             format_number(row.mean_side), format_number(row.max_side), format_number(row.lean), fp.profile(row)]
            for row in fp.rows]
    return header, body


def tradeoff_cell(check: TaskCheck) -> str:
    """One task of the no-trade-off check: the difference to the best baseline, then to the worst, and
    WORSE / NOT BETTER for a failed condition."""
    marks = ("" if check.not_worse else " WORSE") + ("" if check.better else " NOT BETTER")
    return "; ".join(versus_text(v.diff, v.pool, v.p_value) for v in (check.best, check.worst)) + marks


def tradeoff_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Per pooling beyond the baselines: whether it escapes the trade-off, and each task's two comparisons."""
    tasks = [t.task for t in report.tradeoffs[0].tasks]
    return ["pooling", "no trade-off", *tasks], [[c.pool, c.text(), *map(tradeoff_cell, c.tasks)]
                                                 for c in report.tradeoffs]


def tradeoff_rule() -> str:
    return TRADEOFF_RULE.format(baselines=", ".join(BASELINES), alpha=ALPHA)


FINGERPRINT_INTRO = ("Fingerprint: mean best test accuracy (%) on each diagnostic task; *mean side* and *max side* "
                     "average the tasks that favour mean-type and max-type pooling; *lean* places a pooling between "
                     "gap (0) and gmp (1). A pooling good on both sides has both side scores high. It describes "
                     "the pooling; it does not predict accuracy on natural images.")

SEED_PLAN_INTRO = ("Seed planning: the smallest difference each setting's seeds detect with 80% power in a paired "
                   "t-test at alpha 0.05, from the spread of paired differences measured here "
                   "(`poolbench report DIR --detect D` adds the seeds a difference of D points needs); the pooled "
                   "spread mixes every pair of poolings, so each line also gives the two leading poolings' own.")


INTRO = ("Score: best test accuracy over all epochs (%); mean ± sample std over the completed seeds "
         "(n = completed/runs), 95% CI from Student's t. Δ and p: paired by seed against the baseline. "
         "Diverged, failed, refused and unfinished runs are never in the mean: they are listed in the last column.")


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
        out += [f"## {setting_title(setting, report)}", "", setting_facts(report, setting), "",
                md_table(*setting_table(report, setting)), ""]
    if report.fingerprint is not None:
        out += ["## Fingerprint", "", FINGERPRINT_INTRO, "", md_table(*fingerprint_table(report)), ""]
    if report.tradeoffs:
        out += ["## No trade-off", "", tradeoff_rule(), "", md_table(*tradeoff_table(report)), ""]
    for name, path in (images or {}).items():
        out += [f"![{PLOT_TITLES[name]}]({path})", ""]
    out += ["## Seed planning", "", SEED_PLAN_INTRO, "", *(f"- {plan.text()}" for plan in report.seed_plans), ""]
    out += ["## Verdict", "", *verdict_rule(report), "", md_table(*verdict_table(report)), ""]
    out += ["## Final metrics", "", "The original tooling's summary lines (mean over completed seeds):", "",
            "```"]
    for pool, lines in final_metrics(report).items():
        out += [f"# {pool}", *lines]
    return "\n".join(out + ["```", ""])


CSV_COLUMNS = ["setting", "pool", "source", "rank", "n", "runs", "diverged", "failed", "refused", "unfinished", "mean",
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
                "setting": setting, "pool": row.pool,
                "source": ("published proposal" if row.proposal else "published") if row.published else "measured",
                "rank": "" if row.published else rank, "n": st.n, "runs": row.runs,
                "diverged": len(row.diverged), "failed": len(row.failed), "refused": len(row.refused),
                "unfinished": len(row.unfinished),
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


PLOT_TITLES = {"curves": "Test accuracy per epoch", "bars": "Best test accuracy with 95% CI",
               "fingerprint": "Fingerprint: mean side vs max side"}


def plots(report: Report) -> dict[str, bytes]:
    """Name (a PLOT_TITLES key) -> PNG of the report's plots; none when no run completed."""
    images = {}
    if report.curves:
        images["curves"] = accuracy_curves_png(report.curves)
    if plot_data(report):
        images["bars"] = accuracy_bars_png(plot_data(report))
    points = fingerprint_points(report)
    if points:
        images["fingerprint"] = fingerprint_png(points)
    return images


def fingerprint_points(report: Report) -> list[tuple[str, float, float]]:
    """(pooling, mean side, max side) of every pooling that ran all diagnostic tasks."""
    fp = report.fingerprint
    rows = fp.rows if fp is not None else []
    return [(r.pool, r.mean_side, r.max_side) for r in rows if not (math.isnan(r.mean_side) or math.isnan(r.max_side))]


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
        out += [f"<h2>{e(setting_title(setting, report))}</h2><p>{e(setting_facts(report, setting))}</p>",
                _html_table(*setting_table(report, setting), published)]
    if report.fingerprint is not None:
        out += [f"<h2>Fingerprint</h2><p>{e(FINGERPRINT_INTRO)}</p>", _html_table(*fingerprint_table(report))]
    if report.tradeoffs:
        out += [f"<h2>No trade-off</h2><p>{e(tradeoff_rule())}</p>", _html_table(*tradeoff_table(report))]
    for name, png in plots(report).items():
        out.append(f"<h2>{PLOT_TITLES[name]}</h2>"
                   f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    out += [f"<h2>Seed planning</h2><p>{e(SEED_PLAN_INTRO)}</p><ul>",
            *(f"<li>{e(plan.text())}</li>" for plan in report.seed_plans), "</ul>"]
    out += ["<h2>Verdict</h2>", *(f"<p>{e(line)}</p>" for line in verdict_rule(report)),
            _html_table(*verdict_table(report)), "<h2>Final metrics</h2><pre>"]
    for pool, lines in final_metrics(report).items():
        out.append(e("\n".join([f"# {pool}", *lines])) + "\n")
    return "\n".join(out + ["</pre></body></html>", ""])
