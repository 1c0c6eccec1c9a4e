"""The pooling contract: broken poolings are refused for their own reason, built-ins pass."""

from __future__ import annotations

import functools
import json
import time
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

import poolbench.pools as pools
from poolbench.cli.check_verb import run_checks
from poolbench.contract import CHECKS, ContractReport, benchmark_pool_inputs, check_pool
from poolbench.core.settings import BENCHMARK_SETTINGS
from poolbench.pools.classic import GlobalAvgPool

BROKEN = Path(__file__).parent.parent / "broken_pools"
pytestmark = pytest.mark.filterwarnings("ignore:std\\(\\)")  # torch warns about the very mistake tested

# file in tests/broken_pools -> (the check that must fail, words its message must contain)
BROKEN_CASES: dict[str, tuple[str, list[str]]] = {
    "std_bessel.py": ("finite_1x1", ["NaN on a 1x1 map", "Bessel", "correction=0", "eps"]),
    "channel_adaptive_std.py": ("finite_1x1", ["NaN on a 1x1 map", "Bessel"]),
    "params_in_forward.py": ("forward_params", ["forward() created", "att.0.weight", "optimizer",
                                                "__init__"]),
    "wrong_shape.py": ("shape", ["[1, 128]", "expected [1, 64]", "catavgmax"]),
    "batch_dependent.py": ("eval_independence", ["rest of the batch", "running statistics"]),
    "no_grad_param.py": ("gradients", ["'tau'", "no gradient"]),
    "plain_tensor_attr.py": ("to_dtype_device", ["'mix'", "did not move", "register_buffer"]),
    "log_of_zero.py": ("finite_relu", ["gradient is NaN", "log"]),
    "cpu_tensor_in_forward.py": ("to_dtype_device", ["not on the expected device", "device=x.device"]),
    "inplace_input.py": ("forward_params", ["forward() changes its input in place", "ResNet",
                                            "x = x.relu()"]),
}


# Files that train correctly at the benchmark's C but waste part of the run: warned about, not refused.
WARNED_CASES: dict[str, tuple[str, list[str]]] = {
    "fixed_2048_buffer.py": ("fixed_buffer", ["'w'", "2048", "first C=32", "sliced to C", "`channels`",
                                              "C=64: 97% unused", "crashes for C > 2048"]),
}


@functools.cache
def broken_report(file_name: str) -> ContractReport:
    return check_pool(str(BROKEN / file_name), include_cost=False)


def test_every_broken_pool_file_has_a_case():
    assert sorted(p.name for p in BROKEN.glob("*.py")) == sorted({**BROKEN_CASES, **WARNED_CASES})


@pytest.mark.parametrize("file_name", sorted(BROKEN_CASES))
def test_broken_pool_is_refused_for_its_own_reason(file_name: str):
    report = broken_report(file_name)
    check, words = BROKEN_CASES[file_name]
    assert not report.ok
    result = report.result(check)
    assert result is not None and result.status == "FAIL", report.format()
    for word in words:
        assert word in result.message, result.message
    assert report.result("construct").status == "PASS"  # the original CustomPool() style is accepted


@pytest.mark.parametrize("file_name", sorted(WARNED_CASES))
def test_a_pool_that_wastes_part_of_the_run_is_warned_about_not_refused(file_name: str):
    report = broken_report(file_name)
    check, words = WARNED_CASES[file_name]
    assert report.ok, report.format()
    result = report.result(check)
    assert result is not None and result.status == "WARN", report.format()
    for word in words:
        assert word in result.message, result.message


def test_fixed_buffer_is_refused_where_the_settings_c_exceeds_its_slots():
    # At the benchmark's C (<= 1280) the 4096 probe of the shape check only warns ...
    shape = broken_report("fixed_2048_buffer.py").result("shape")
    assert shape.status == "WARN" and "4096" in shape.message and "`channels`" in shape.message
    # ... but a setting whose pool input has more channels than the 2048 slots is refused.
    report = check_pool(str(BROKEN / "fixed_2048_buffer.py"), pool_inputs=[(4096, 2, 2)], include_cost=False)
    assert not report.ok and report.result("shape").status == "FAIL"
    assert report.result("fixed_buffer").status == "FAIL"
    assert "exceeds its 2048 slots" in report.result("fixed_buffer").message


def test_one_root_cause_gives_one_failure():
    # Bessel's NaN shows on every 1x1 input; only the 1x1 check reports it, the others defer.
    report = broken_report("std_bessel.py")
    assert [r.name for r in report.failures()] == ["finite_1x1"]
    for file_name in ("batch_dependent.py", "no_grad_param.py", "plain_tensor_attr.py", "wrong_shape.py"):
        assert len(broken_report(file_name).failures()) == 1, broken_report(file_name).format()


@pytest.mark.parametrize("name", pools.names())
def test_builtin_pooling_passes(name: str, record_property):
    start = time.perf_counter()
    report = check_pool(name, include_cost=False)
    seconds = time.perf_counter() - start
    record_property("check_seconds", round(seconds, 2))
    assert report.ok, report.format()
    assert [r.name for r in report.results] == ["construct"] + [n for n, _ in CHECKS if n != "cost"] + ["global_state"]


GOOD_ZERO_ARG = '''
import torch
from torch import nn


class CustomPool(nn.Module):
    """GeM with a learnable p, written in the original task's style (no constructor arguments)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        p = self.p.clamp(min=1.0)
        return x.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
'''


def test_correct_zero_argument_custom_pool_passes(tmp_path: Path):
    path = tmp_path / "my_pool.py"
    path.write_text(GOOD_ZERO_ARG)
    report = check_pool(str(path), include_cost=False)
    assert report.ok, report.format()
    assert "no arguments" in report.result("construct").message


IN_PLACE_ON_INPUT = """
import torch
from torch import nn

class CustomPool(nn.Module):
    def forward(self, x):
        x.clamp_(min=0)
        return x.mean(dim=(2, 3))
"""

IN_PLACE_ON_ITS_OWN_TENSOR = """
import torch
from torch import nn

class CustomPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        y = x * self.p  # a tensor of its own: changing it in place is fine in training
        y.clamp_(min=0)
        return y.mean(dim=(2, 3))
"""


def test_in_place_ops_on_the_input_fail_as_in_resnet_training_and_on_its_own_tensors_pass(tmp_path: Path):
    on_input, on_own = tmp_path / "on_input.py", tmp_path / "on_own.py"
    on_input.write_text(IN_PLACE_ON_INPUT)
    on_own.write_text(IN_PLACE_ON_ITS_OWN_TENSOR)
    report = check_pool(str(on_input), include_cost=False)
    failures = report.failures()  # one root cause, one FAIL: the later checks say "not tested"
    assert len(failures) == 1 and failures[0].name == "forward_params", report.format()
    assert failures[0].message.startswith("forward() changes its input in place") and "leaf" not in report.format()
    assert report.result("gradients").message == "not tested: it fails as forward_params does"
    assert check_pool(str(on_own)).ok, check_pool(str(on_own)).format()
    # The check's premise: in a CIFAR ResNet (an in-place ReLU before the pool) training fails at
    # the first backward, and with the pooling's own tensor it trains.
    from poolbench import models
    from poolbench.pools.registry import load_file

    for path, trains in ((on_input, False), (on_own, True)):
        model = models.create("resnet8", num_classes=4, pool=load_file(str(path))())
        loss = model(torch.rand(2, 3, 16, 16)).sum()
        if trains:
            loss.backward()
        else:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward()


def test_the_input_gradient_is_still_checked_through_the_non_leaf_input():
    from poolbench.contract.subject import step

    x = torch.rand(2, 3, 4, 4)
    result = step(pools.create("gap"), x, train=True)
    assert result.input_grad is not None and result.input_grad.shape == x.shape
    seed = zlib.crc32(str(tuple(result.output.shape)).encode())  # step()'s random projection of the output
    weight = torch.randn(result.output.shape, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(result.input_grad, (weight / 16)[:, :, None, None].expand_as(x))
    assert "gradient is NaN" in broken_report("log_of_zero.py").result("finite_relu").message


def test_unknown_name_fails_construct_with_close_matches():
    report = check_pool("gemm")
    assert not report.ok
    assert [r.name for r in report.results] == ["construct"]
    assert "unknown pooling 'gemm'" in report.results[0].message and "gem" in report.results[0].message


def test_missing_file_and_missing_class_fail_construct(tmp_path: Path):
    assert "not found" in check_pool(str(tmp_path / "nope.py")).results[0].message
    path = tmp_path / "pool.py"
    path.write_text(GOOD_ZERO_ARG)
    message = check_pool(f"{path}:Other").results[0].message
    assert "no class 'Other'" in message and "CustomPool" in message


def test_constructor_error_is_a_construct_failure_not_a_crash():
    def factory(channels: int) -> nn.Module:
        raise ValueError("channels must be even")

    report = check_pool(factory)
    assert report.results[0].status == "FAIL"
    assert "channels must be even" in report.results[0].message


class _RaisingPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_a_forward_that_raises_fails_checks_without_crashing_the_checker():
    report = check_pool(_RaisingPool, include_cost=True)
    assert not report.ok
    assert "boom" in report.result("shape").message
    assert len(report.results) == 2 + len(CHECKS)  # construct, the checks, global_state


class _LazyScorePool(nn.Module):
    """Attention-weighted mean whose scoring conv infers C at the first forward."""

    def __init__(self, channels: int | None = None):
        super().__init__()
        self.score = nn.LazyConv2d(1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x).flatten(2), dim=-1)  # [B, 1, HW]
        return (x.flatten(2) * weights).sum(dim=-1)


def test_torch_lazy_modules_warn_but_pass():
    report = check_pool(_LazyScorePool, include_cost=False)
    assert report.ok, report.format()
    assert report.result("forward_params").status == "WARN"
    assert "Lazy" in report.result("forward_params").message


class _ParamEveryCallPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.w = nn.Parameter(torch.ones(x.shape[1]))  # "fixes" the size, and resets w at every call
        return self.w * x.mean(dim=(2, 3))


class _ParameterInAListPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = [nn.Parameter(torch.tensor(0.5))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix[0] * x.mean(dim=(2, 3)) + (1 - self.mix[0]) * x.amax(dim=(2, 3))


def test_parameters_recreated_in_every_forward_and_hidden_in_lists_are_refused():
    result = check_pool(_ParamEveryCallPool, include_cost=False).result("forward_params")
    assert result.status == "FAIL" and "re-creates w at every call" in result.message
    result = check_pool(_ParameterInAListPool, include_cost=False).result("hidden_params")
    assert result.status == "FAIL" and "'mix[0]'" in result.message and "ParameterList" in result.message


class _BatchNormPool(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.mean(dim=(2, 3)))


def test_batchnorm_on_a_single_value_is_reported_clearly():
    report = check_pool(_BatchNormPool, include_cost=False)
    assert report.ok, report.format()
    result = report.result("train_batch1")
    assert result.status == "WARN" and "BatchNorm" in result.message and "batch 1" in result.message


def test_run_style_check_on_one_setting():
    report = check_pool(str(BROKEN / "std_bessel.py"), pool_inputs=[(512, 1, 1)], include_cost=False)
    assert not report.ok and report.result("cost") is None
    assert report.result("finite_1x1").status == "FAIL"


def test_benchmark_pool_inputs_are_measured_on_the_benchmark_settings_models():
    assert benchmark_pool_inputs() == ((64, 8, 8), (512, 1, 1), (1280, 1, 1))  # resnet56, vgg16bn, mobilenetv2
    assert BENCHMARK_SETTINGS == ("resnet56-cifar100", "vgg16bn-cifar100", "mobilenetv2-fmnist")
    seen: list[int | None] = []

    def recording_gap(channels: int | None = None) -> torch.nn.Module:
        seen.append(channels)
        return GlobalAvgPool()

    assert check_pool(recording_gap, include_cost=False).ok  # by default, at the benchmark settings' inputs
    assert {64, 512, 1280} <= set(seen)


def test_cost_is_measured_against_gap_quickly():
    start = time.perf_counter()
    result = check_pool("gap").result("cost")
    assert time.perf_counter() - start < 10
    assert result.status == "PASS" and "x GAP" in result.message


def test_checking_leaves_the_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_pool("gem", include_cost=False)
    assert torch.equal(torch.rand(3), expected)


def test_report_dict_is_json_serialisable():
    for report in (check_pool("gap", include_cost=False), broken_report("wrong_shape.py")):
        data = json.loads(json.dumps(report.to_dict()))
        assert data["ok"] == report.ok and data["spec"] == report.spec
        assert {r["status"] for r in data["results"]} <= {"PASS", "WARN", "FAIL"}


def test_format_has_one_line_per_check_and_a_summary():
    report = broken_report("wrong_shape.py")
    lines = report.format().splitlines()
    assert len(lines) == len(report.results) + 1
    assert lines[0].startswith("PASS construct") and "REFUSED" in lines[-1]


def test_main_check_prints_reports_and_returns_exit_code(capsys):
    assert run_checks(["gap"], as_json=False) == 0
    assert run_checks(["gap", str(BROKEN / "wrong_shape.py")], as_json=False) == 1
    lines = capsys.readouterr().out.splitlines()
    check_lines = [line for line in lines if line.split(" ", 1)[0] in ("PASS", "WARN", "FAIL")]
    assert len(check_lines) == 3 * (2 + len(CHECKS))
    assert any(line.startswith("FAIL shape") for line in lines)


def test_main_check_json(capsys):
    assert run_checks(["nope_pool"], as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["reports"][0]["results"][0]["name"] == "construct"
