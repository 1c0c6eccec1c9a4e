"""--compile: compiled once per mode, the smaller last batch never recompiles, the protocol is kept,
and a compilation that cannot work falls back with one warning line.

Dynamo's guards and recompilations do not depend on the code-generating backend, so these tests
trace with the ``eager`` backend (seconds) instead of ``inductor`` (a C++ compiler, minutes).
"""

import json

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from poolbench.cli import main
from poolbench.core.settings import Protocol
from poolbench.data import DeviceLoader
from poolbench.execution.sweep_runner import run_arguments
from poolbench.storage.sweepdir import load_sweep
from poolbench.training.compile import BACKEND_ENV, CompiledForward
from poolbench.training.train import fit

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def loaders(n_train=20, n_test=12):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_train + n_test, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n_train + n_test) % 4
    options = dict(mean=MEAN, std=STD, channels_last=True)
    train = DeviceLoader(images[:n_train], labels[:n_train], 8, train=True, seed=1, **options)  # 8, 8, 4
    test = DeviceLoader(images[n_train:], labels[n_train:], 1000, train=False, **options)
    return train, test


def train(epochs, forward_for=None):
    model = tiny_cnn()
    forward = forward_for(model) if forward_for else None
    graphs_after_epoch = []

    def on_epoch(record, history):
        graphs_after_epoch.append(counters["stats"]["unique_graphs"])

    history = fit(model, *loaders(), Protocol(epochs=epochs, batch_size=8, lr=0.05), forward=forward,
                  on_epoch=on_epoch)
    return history, forward, graphs_after_epoch


def test_the_last_smaller_batch_does_not_recompile_after_the_first_epoch():
    torch._dynamo.reset()
    counters.clear()
    _, forward, graphs = train(3, lambda model: CompiledForward(model, torch.device("cpu"), backend="eager"))
    assert graphs[0] >= 2  # a train graph and an eval graph
    assert graphs[1] == graphs[2] == graphs[0]
    assert forward.compiled_sizes == {True: 8, False: 12}
    # per epoch: 2 full train batches and the test batch compiled, the last train batch (4) eager
    assert forward.calls == {"compiled": 3 * 3, "eager": 3 * 1}
    assert forward.compiled_as == "compiled"


def test_compiled_training_is_the_same_training():
    torch._dynamo.reset()
    eager, _, _ = train(2)
    compiled, _, _ = train(2, lambda model: CompiledForward(model, torch.device("cpu"), backend="eager"))
    assert [r.train_loss for r in compiled] == pytest.approx([r.train_loss for r in eager], rel=1e-5)
    assert [r.test_acc for r in compiled] == [r.test_acc for r in eager]


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no C++ compiler here\nsecond line of a long message")


def test_a_compilation_that_cannot_work_falls_back_with_one_warning():
    torch._dynamo.reset()
    warnings = []
    eager, _, _ = train(2)
    compiled, forward, _ = train(2, lambda model: CompiledForward(model, torch.device("cpu"),
                                                                   backend=failing_backend,
                                                                   warn=warnings.append))
    assert len(warnings) == 1
    assert "no C++ compiler here" in warnings[0] and "second line" not in warnings[0]
    assert forward.compiled_as.startswith("uncompiled: ") and forward.calls["compiled"] == 0
    assert [r.train_loss for r in compiled] == pytest.approx([r.train_loss for r in eager], rel=1e-6)


def test_run_compile_is_part_of_the_run_config(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "eager")
    torch._dynamo.reset()
    out_dir = tmp_path / "run"
    args = ["run", "--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16",
            "--output-dir", str(out_dir)]
    assert main([*args, "--compile"]) == 0, capfd.readouterr().err
    assert json.loads((out_dir / "config.json").read_text())["config"]["compile"] is True
    assert json.loads((out_dir / "result.json").read_text())["compile"] == "compiled"
    capfd.readouterr()
    assert main(args) == 2
    assert "compile" in capfd.readouterr().err  # an uncompiled run never resumes a compiled one


def test_run_compile_falls_back_with_one_warning_line(tmp_path, capfd, monkeypatch):
    torch._dynamo.reset()
    torch._dynamo.register_backend(failing_backend, name="poolbench_test_failing")
    monkeypatch.setenv(BACKEND_ENV, "poolbench_test_failing")
    out_dir = tmp_path / "run"
    code = main(["run", "--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16",
                 "--compile", "--output-dir", str(out_dir)])
    err = capfd.readouterr().err
    assert code == 0, err
    assert [line for line in err.splitlines() if "warning" in line.lower()] == [
        line for line in err.splitlines() if line.startswith("warning: --compile: ")]
    assert len([line for line in err.splitlines() if line.startswith("warning: --compile: ")]) == 1
    assert json.loads((out_dir / "result.json").read_text())["compile"].startswith("uncompiled: ")


def test_sweep_passes_compile_to_its_runs_and_records_it(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--pools", "gap", "--seeds", "1", "--compile", "--out", str(out), "--dry-run"]) == 0
    sweep = load_sweep(out)
    assert sweep.options["compile"] is True
    assert json.loads((out / "sweep.json").read_text())["options"]["compile"] is True
    assert "--compile" in run_arguments(sweep, sweep.runs()[0])
