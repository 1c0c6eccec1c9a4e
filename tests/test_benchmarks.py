"""The benchmark scripts keep working: each runs on tiny sizes and prints its ratio line."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from poolbench import pools

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str) -> str:
    completed = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_loader_throughput_prints_a_ratio():
    out = run_benchmark("loader_throughput.py", "--images", "2000", "--measure", "1000", "--workers", "0")
    assert re.search(r"ratio DeviceLoader / DataLoader: \d+\.\dx", out)


def test_data_loading_prints_the_cache_and_fmnist_ratios(debian_fmnist):
    out = run_benchmark("data_loading.py", "--images", "70", "--repeats", "1")
    assert re.search(r"^imagefolder, 70 PNGs: from the cache [\d.]+ s, decoded [\d.]+ s, ratio [\d.]+$", out,
                     flags=re.M)
    assert re.search(r"^fmnist, Debian's 4 files: read_copy [\d.]+ s, gzip.decompress alone [\d.]+ s, ratio [\d.]+$",
                     out, flags=re.M)


def test_pool_overhead_prints_a_ratio_per_pooling():
    out = run_benchmark("pool_overhead.py", "--arch", "resnet20", "--batch-size", "8", "--repeats", "1",
                        "--pools", "gem,gem(p=4, learnable=False)")
    assert re.search(r"^gem\s+[\d.]+ ms/step\s+[\d.]+x$", out, flags=re.M)
    assert re.search(r"^gem\(p=4, learnable=False\)\s+[\d.]+ ms/step\s+[\d.]+x$", out, flags=re.M)


def test_pool_overhead_over_rounds_prints_the_median_ratio_and_its_range():
    out = run_benchmark("pool_overhead.py", "--arch", "resnet20", "--batch-size", "8", "--repeats", "1",
                        "--rounds", "2", "--pools", "gem")
    assert re.search(r"^gem\s+[\d.]+ ms/step\s+[\d.]+x  \([\d.]+x-[\d.]+x\)$", out, flags=re.M)


def test_cpu_step_measures_both_layouts_on_the_same_numbers():
    """benchmarks/cpu_step.py's measurement, in this process: the same steps from the same weights in
    NCHW and channels-last end at the same loss, to float32 rounding."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cpu_step
    finally:
        sys.path.remove(str(BENCHMARKS))
    threads = __import__("torch").get_num_threads()
    nchw = cpu_step.train_steps("contiguous", False, 4, 2, threads)
    nhwc = cpu_step.train_steps("channels_last", False, 4, 2, threads)
    assert nchw["step_ms"] > 0 and nhwc["step_ms"] > 0 and nchw["first_step_s"] > 0
    assert nchw["loss"] == pytest.approx(nhwc["loss"], rel=1e-4)
    assert 0.5 < nchw["loss"] < 3.0  # cross-entropy of 4 classes near log(4) after two steps


def test_cpu_step_floor_counts_the_real_suites_arithmetic():
    """The floor's pieces: ResNet-8's FLOPs (a training step is about three forwards at batch 64), the
    real suite's total from its protocol and data set, and a positive reference rate."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import cpu_step
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    threads = torch.get_num_threads()
    try:
        gflop = cpu_step.resnet8_gflop(10)
        assert cpu_step.dense_conv_gflops(1, channels=16, size=8, repeats=2) > 0
    finally:
        torch.set_num_threads(threads)
    forward_at_64 = 64 * gflop["test_image"]
    assert 2.5 * forward_at_64 < gflop["step"] < 3.5 * forward_at_64  # backward: about two forwards
    # 25 runs x (5 epochs x 79 steps of 64 from 5,000 images + 5 x 10,000 test images)
    assert cpu_step.real_suite_gflop(1.0, 0.0) == 25 * 5 * 79
    assert cpu_step.real_suite_gflop(0.0, 1.0) == 25 * 5 * 10_000


def test_eval_batch_times_each_size_against_1000_and_each_gives_the_same_numbers(capsys):
    """benchmarks/eval_batch.py in this process, on a few hundred images."""
    import torch

    sys.path.insert(0, str(BENCHMARKS))
    threads = torch.get_num_threads()
    try:
        import eval_batch

        eval_batch.main(["--images", "300", "--sizes", "64,128", "--rounds", "1"])
    finally:
        sys.path.remove(str(BENCHMARKS))
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "the runs' CPU test batch: 128" in out
    assert re.search(r"^\s+1000\s+[\d.]+\s+1\.00  \(reference: loss [\d.]+, accuracy [\d.]+%\)$", out, flags=re.M)
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)  (True|False)$", out, flags=re.M)
    assert [(size, same) for size, _, _, same in rows] == [("64", "True"), ("128", "True")]
    assert all(float(seconds) > 0 for _, seconds, _, _ in rows)


@pytest.fixture(scope="module")
def gpu_session(tmp_path_factory) -> Path:
    """benchmarks/gpu_session.sh run once on the CPU on tiny sizes (`--device cpu --smoke`): its
    results folder. Its step 5 is `epoch_time.py --device cpu --smoke --json`, whose output the
    epoch-time test reads rather than running the benchmark a second time."""
    out = tmp_path_factory.mktemp("gpu_session") / "out"
    completed = subprocess.run(["bash", str(BENCHMARKS / "gpu_session.sh"), "--device", "cpu", "--smoke"],
                               cwd=BENCHMARKS.parent, env={**os.environ, "OUT": str(out)}, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("gpu_session")
def test_epoch_time_smoke_prints_projections_and_ratios_to_the_reference(gpu_session):
    out = (gpu_session / "epoch_time.txt").read_text()
    assert out.rstrip().endswith("exit 0"), (gpu_session / "epoch_time.err").read_text()
    for pipeline in ("reference", "default", "fastest"):
        assert re.search(rf"^resnet56-cifar100\s+{pipeline}\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+s\s+[\d.]+x$", out, flags=re.M)
    packed = r"^resnet56-cifar100\s+packed 2 x fastest: \d+ images/s in all, [\d.]+x one run's$"
    assert re.search(packed, out, flags=re.M)
    assert re.search(r"one ResNet-56 run, default\s*:\s+\d+ s", out)
    assert re.search(r"12-run grid, fastest\s+2 at a time: .*runs/hour\)", out)
    assert re.search(r"ratio reference / default: resnet56-cifar100 [\d.]+x", out)
    measured = json.loads((gpu_session / "epoch_time.json").read_text())["results"]["resnet56-cifar100"]
    assert all(measured[p]["epoch_s"] > measured[p]["eval_s"] > 0 for p in ("reference", "default", "fastest"))
    assert measured["packed"]["jobs"] == 2 and measured["packed"]["aggregate_images_per_s"] > 0


@pytest.mark.slow
@pytest.mark.xdist_group("gpu_session")
def test_the_gpu_session_script_runs_every_step_on_the_cpu(gpu_session):
    out = gpu_session
    assert "resnet56 cifar100, batch 128, amp none" in (out / "gpu_memory.txt").read_text()
    bench = (out / "epoch_time.txt").read_text()
    assert "ratio reference / default" in bench and bench.rstrip().endswith("exit 0")
    run = (out / "run.out").read_text()
    assert re.search(r"^TEST_METRICS: test_acc=[\d.]+$", run, flags=re.M), (out / "run.err").read_text()
    result = json.loads((out / "run_result.json").read_text())
    assert result["status"] == "completed" and result["compile"] == "compiled"  # torchvision read the files
    sweep = (out / "diag_sweep.txt").read_text()
    assert re.search(r"done in \d+ s \([\d.]+ runs/hour\): 4 completed", sweep), sweep
    report = (out / "diag_report.md").read_text()
    assert f"Δ vs {pools.OWN_POOLING}" in report and "| gap" in report
    with tarfile.open(out / "diag_sweep.tgz") as archive:
        names = archive.getnames()
    assert sum(name.endswith("result.json") for name in names) == 4
    assert not any(name.endswith("checkpoint.pt") for name in names)


def _write_runs(root: Path, scores: dict[str, dict[str, list[float]]]) -> None:
    """Completed run folders (result.json only) with the given best test accuracies per seed."""
    for setting, by_pool in scores.items():
        for pool, values in by_pool.items():
            for seed, value in enumerate(values, start=1):
                folder = root / setting / pool / f"seed{seed}"
                folder.mkdir(parents=True)
                (folder / "result.json").write_text(json.dumps(
                    {"status": "completed", "best_test_acc": value, "epochs": 5, "epochs_completed": 5}))


def test_real_vs_fingerprint_ranks_the_real_order_against_the_fingerprint(tmp_path):
    # Mean side: gap 90, gmp 40, gem 91, avgmax 80; max side: gap 40, gmp 94, gem 79, avgmax 95.
    diagnostics = {"diag-majority": {"gap": [99, 99], "gmp": [44, 44], "gem": [99, 100], "avgmax": [90, 90]},
                   "diag-count": {"gap": [81, 81], "gmp": [36, 36], "gem": [82, 83], "avgmax": [70, 70]},
                   "diag-brightest": {"gap": [40, 40], "gmp": [94, 94], "gem": [79, 79], "avgmax": [95, 95]}}
    real = {"resnet8-fmnist-5k": {"gap": [79, 79.5], "gmp": [74, 75], "gem": [81, 81.5], "avgmax": [81.5, 82]}}
    _write_runs(tmp_path / "diag", diagnostics)
    _write_runs(tmp_path / "real", real)
    out = run_benchmark("real_vs_fingerprint.py", "--diagnostics", str(tmp_path / "diag"),
                        "--real", str(tmp_path / "real"))
    assert "resnet8-fmnist-5k (4 poolings in both sweeps)" in out
    # Real order avgmax > gem > gap > gmp; weaker side avgmax 80, gem 79, gap 40, gmp 40 (a tie).
    assert re.search(r"avgmax\s+81\.75\s+\S+\s+80\.00\s+95\.00\s+80\.00", out)
    # Of the 24 orderings of 4 values, 4 reach |rho| >= 0.95 (the gap-gmp tie doubles each): p = 4/24.
    assert "Spearman rho(real, weaker side) = +0.95 (p = 0.167, n = 4)" in out
    assert "Spearman rho(real, lean)" in out


def _atlas():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import atlas
    finally:
        sys.path.remove(str(BENCHMARKS))
    return atlas


def _atlas_row(atlas, setting: str, pool: str, seed: int, best: float | None, status: str = "completed",
               **protocol: object) -> dict[str, str]:
    from poolbench.core.settings import SETTINGS, run_protocol
    from poolbench.render.export import PROTOCOL_FIELDS, RUN_COLUMNS

    row = dict.fromkeys(RUN_COLUMNS, "")
    expected = run_protocol(SETTINGS[setting], protocol)
    row.update({name: atlas._cell(getattr(expected, name)) for name in PROTOCOL_FIELDS})
    row.update(setting=setting, pool=pool, seed=str(seed), status=status, best_test_acc="" if best is None else
               str(best), device="cpu", host="here", torch="2.x")
    return row


def test_the_atlas_page_is_computed_from_the_table_by_the_reports_rules(tmp_path):
    atlas = _atlas()
    # accuracies: task -> pool -> (seed 1, seed 2); diag-majority and diag-count favour mean, diag-brightest max
    accuracy = {"diag-majority": {"gap": (80, 82), "gmp": (30, 32), "gem": (70, 74)},
                "diag-count": {"gap": (60, 62), "gmp": (20, 22), "gem": (50, 54)},
                "diag-brightest": {"gap": (30, 30), "gmp": (90, 94), "gem": (60, 64)},
                "resnet8-fmnist-5k": {"gap": (70, 72), "gmp": (68, 69), "gem": (71, 74)}}
    table = [_atlas_row(atlas, task, pool, seed, values[seed - 1])
             for task, pools in accuracy.items() for pool, values in pools.items() for seed in (1, 2)]
    table.append(_atlas_row(atlas, "diag-count", "gem", 3, 99.0, epochs=1))  # another protocol: never counted
    table += [_atlas_row(atlas, task, "lse", 1, None, status="diverged") for task in accuracy]
    text = atlas.render(table, ["gap", "gmp", "gem", "lse"], [1, 2], {}, tmp_path / "atlas", tmp_path / "atlas.md")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    gem = rows["gem"]
    # mean side per seed: (70+50)/2 = 60 and (74+54)/2 = 64 -> 62 ± sd(60, 64) = 2.8
    assert gem[4] == "62.0 ± 2.8" and gem[5] == "62.0 ± 2.8"
    assert rows["gap"][6] == "0.00" and rows["gmp"][6] == "1.00"  # the lean's two anchors
    # real: gem - gap paired by seed = (+1, +2): mean +1.5
    assert gem[8].startswith("+1.50 [")
    summary = next(line for line in text.splitlines() if line.startswith("**Real suite"))
    # two seeds: gem (+1.5) and gmp (-2.5) are compared, neither beyond gap after Holm's correction
    assert "above gap after Holm's correction (p < 0.05): none; below it: none; 2 of the 2 compared" in summary
    assert "from -2.50 (`gmp`) to +1.50 (`gem`) points" in summary
    # real means gap 71, gmp 68.5, gem 72.5 against max sides 30, 92, 62 (lse has neither): ranks
    # (2, 1, 3) against (1, 3, 2), so rho = 1 - 6 * (1 + 4 + 1) / (3 * 8) = -0.5
    assert "over the 3 poolings, Spearman's rank correlation of the real-suite accuracy with the max side ρ = -0.50" \
        in text
    assert "diverged on diag-brightest (seed 1)" in rows["lse"][-1] and "seeds missing (1 of 2" in rows["lse"][-1]
    assert "at chance" not in rows["gap"][-1]
    assert (tmp_path / "atlas" / "atlas.png").stat().st_size > 1000


def test_the_atlas_summary_names_the_poolings_the_paired_tests_put_above_and_below_gap():
    from poolbench.analysis.paired import holm_adjust, paired

    atlas = _atlas()
    gap = {seed: 70.0 + seed % 2 for seed in range(1, 6)}
    differences = {"good": paired({s: v + 3 + 0.1 * s for s, v in gap.items()}, gap),
                   "bad": paired({s: v - 4 - 0.1 * s for s, v in gap.items()}, gap),
                   "same": paired({s: v + (0.5 if s % 2 else -0.5) for s, v in gap.items()}, gap),
                   "one seed": paired({1: 90.0}, gap)}
    holm_adjust(list(differences.values()))
    summary = atlas.real_summary(differences, "resnet8-fmnist-5k")
    sides = {"gap": ((80.0, 1.0), (30.0, 1.0)), "gmp": ((30.0, 1.0), (90.0, 1.0)),
             "gem": ((60.0, 1.0), (60.0, 1.0)), "lse": ((40.0, 1.0), (85.0, 1.0))}
    lean = {"gap": 0.0, "gmp": 1.0, "gem": 0.5, "lse": 0.8}
    correlation = atlas.fingerprint_vs_real(sides, lean, {"gap": 70.0, "gmp": 75.0, "gem": 72.0, "lse": 74.0})
    assert "over the 4 poolings" in correlation
    assert "max side ρ = +1.00" in correlation and "mean side ρ = -1.00" in correlation
    assert "lean ρ = +1.00" in correlation
    assert "(p < 0.05): `good` (+3.30); below it: `bad` (-4.30); 1 of the 3 compared cannot be told" in summary
    assert "from -4.30 (`bad`) to +3.30 (`good`) points" in summary


def test_an_atlas_sitting_sweeps_only_the_runs_the_table_lacks():
    atlas = _atlas()
    tasks = ["diag-majority", "diag-count", "diag-brightest"]
    # seed 1 finished everywhere; seed 2: gap finished on diag-majority only, gem diverged on diag-count
    table = [_atlas_row(atlas, task, pool, 1, 50.0) for task in tasks for pool in ("gap", "gem")]
    table += [_atlas_row(atlas, "diag-majority", "gap", 2, 50.0),
              _atlas_row(atlas, "diag-count", "gem", 2, None, status="diverged")]
    todo = atlas.missing_runs(table, ["gap", "gem"], ["diagnostics"], [1, 2], {})["diagnostics"]
    grids = atlas.grids(todo)
    assert grids == [(2, ["diag-majority"], ["gem"]), (2, ["diag-count"], ["gap"]),
                     (2, ["diag-brightest"], ["gap", "gem"])]
    # every grid's cells are missing, and together they are every missing run, each once
    cells = [(setting, pool, seed) for seed, settings, pools in grids for setting in settings for pool in pools]
    assert sorted(cells) == sorted(todo) and len(cells) == len(set(cells)) == 4


@pytest.mark.slow
def test_an_atlas_sitting_adds_its_runs_to_the_table_and_the_next_one_resumes_from_it(tmp_path):
    args = ["--pools", "gap", "--seeds", "1", "--suites", "diagnostics", "--epochs", "1", "--minutes", "5",
            "--table", str(tmp_path / "runs.csv"), "--page", str(tmp_path / "atlas.md"), "--work", str(tmp_path / "w")]
    out = run_benchmark("atlas.py", *args)
    assert "atlas: 3 runs to go (diagnostics 3)" in out and "0 runs still to go" in out
    rows = list(csv.DictReader(open(tmp_path / "runs.csv")))
    assert sorted(r["setting"] for r in rows) == ["diag-brightest", "diag-count", "diag-majority"]
    assert all(r["status"] == "completed" and r["epochs"] == "1" for r in rows)
    # the work folder lost: the table alone says nothing is left
    shutil.rmtree(tmp_path / "w")
    out = run_benchmark("atlas.py", *args)
    assert "atlas: 0 runs to go" in out and not (tmp_path / "w").exists()
    assert "| gap | " in (tmp_path / "atlas.md").read_text()


@pytest.mark.slow
def test_sweep_workers_times_both_ways_and_prints_the_ratio_the_machine_and_the_real_suite(debian_fmnist):
    out = run_benchmark("sweep_workers.py", "--settings", "diag-majority", "--pools", "gap", "--seeds", "1",
                        "--epochs", "1", "--jobs", "1", "--image-size", "16", "--real-pools", "gap",
                        "--real-seeds", "1", "--real-epochs", "1", "--data-root", str(debian_fmnist))
    assert re.search(r"^machine: .+, \d+ cores; ", out, flags=re.M)
    assert re.search(r"^process per run: +1 runs in +[\d.]+ s", out, flags=re.M)
    assert re.search(r"^worker processes: +1 runs in +[\d.]+ s", out, flags=re.M)
    assert re.search(r"^ratio workers / process per run: \d+\.\d\d \(goal <= 0\.75: (met|not met)\)$", out, flags=re.M)
    assert re.search(r"^real suite: poolbench sweep --suite real --pools gap --seeds 1 --jobs 1 --epochs 1 ", out,
                     flags=re.M)
    assert re.search(r"^real suite: 1 runs in +[\d.]+ s \([\d.]+ s a run; a subset: the goal is for the whole suite\)$",
                     out, flags=re.M)
    assert "metrics.jsonl identical both ways (wall time aside): 1 of 1 runs" in out


@pytest.mark.slow
def test_suite_processes_records_each_process_the_tests_start():
    # the chosen test starts one `python -c` process (poolbench imported where fcntl is missing)
    out = run_benchmark("suite_processes.py", "tests/execution/test_runs.py", "-k",
                        "imports_and_locks_without_fcntl", "-n", "0")
    assert re.search(r": 1 passed, \d+ deselected", out)
    assert re.search(r"^wall \d+ s; CPU of pytest and everything it started: \d+ s$", out, flags=re.M)
    assert re.search(r"^2 Python processes recorded, \d+ s of CPU \(\d+%\):$", out, flags=re.M)
    assert re.search(r"^ +[\d.]+ s +1 x +[\d.]+ s  pytest$", out, flags=re.M)
    assert re.search(r"^ +[\d.]+ s +1 x +[\d.]+ s  python -c ", out, flags=re.M)
    # per test: its CPU with its children's, by size, and the costliest (here the one test)
    assert re.search(r"^1 tests, \d+ s of CPU with what they started:$", out, flags=re.M)
    sizes = re.findall(r"^ +([\d.]+) s +(\d+) tests of (under 1 s|1 to 5 s|5 s or more)$", out, flags=re.M)
    assert [name for _, _, name in sizes] == ["under 1 s", "1 to 5 s", "5 s or more"]
    assert sum(int(count) for _, count, _ in sizes) == 1
    child_cpu = float(re.search(r"^ +([\d.]+) s +1 x +[\d.]+ s  python -c ", out, flags=re.M).group(1))
    test = "tests/execution/test_runs.py::test_poolbench_imports_and_locks_without_fcntl"
    test_cpu = re.search(rf"^ +([\d.]+) s  {re.escape(test)}$", out, flags=re.M)
    assert test_cpu and float(test_cpu.group(1)) >= child_cpu - 0.1  # the child it waited for is in its CPU
