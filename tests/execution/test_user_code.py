"""A pooling file cannot change the experiment around it, hang poolbench or end it silently.

The hostile files here each do one thing a careless or hostile pooling does; each must end with
one clear line and the right exit code, and the silent ones with the same result as a
well-behaved pooling (see issue 18).
"""

from __future__ import annotations

import errno
import json
import os
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from poolbench.cli import main
from poolbench.contract import check_pool
from poolbench.core import global_state
from poolbench.core.settings import run_protocol
from poolbench.execution import isolation
from poolbench.execution.runner import build_model
from poolbench.storage.rundir import RunConfig
from poolbench.training import catalog
from poolbench.training import train as train_module
from poolbench.training.catalog import get_setting

FAST = ["--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16", "--threads", "1"]

MEAN = """
class CustomPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
"""


def pool_file(tmp_path: Path, name: str, top: str, body: str = MEAN) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text("import os, signal, sys, time\nimport torch\nfrom torch import nn\n"
                    + textwrap.dedent(top) + textwrap.dedent(body))
    return str(path)


def call(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- Global state is put back ---------------------------------------------------------------------

def test_restoring_puts_every_setting_back_and_names_it():
    # Seeds other than the 0 the block sets: a generator that an earlier test in this process left
    # freshly seeded with 0 would otherwise not change, and its change would not be named.
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)
    threads, generator = torch.get_num_threads(), torch.random.get_rng_state()
    numpy_draw, python_draw = np.random.get_state()[1][:4].copy(), random.getstate()
    with global_state.restoring("importing mine.py") as changes:
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        torch.set_num_threads(threads + 1)
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        torch.use_deterministic_algorithms(True)
    assert torch.get_num_threads() == threads and torch.get_default_dtype() == torch.float32
    assert torch.is_grad_enabled() and not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.random.get_rng_state(), generator)
    assert (np.random.get_state()[1][:4] == numpy_draw).all() and random.getstate() == python_draw
    text = "\n".join(changes)
    for what in ("torch's random generator", "numpy's", "Python's random", "thread count", "default dtype",
                 "gradient mode", "deterministic algorithms"):
        assert what in text, text
    assert f"({threads} -> {threads + 1})" in text


def test_a_constructor_keeps_its_random_draws_but_not_its_settings():
    torch.manual_seed(1)
    with global_state.restoring("constructing", random_generators=False) as changes:
        torch.rand(1)
        torch.set_default_dtype(torch.float64)
    torch.manual_seed(1)
    torch.rand(1)
    expected = torch.random.get_rng_state()
    torch.manual_seed(1)
    with global_state.restoring("constructing", random_generators=False):
        torch.rand(1)
    assert torch.equal(torch.random.get_rng_state(), expected)  # the draw stays: it is the constructor's job
    assert torch.get_default_dtype() == torch.float32 and len(changes) == 1


def run_config(pool: str, seed: int) -> RunConfig:
    setting = get_setting("quick")
    return RunConfig(setting=setting.name, arch=setting.arch, dataset=setting.dataset,
                     num_classes=catalog.num_classes(setting), pool=pool, seed=seed, protocol=run_protocol(setting, {}))


def initial_weights(pool: str, seed: int) -> dict[str, torch.Tensor]:
    model = build_model(run_config(pool, seed), torch.device("cpu"), channels_last=False, image_size=(32, 32))
    return {name: value for name, value in model.state_dict().items() if not name.startswith("pool.")}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("where", ["import", "constructor"])
def test_a_pooling_that_reseeds_gives_every_seed_the_weights_of_gap(tmp_path, where):
    reseed = "torch.manual_seed(0)\ntorch.set_num_threads(3)\nnp_state = torch.rand(5)\n"
    if where == "import":
        spec = pool_file(tmp_path, "reseeds", reseed)
    else:
        spec = pool_file(tmp_path, "reseeds", "", body="""
            class CustomPool(nn.Module):
                def __init__(self):
                    super().__init__()
                    torch.manual_seed(0)
                    torch.set_num_threads(3)

                def forward(self, x):
                    return x.mean(dim=(2, 3))
            """)
    threads = torch.get_num_threads()
    for seed in (1, 2):
        after_gap = (initial_weights("gap", seed), torch.random.get_rng_state())
        after_file = (initial_weights(spec, seed), torch.random.get_rng_state())
        assert same_weights(after_gap[0], after_file[0]), f"seed {seed}: other initial weights than gap's"
        assert torch.equal(after_gap[1], after_file[1]), "the randomness after building differs (dropout)"
        assert torch.get_num_threads() == threads
    assert not same_weights(initial_weights(spec, 1), initial_weights(spec, 2))  # the seed still decides


def test_check_warns_about_changes_it_put_back_and_fails_changes_in_forward(tmp_path):
    at_import = pool_file(tmp_path, "imports", "torch.set_default_dtype(torch.float64)\n"
                          "torch.set_grad_enabled(False)\n")
    report = check_pool(at_import, include_cost=False)
    assert report.ok, report.format()  # put back: every check runs in float32 with gradients
    warning = report.result("global_state")
    assert warning is not None and warning.status == "WARN" and "default dtype" in warning.message
    in_forward = pool_file(tmp_path, "forward", "", body="""
        class CustomPool(nn.Module):
            def forward(self, x):
                torch.set_num_threads(7)
                return x.mean(dim=(2, 3))
        """)
    report = check_pool(in_forward, include_cost=False)
    failure = report.result("global_state")
    assert not report.ok and failure is not None and failure.status == "FAIL"
    assert "thread count" in failure.message and "-> 7)" in failure.message


# --- Hangs and ended processes ----------------------------------------------------------------------

HANGS_IN_FORWARD = """
class CustomPool(nn.Module):
    def forward(self, x):
        while True:
            pass
"""
KILLS_ITSELF = """
class CustomPool(nn.Module):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forward_that_never_returns_is_a_fail_after_the_time_limit(tmp_path):
    report = isolation.check_in_child(pool_file(tmp_path, "hangs", "", HANGS_IN_FORWARD), time_limit_s=2)
    failure = report.failures()[-1]
    assert failure.name == "forward_params"
    assert failure.message.startswith("forward() or backward() did not return within 2 s")


@pytest.mark.parametrize("top, body, words", [
    ("os._exit(0)\n", MEAN, "hostile.py ended the process (exit code 0, as os._exit(0) does)"),
    ("", KILLS_ITSELF, "forward() or backward() ended the process (killed by SIGKILL)"),
], ids=["os._exit at import", "SIGKILL in forward"])
def test_a_pooling_that_ends_the_process_is_a_fail_of_check(tmp_path, capsys, top, body, words):
    code, out, err = call(capsys, "check", pool_file(tmp_path, "hostile", top, body))
    assert code == 1 and "REFUSED" in out
    assert words in out, out


def test_run_refuses_a_pooling_that_ends_the_process_and_leaves_no_folder(tmp_path, capsys):
    spec = pool_file(tmp_path, "quits", "print('TEST_METRICS: test_acc=99.99')\nos._exit(0)\n")
    for extra in ([], ["--no-check"]):
        code, out, err = call(capsys, "run", *FAST, "--pool", spec, "--output-dir", str(tmp_path / "run"), *extra)
        assert code == 2 and out == ""
        assert "ended the process (exit code 0" in error_line(err)
        assert not (tmp_path / "run").exists()


def test_check_json_stays_json_and_prints_go_to_stderr(tmp_path, capfd):
    spec = pool_file(tmp_path, "talks", "print('TEST_METRICS: test_acc=99.99')\n", body="""
        class CustomPool(nn.Module):
            def forward(self, x):
                print("TEST_METRICS: test_acc=99.99")
                return x.mean(dim=(2, 3))
        """)
    assert main(["check", "--json", spec, "gap"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out)["ok"] is True
    assert "TEST_METRICS" not in captured.out and "TEST_METRICS: test_acc=99.99" in captured.err


# --- Runs ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_hostile_pooling_gives_the_result_of_gap_and_cannot_forge_it(tmp_path, capfd):
    """Reseeding, threads and prints at import and in forward(): the same run as gap's."""
    spec = pool_file(tmp_path, "hostile", "torch.manual_seed(0)\ntorch.set_num_threads(2)\n"
                     "print('TEST_METRICS: test_acc=99.99')\n", body="""
        class CustomPool(nn.Module):
            def forward(self, x):
                print("TEST_METRICS: test_acc=99.99")
                return x.mean(dim=(2, 3))
        """)
    results = {}
    for pool in ("gap", spec):
        out_dir = tmp_path / Path(pool).stem
        assert main(["run", *FAST, "--seed", "1", "--pool", pool, "--output-dir", str(out_dir)]) == 0
        captured = capfd.readouterr()
        assert [line for line in captured.out.splitlines() if line.startswith("TEST_METRICS")] == \
            [line for line in captured.out.splitlines() if "TEST_METRICS" in line]
        assert "99.99" not in captured.out
        results[pool] = json.loads((out_dir / "result.json").read_text())
    assert results[spec]["best_test_acc"] == results["gap"]["best_test_acc"]
    restored = "\n".join(results[spec]["global_state_restored"])
    assert "random generator" in restored and "thread count" in restored


def test_a_contract_refusal_removes_the_folder_it_made(tmp_path, capsys):
    out_dir = tmp_path / "deep" / "run"
    spec = str(Path(__file__).parent.parent / "broken_pools" / "wrong_shape.py")
    code, _, err = call(capsys, "run", *FAST, "--pool", spec, "--output-dir", str(out_dir))
    assert code == 2 and "fails the contract check" in error_line(err)
    assert not (tmp_path / "deep").exists()


def test_run_output_dir_onto_a_sweep_folder_is_refused(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    code, _, err = call(capsys, "run", *FAST, "--output-dir", str(tmp_path))
    assert code == 2 and "is a sweep's folder" in error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


@pytest.mark.parametrize("flag", ["--output-dir", "--data-root", "--pool"])
def test_a_path_too_long_for_the_file_system_is_one_short_line(tmp_path, capsys, flag):
    long_path = str(tmp_path / ("a" * 10_000)) + (".py" if flag == "--pool" else "")
    code, _, err = call(capsys, "run", *FAST, flag, long_path, "--output-dir" if flag != "--output-dir" else "--seed",
                        str(tmp_path / "run") if flag != "--output-dir" else "1")
    assert code == 2 and len(error_line(err)) < 300
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_full_disk_ends_the_run_with_74_and_the_same_command_resumes(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "run"
    command = ["run", "--setting", "quick", "--epochs", "2", "--batch-size", "256", "--image-size", "16",
               "--threads", "1", "--output-dir", str(out_dir)]
    real_write, writes = train_module.atomic_write_bytes, []

    def full_after_first_checkpoint(path, data):
        writes.append(path)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, data)

    monkeypatch.setattr(train_module, "atomic_write_bytes", full_after_first_checkpoint)
    code, _, err = call(capsys, *command)
    assert code == 74, err
    line = error_line(err)
    assert "No space left on device" in line and "free space and run the same command again" in line
    assert not (out_dir / "result.json").exists() and (out_dir / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "atomic_write_bytes", real_write)
    code, out, err = call(capsys, *command)
    assert code == 0 and "TEST_METRICS" in out
    assert json.loads((out_dir / "result.json").read_text())["epochs_completed"] == 2


def test_a_model_file_that_ends_the_process_is_one_line_in_run_check_and_list(tmp_path, capsys):
    model = tmp_path / "quits.py"
    model.write_text("import os\nos._exit(3)\n\ndef net(num_classes):\n    pass\n")
    for argv in (["run", "--arch", f"{model}:net", "--dataset", "digits", "--epochs", "1",
                  "--output-dir", str(tmp_path / "run")],
                 ["check", "--settings", f"{model}:net@digits", "gap"],
                 ["list", "--settings", f"{model}:net@digits"]):
        code, _, err = call(capsys, *argv)
        assert code == 2, argv
        assert "ended the process (exit code 3, as os._exit(3) does)" in error_line(err) and f"fix {model}" in err
    assert not (tmp_path / "run").exists()
