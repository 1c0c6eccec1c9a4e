"""Where a run computes: the allocator setting every CPU run makes."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from poolbench.cli import main
from poolbench.execution import runner
from poolbench.execution.device import keep_freed_memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's; elsewhere keep_freed_memory changes nothing")
def test_kept_memory_serves_the_next_steps_tensors_without_new_pages():
    """After keep_freed_memory, step after step of 4 MiB activations reuses the same pages: a few
    page faults, not one per page of every new tensor (with glibc's defaults, about 80,000 here)."""
    assert keep_freed_memory() is True
    x = torch.randn(64, 16, 32, 32)  # a ResNet-8 activation at batch 64: 4 MiB, 1,024 pages

    def step() -> torch.Tensor:
        a = (x * 2).relu()
        b = a + 1
        return b * b

    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    new_pages = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert new_pages < 6_000  # 20 steps x 3 tensors x 1,024 pages = 61,440 if none were kept


def test_keep_freed_memory_says_whether_the_allocator_took_it():
    assert keep_freed_memory() is GLIBC


class Reached(Exception):
    """Raised by the stand-in for keep_freed_memory: the run got there."""


def test_a_cpu_run_sets_the_allocator_before_it_trains(tmp_path, monkeypatch):
    def reached() -> bool:
        raise Reached

    monkeypatch.setattr(runner, "keep_freed_memory", reached)
    args = ["run", "--setting", "quick", "--device", "cpu", "--output-dir", str(tmp_path / "run")]
    with pytest.raises(Reached):
        main(args)
    assert not (tmp_path / "run" / "config.json").exists()  # before anything of the run was written
