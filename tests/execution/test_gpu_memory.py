"""Packing runs on one GPU: the per-run memory estimate and the refusal of --jobs that cannot fit."""

import re

import pytest

from poolbench.cli import main
from poolbench.execution import memory_estimate
from poolbench.execution.memory_estimate import GIB, RunSpec, estimate_bytes, packing_problem

NEED = {"resnet56 cifar100, batch 128, amp none": 2 * GIB, "vgg16bn cifar100, batch 128, amp none": 3 * GIB}


def test_runs_that_fit_on_one_gpu_are_not_refused():
    assert packing_problem(4, [12 * GIB], NEED) is None  # 4 x 3 GiB = 12 GiB
    assert packing_problem(8, [12 * GIB, 12 * GIB], NEED) is None  # 4 a GPU


def test_runs_that_cannot_fit_are_refused_in_one_line_that_says_how_many_fit():
    problem = packing_problem(5, [12 * GIB], NEED)
    assert problem is not None and "\n" not in problem
    assert "--jobs 5 puts 5 runs on GPU 0 at up to 3.0 GiB each (vgg16bn" in problem
    assert "15.0 GiB, but it has 12.0 GiB free: use --jobs 4 or fewer" in problem


def test_the_fullest_gpu_decides():
    problem = packing_problem(4, [40 * GIB, 5 * GIB], NEED)  # 2 runs a GPU; GPU 1 holds one
    assert "on GPU 1" in problem and "use --jobs 2 or fewer" in problem
    assert "not even one run fits" in packing_problem(1, [1 * GIB], NEED)


def test_no_gpus_means_nothing_to_check():
    assert packing_problem(64, [], NEED) is None


def test_the_counted_estimate_grows_with_the_batch_and_shrinks_with_bf16():
    base = estimate_bytes(RunSpec("resnet20", 10, "cifar10", 32))
    larger = estimate_bytes(RunSpec("resnet20", 10, "cifar10", 256))
    half = estimate_bytes(RunSpec("resnet20", 10, "cifar10", 256, amp="bf16"))
    data_and_context = memory_estimate.data_bytes("cifar10") + memory_estimate.CONTEXT_BYTES
    assert data_and_context < base < larger
    assert half < larger
    # ResNet-20 saves about 2.5 MB of float32 activations per 32x32 image (~40 maps of 16x32x32
    # and their halves): 224 more images must cost between 1 and 4 MB each.
    assert 224 * 1e6 < larger - base < 224 * 4e6


def sweep(*args):
    return main(["sweep", *args])


@pytest.fixture
def fake_gpu(monkeypatch):
    """One GPU with ``free[0]`` bytes free; every run needs 3 GiB (no CUDA call is made)."""
    free = [12 * GIB]
    asked = []

    def fake_probe(specs):
        asked.append(specs)
        return {"free": list(free), "need": {spec.label: 3 * GIB for spec in specs}}

    real = memory_estimate.sweep_problem
    monkeypatch.setattr(memory_estimate, "sweep_problem",
                        lambda sweep, todo, jobs: real(sweep, todo, jobs, probe_gpus=fake_probe))
    return free, asked


def test_sweep_refuses_jobs_that_do_not_fit_before_any_run_starts(tmp_path, capsys, fake_gpu):
    out = tmp_path / "sweep"
    code = sweep("--pools", "gap,gmp", "--seeds", "1,2,3", "--jobs", "6", "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("error: ")] != []
    assert re.search(r"--jobs 6 puts 6 runs on GPU 0 .* use --jobs 4 or fewer", err)
    assert not (out / "quick").exists()  # no run folder: nothing started
    specs = fake_gpu[1][0]
    assert [(spec.arch, spec.batch_size, spec.amp) for spec in specs] == [("resnet20", 32, "none")]


def test_sweep_on_the_cpu_is_not_checked(tmp_path, capsys, fake_gpu):
    out = tmp_path / "sweep"
    assert sweep("--pools", "gap", "--seeds", "1", "--epochs", "1", "--batch-size", "512", "--image-size", "16",
                 "--device", "cpu", "--jobs", "6", "--out", str(out)) == 0, capsys.readouterr().err
    assert fake_gpu[1] == []
    assert re.search(r"done in \d+ s \([\d.]+ runs/hour\): 1 completed", capsys.readouterr().err)
