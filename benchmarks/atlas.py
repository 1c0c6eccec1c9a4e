"""The atlas: every registered pooling's fingerprint on the diagnostic suite and its accuracy on the
real suite, under one protocol, as one table and one plot in docs/.

The sweep behind it is long (every pooling x 3 diagnostic tasks x 3 seeds, and x 1 real setting x
3 seeds), so it is spread over sittings: each call runs what the committed table lacks for at most
``--minutes`` (the sweeps are stopped with SIGTERM at the deadline, their checkpoints kept in the
work folder), adds the finished runs to the table (``docs/atlas/runs.csv``, the rows of
``poolbench export``) and writes the page (``docs/atlas.md``) and the plot
(``docs/atlas/atlas.png``) from the table. The table is the memory: a run in it is never run again;
the work folder (``.atlas-work/``, ignored by git) only saves the epochs of unfinished runs.
Runs are seed-major, so a sitting that stops early has compared every pooling on its first seed.

    python benchmarks/atlas.py --minutes 20              # one sitting on 2 cores (--jobs 2 --threads 1)
    python benchmarks/atlas.py --render                  # only the page and plot from the table

What the page shows, per pooling (the rules of ``poolbench report``, docs/statistics.md):

- diagnostic suite: the mean best test accuracy on each task, the *mean side* (average over the
  tasks a mean-like pooling can read) and *max side* with their standard deviation over seeds
  (each seed's side score), and the lean (poolbench.analysis.fingerprint; gap 0, gmp 1);
- real suite: the mean best test accuracy and its difference to gap paired by seed, with the 95%
  CI and the Holm-adjusted p-value over every pooling's comparison with gap;
- what went wrong: a run that diverged or failed, a pooling the contract refused, a task where a
  pooling stayed at chance (best accuracy below chance + 5 points), seeds still missing.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from poolbench.analysis.fingerprint import fingerprint
from poolbench.analysis.levels import ALPHA
from poolbench.analysis.paired import Difference, holm_adjust, paired
from poolbench.core.atomic import atomic_write_bytes
from poolbench.core.settings import SETTINGS, SUITES, run_protocol
from poolbench.pools import registry
from poolbench.render import export
from poolbench.training.catalog import num_classes

ROOT = Path(__file__).resolve().parent.parent
FINISHED = ("completed", "diverged")  # never run again; a failed or refused run is tried in the next sitting
SUITE_NAMES = ("diagnostics", "real")
CHANCE_MARGIN = 5.0  # points above chance below which a task counts as not learnt


# --- The table ---------------------------------------------------------------------------------

def read_table(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_table(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["setting"], r["pool"], int(r["seed"])))
    table = export.to_csv([{column: row.get(column) for column in export.RUN_COLUMNS} for row in rows],
                          export.RUN_COLUMNS)
    atomic_write_bytes(path, table.encode())


def protocol_matches(row: dict[str, str], overrides: dict[str, object]) -> bool:
    """Whether ``row`` was trained with its setting's protocol under ``overrides`` (the atlas never
    mixes protocols: a row of another protocol is neither counted nor shown)."""
    setting = SETTINGS.get(row["setting"])
    if setting is None:
        return False
    expected = run_protocol(setting, overrides)
    return all(_cell(getattr(expected, name)) == row.get(name, "") for name in export.PROTOCOL_FIELDS)


def _cell(value: object) -> str:
    """A value as the table's CSV holds it (None: an empty cell)."""
    return "" if value is None else str(value)


def key(row: dict[str, str]) -> tuple[str, str, int]:
    return row["setting"], row["pool"], int(row["seed"])


def merge(table: list[dict[str, str]], new: list[dict[str, object]]) -> list[dict[str, str]]:
    """The table with the work folder's finished runs added; a run already in the table stays as it is,
    one that failed or was refused there is replaced by its newer attempt."""
    rows = {key(row): row for row in table}
    for run in new:
        row = {column: _cell(run.get(column)) for column in export.RUN_COLUMNS}
        if row["status"] not in (*FINISHED, "failed", "refused"):
            continue
        old = rows.get(key(row))
        if old is None or old["status"] not in FINISHED:
            rows[key(row)] = row
    return list(rows.values())


# --- A sitting ---------------------------------------------------------------------------------

def missing_runs(table: list[dict[str, str]], pools: list[str], suites: list[str], seeds: list[int],
                 overrides: dict[str, object]) -> dict[str, list[tuple[str, str, int]]]:
    """suite -> the (setting, pooling, seed) the table does not have finished under this protocol."""
    done = {key(row) for row in table if row["status"] in FINISHED and protocol_matches(row, overrides)}
    return {suite: [(setting, pool, seed) for seed in seeds for setting in SUITES[suite] for pool in pools
                    if (setting, pool, seed) not in done] for suite in suites}


def grids(todo: list[tuple[str, str, int]]) -> list[tuple[int, list[str], list[str]]]:
    """The missing runs as sweep grids that hold nothing else, seed by seed: (seed, settings, poolings),
    the settings of one grid missing the same poolings. A sweep runs its whole grid, so a grid that
    also held a finished run would train it again."""
    missing: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for setting, pool, seed in todo:
        missing[seed][setting].append(pool)
    result = []
    for seed, by_setting in missing.items():
        same: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for setting, pools in by_setting.items():
            same[tuple(pools)].append(setting)
        result += [(seed, settings, list(pools)) for pools, settings in same.items()]
    return result


def sweep_command(folder: Path, seed: int, settings: list[str], pools: list[str],
                  args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "poolbench", "sweep", "--out", str(folder), "--settings", ",".join(settings),
               "--pools", ",".join(pools), "--seeds", str(seed), "--jobs", str(args.jobs), "--threads",
               str(args.threads)]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    return command


def run_until(command: list[str], deadline: float) -> int:
    """Run the sweep ``command``; SIGTERM at ``deadline`` (the sweep keeps its runs' checkpoints)."""
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        return process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        print("atlas: the sitting's time is up; stopping the sweep (its checkpoints are kept)", flush=True)
        process.send_signal(signal.SIGTERM)
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


def sitting(args: argparse.Namespace, table_path: Path, overrides: dict[str, object]) -> None:
    deadline = time.monotonic() + 60 * args.minutes
    table = read_table(table_path)
    todo = missing_runs(table, args.pools, args.suites, args.seeds, overrides)
    print(f"atlas: {sum(map(len, todo.values()))} runs to go "
          f"({', '.join(f'{suite} {len(runs)}' for suite, runs in todo.items())})", flush=True)
    for suite, runs in todo.items():
        for seed, settings, pools in grids(runs):
            if time.monotonic() >= deadline:
                break
            # One folder per grid: a later sitting that finds the same grid missing resumes its
            # unfinished runs' checkpoints; the table is what says which runs are done.
            folder = args.work / suite / f"seed{seed}-{'+'.join(settings)}"
            run_until(sweep_command(folder, seed, settings, pools, args), deadline)
            if (folder / "sweep.json").exists():
                table = merge(table, export.tables(folder)[0])
                write_table(table_path, table)  # after each grid: a sitting stopped later loses nothing


# --- The page ----------------------------------------------------------------------------------

def render(table: list[dict[str, str]], pools: list[str], seeds: list[int], overrides: dict[str, object],
           out_dir: Path, page: Path) -> str:
    """Write the plot and the page from the table; returns the page's Markdown."""
    rows = [row for row in table if protocol_matches(row, overrides) and int(row["seed"]) in seeds
            and row["pool"] in pools]
    scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)  # (setting, pool) -> seed -> best acc
    notes: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["status"] == "completed" and row["best_test_acc"]:
            scores[row["setting"], row["pool"]][int(row["seed"])] = float(row["best_test_acc"])
        elif row["status"] in ("diverged", "failed", "refused"):
            notes[row["pool"]].append(f"{row['status']} on {row['setting']} (seed {row['seed']})")
    tasks = list(SUITES["diagnostics"])
    favours = {task: str(SETTINGS[task].favours) for task in tasks}
    real = SUITES["real"][0]
    mean_acc = {task: {pool: float(np.mean(list(scores[task, pool].values())))
                       for pool in pools if scores.get((task, pool))} for task in tasks}
    printed = fingerprint(mean_acc, favours)
    lean = {row.pool: row.lean for row in printed.rows} if printed else {}
    for task in tasks:
        chance = 100.0 / num_classes(SETTINGS[task])
        for pool, accuracy in mean_acc[task].items():
            if accuracy < chance + CHANCE_MARGIN:
                notes[pool].append(f"at chance on {task} ({accuracy:.1f}%, chance {chance:.0f}%)")
    sides = {pool: side_spread(scores, pool, tasks, favours, seeds) for pool in pools}
    baseline = scores.get((real, "gap"), {})
    differences: dict[str, Difference] = {pool: paired(scores[real, pool], baseline)
                                          for pool in pools if pool != "gap" and scores.get((real, pool))}
    holm_adjust(list(differences.values()))
    for pool in pools:
        have = {int(row["seed"]) for row in rows if row["pool"] == pool and row["status"] in FINISHED}
        if len(have) < len(seeds):
            notes[pool].append(f"seeds missing ({len(have)} of {len(seeds)} finished)")

    out_dir.mkdir(parents=True, exist_ok=True)
    real_mean = {pool: float(np.mean(list(scores[real, pool].values()))) for pool in pools if scores.get((real, pool))}
    plot(sides, real_mean, out_dir / "atlas.png")
    order = sorted(pools, key=lambda p: -np.nanmean([sides[p][0][0], sides[p][1][0]]) if sides[p] else math.inf)
    machines = sorted({f"{row['device']} ({row['host']}, torch {row['torch']})" for row in rows if row["device"]})
    lines = [
        "# The atlas: every pooling under one protocol",
        "",
        "[Back to the README](../README.md)",
        "",
        "Made by `benchmarks/atlas.py` from the runs in [atlas/runs.csv](atlas/runs.csv) (one row per run, the",
        "columns of `poolbench export`); each sitting adds what is missing and rewrites this page:",
        "",
        "```bash",
        "python benchmarks/atlas.py --minutes 20",
        "```",
        "",
        f"Seeds {', '.join(map(str, seeds))}; the diagnostic suite ({', '.join(tasks)}) and the real suite ({real}) at",
        f"their published protocols; {len(rows)} runs of {len(pools)} poolings, on "
        f"{'; '.join(machines) or 'no run yet'}.",
        "Mean side and max side: the average best test accuracy over the tasks each family can read, ± the",
        "standard deviation of the per-seed side scores; lean: gap 0, gmp 1 (docs/diagnostics.md). Real: the mean",
        f"best test accuracy; Δ gap: paired by seed, 95% CI, p Holm-adjusted over the {len(differences)} comparisons",
        f"with gap (\\* where p < {ALPHA}). The plot: ![atlas](atlas/atlas.png)",
        "",
        real_summary(differences, real),
        "",
        fingerprint_vs_real(sides, lean, real_mean),
        "",
        "| pooling | " + " | ".join(tasks)
        + " | mean side | max side | lean | real | Δ gap [95% CI] | p (Holm) | notes |",
        "|---|" + "---:|" * (len(tasks) + 6) + "---|",
    ]
    for pool in order:
        cells = [_pct(mean_acc[task].get(pool)) for task in tasks]
        (mean_side, mean_sd), (max_side, max_sd) = sides[pool] or ((math.nan, math.nan), (math.nan, math.nan))
        difference = differences.get(pool)
        if difference is not None and not math.isnan(difference.ci_low):
            low, high = max(difference.ci_low, -100.0), min(difference.ci_high, 100.0)  # accuracies differ by <= 100
            delta = f"{difference.diff:+.2f} [{low:+.2f}, {high:+.2f}]"
            p = f"{difference.p_holm:.3f}" + ("\\*" if difference.significant() else "")
        else:
            delta, p = ("0 (baseline)" if pool == "gap" else "–"), ""
        cells += [_spread(mean_side, mean_sd), _spread(max_side, max_sd), _num(lean.get(pool)),
                  _pct(real_mean.get(pool)), delta, p, "; ".join(notes[pool])]
        lines.append(f"| {pool} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    page.write_text(text)
    return text


def real_summary(differences: dict[str, Difference], real: str) -> str:
    """One paragraph: which poolings the paired tests put above and below gap on the real suite, and how
    many they cannot tell from it; a pooling compared on fewer than two seeds is not counted."""
    tested = {pool: d for pool, d in differences.items() if not math.isnan(d.p_holm)}
    above = sorted((p for p, d in tested.items() if d.significant() and d.diff > 0), key=lambda p: -tested[p].diff)
    below = sorted((p for p, d in tested.items() if d.significant() and d.diff < 0), key=lambda p: tested[p].diff)

    def named(pools: list[str]) -> str:
        return ", ".join(f"`{pool}` ({tested[pool].diff:+.2f})" for pool in pools) or "none"

    within = len(tested) - len(above) - len(below)
    largest = sorted(tested, key=lambda p: -tested[p].diff)
    spread = (f" Their mean differences to gap run from {tested[largest[-1]].diff:+.2f} (`{largest[-1]}`) to "
              f"{tested[largest[0]].diff:+.2f} (`{largest[0]}`) points." if largest else "")
    return (f"**Real suite ({real}), each pooling paired with gap by seed:** above gap after Holm's correction "
            f"(p < {ALPHA}): {named(above)}; below it: {named(below)}; {within} of the {len(tested)} compared "
            f"cannot be told from gap at these seeds (not evidence that they are equal).{spread}")


def fingerprint_vs_real(sides: dict[str, tuple[tuple[float, float], tuple[float, float]] | None],
                        lean: dict[str, float], real_mean: dict[str, float]) -> str:
    """One paragraph: Spearman's rank correlation, over the poolings that have both, of the mean real-suite
    accuracy with the max side, the mean side and the lean of the diagnostic fingerprint."""
    from scipy import stats

    pools = [pool for pool in real_mean if sides.get(pool) and pool in lean]
    if len(pools) < 3:
        return "**Fingerprint and real suite:** fewer than 3 poolings have both."
    real = [real_mean[pool] for pool in pools]
    measures = {"max side": [sides[pool][1][0] for pool in pools],  # type: ignore[index]
                "mean side": [sides[pool][0][0] for pool in pools],  # type: ignore[index]
                "lean": [lean[pool] for pool in pools]}
    parts = []
    for name, values in measures.items():
        rho, p = stats.spearmanr(values, real)
        parts.append(f"{name} ρ = {rho:+.2f} (p = {p:.2g})")
    return (f"**Fingerprint and real suite:** over the {len(pools)} poolings, Spearman's rank correlation of the "
            f"real-suite accuracy with the {'; '.join(parts)}. Descriptive: the poolings are not independent "
            f"draws (many are variants of one another), so read the p-values as a guide, not a test.")


def side_spread(scores: dict[tuple[str, str], dict[int, float]], pool: str, tasks: list[str],
                favours: dict[str, str], seeds: list[int]) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((mean side, sd over seeds), (max side, sd)) from the seeds that finished every task; None if none did."""
    result = []
    for family in ("mean", "max"):
        family_tasks = [task for task in tasks if favours[task] == family]
        per_seed = [float(np.mean([scores[task, pool][seed] for task in family_tasks])) for seed in seeds
                    if all(seed in scores.get((task, pool), {}) for task in family_tasks)]
        if not per_seed:
            return None
        result.append((float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan))
    return result[0], result[1]


def plot(sides: dict[str, tuple[tuple[float, float], tuple[float, float]] | None], real_mean: dict[str, float],
         path: Path) -> None:
    """Mean side against max side with their seed spreads; each point coloured by its pooling's mean
    real-suite accuracy (grey where it has none), gap and gmp ringed in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.5, 7), layout="constrained")
    axes = figure.add_subplot()
    known = [real_mean[pool] for pool in sides if pool in real_mean]
    norm = matplotlib.colors.Normalize(min(known), max(known)) if known else None
    colours = matplotlib.colormaps["viridis"]
    for pool, value in sides.items():
        if value is None:
            continue
        (x, x_sd), (y, y_sd) = value
        axes.errorbar(x, y, xerr=None if math.isnan(x_sd) else x_sd, yerr=None if math.isnan(y_sd) else y_sd,
                      fmt="none", capsize=2, color="0.7", zorder=1)
        colour = colours(norm(real_mean[pool])) if norm is not None and pool in real_mean else "0.6"
        axes.scatter([x], [y], s=30, color=colour, zorder=2,
                     edgecolors="C3" if pool in ("gap", "gmp") else "none", linewidths=1.5)
        axes.annotate(pool, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    if norm is not None:
        bar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=colours), ax=axes)
        bar.set_label("real suite: mean best test accuracy (%)")
    axes.set_xlabel("mean side: best test accuracy on the mean-favouring tasks (%)")
    axes.set_ylabel("max side: best test accuracy on the max-favouring task (%)")
    axes.set_title("Every pooling on the diagnostic suite (± sd over seeds), coloured by the real suite")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


def _pct(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _spread(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.1f}" + ("" if math.isnan(sd) else f" ± {sd:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20, help="length of this sitting (default 20)")
    parser.add_argument("--render", action="store_true", help="only write the page and plot from the table")
    parser.add_argument("--pools", help="comma-separated poolings (default: every registered one)")
    parser.add_argument("--suites", default=",".join(SUITE_NAMES), help="diagnostics,real (default both)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="override the suites' epochs (only to try the script out)")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "atlas" / "runs.csv")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "atlas.md")
    parser.add_argument("--work", type=Path, default=ROOT / ".atlas-work")
    args = parser.parse_args(argv)
    args.pools = [p.strip() for p in args.pools.split(",")] if args.pools else registry.names()
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = [p for p in args.pools if p not in registry.names()] + [s for s in args.suites if s not in SUITE_NAMES]
    if unknown:
        print(f"error: unknown pooling or suite {unknown[0]!r}: poolings are registered names, suites "
              f"{', '.join(SUITE_NAMES)}", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {"epochs": args.epochs} if args.epochs is not None else {}
    print(f"atlas on {platform.node()} ({os.cpu_count()} cores), table {args.table}", flush=True)
    if not args.render:
        sitting(args, args.table, overrides)
    render(read_table(args.table), args.pools, args.seeds, overrides, args.table.parent, args.page)
    left = missing_runs(read_table(args.table), args.pools, args.suites, args.seeds, overrides)
    print(f"atlas: {args.page} written; {sum(map(len, left.values()))} runs still to go", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
