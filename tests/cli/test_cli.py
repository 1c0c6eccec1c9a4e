"""`poolbench run`, `check` and `list` end to end, as a user calls them."""

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from poolbench.cli import main

BROKEN = Path(__file__).parent.parent / "broken_pools"
METRICS_LINE = re.compile(
    r"^TRAIN_METRICS: epoch=(\d+) train_loss=\d+\.\d{4} train_acc=\d+\.\d{2} "
    r"test_loss=\d+\.\d{4} test_acc=(\d+\.\d{2}) lr=(\d+\.\d{6})$")

# The original task's pooling file: a class CustomPool built with no arguments.
ORIGINAL_CUSTOM_POOL = textwrap.dedent("""
    import torch
    import torch.nn as nn

    class CustomPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.ones(1) * 3)

        def forward(self, x):
            x = x.clamp(min=1e-6).pow(self.p.clamp(min=1))
            return x.mean(dim=(2, 3)).pow(1.0 / self.p.clamp(min=1))
""")


def run(capsys, *args):
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def default_quick_run(tmp_path_factory) -> tuple[Path, int, str, str]:
    """`poolbench run --setting quick` with the embedded defaults (10 epochs, lr 0.01), trained once
    for the tests below: its folder, exit code, stdout and stderr."""
    out_dir = tmp_path_factory.mktemp("quick") / "run"
    with pytest.MonkeyPatch.context() as patch:  # capsys is per test: capture this call's output here
        out, err = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = main(["run", "--setting", "quick", "--output-dir", str(out_dir)])
    return out_dir, code, out.getvalue(), err.getvalue()


@pytest.mark.slow
@pytest.mark.xdist_group("default_quick_run")
def test_quick_run_prints_the_original_lines_and_writes_the_run_folder(default_quick_run, capsys):
    out_dir, code, out, err = default_quick_run
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 11
    epochs = [METRICS_LINE.match(line) for line in lines[:10]]
    assert all(epochs), lines
    # lr printed after epoch e of a cosine schedule from 0.01 to 0 over 10 epochs
    for match in epochs:
        epoch = int(match.group(1))
        assert float(match.group(3)) == pytest.approx(0.005 * (1 + math.cos(math.pi * epoch / 10)), abs=1e-6)
    best = max(float(m.group(2)) for m in epochs)
    assert lines[10] == f"TEST_METRICS: test_acc={best:.2f}"

    result = json.loads((out_dir / "result.json").read_text())
    assert result["status"] == "completed"
    assert f"{result['best_test_acc']:.2f}" == f"{best:.2f}"
    assert result["epochs_completed"] == 10 and result["pool_input_shape"] == [64, 8, 8]
    assert result["num_params"] == 272_474 and result["device"] == "cpu"
    for key in ("best_epoch", "final_test_acc", "wall_time_s", "versions"):
        assert key in result
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 11))
    config = json.loads((out_dir / "config.json").read_text())
    assert config["config"]["protocol"]["epochs"] == 10 and config["config"]["pool"] == "gap"

    # The same command again does not train again: it reports the finished result.
    mtimes = {p: p.stat().st_mtime_ns for p in out_dir.iterdir() if p.suffix in (".json", ".jsonl", ".pt")}
    code, out, err = run(capsys, "--setting", "quick", "--output-dir", str(out_dir))
    assert code == 0 and out.strip() == lines[10] and "not run again" in err
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing was written again


def test_a_zero_argument_custom_pool_file_from_the_original_task(tmp_path, capsys):
    pool_file = tmp_path / "custom_pool.py"
    pool_file.write_text(ORIGINAL_CUSTOM_POOL)
    code, out, err = run(capsys, "--setting", "quick", "--epochs", "1", "--image-size", "16", "--pool", str(pool_file),
                         "--output-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("TEST_METRICS: test_acc=")
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["pool"] == str(pool_file) and len(config["pool_sha256"]) == 64


def test_original_flags_on_fashion_mnist_files(fmnist_root, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "--arch", "mobilenetv2", "--dataset", "fmnist",
                         "--data-root", str(fmnist_root),
                         "--epochs", "2", "--batch-size", "4", "--lr", "0.1", "--momentum", "0.9",
                         "--weight-decay", "5e-4", "--seed", "42", "--output-dir", str(out_dir))
    assert code == 0, err
    assert [int(METRICS_LINE.match(line).group(1)) for line in out.splitlines()[:2]] == [1, 2]
    result = json.loads((out_dir / "result.json").read_text())
    assert result["setting"] == "mobilenetv2-fmnist"
    assert result["pool_input_shape"] == [1280, 1, 1] and result["num_params"] == 2_236_682


def test_missing_data_set_is_one_clear_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, "--setting", "resnet56-cifar100", "--data-root", str(tmp_path / "none"),
                         "--no-download", "--output-dir", str(tmp_path / "run"))
    assert code == 2 and out == ""
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "cifar100" in error_lines[0].lower() and "cifar-100-python" in error_lines[0]
    assert "Traceback" not in err


def test_a_run_driven_to_divergence_is_recorded_as_diverged(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "--setting", "quick", "--lr", "1e6", "--epochs", "2",
                         "--output-dir", str(out_dir))
    assert code == 3
    assert "TEST_METRICS" not in out
    assert "diverged" in err
    result = json.loads((out_dir / "result.json").read_text())
    assert result["status"] == "diverged"
    assert result["diverged_at"]["epoch"] == 1 and result["diverged_at"]["step"] >= 1
    assert result["best_test_acc"] is None


def test_a_broken_pooling_is_refused_before_any_data_is_needed(tmp_path, capsys):
    code, out, err = run(capsys, "--setting", "vgg16bn-cifar100", "--pool", str(BROKEN / "std_bessel.py"),
                         "--data-root", str(tmp_path / "no-data-here"), "--no-download",
                         "--output-dir", str(tmp_path / "run"))
    assert code == 2
    assert "finite_1x1" in err and "contract" in err
    assert "cifar-100-python" not in err  # refused before the data was looked for


def test_unknown_pool_name_lists_close_matches(tmp_path, capsys):
    code, _, err = run(capsys, "--setting", "quick", "--pool", "gemm", "--output-dir", str(tmp_path / "r"))
    assert code == 2 and "did you mean" in err and "gem" in err


def test_another_config_in_the_same_folder_is_refused(tmp_path, capsys):
    out_dir = str(tmp_path / "run")
    assert run(capsys, "--setting", "quick", "--epochs", "1", "--image-size", "16", "--output-dir", out_dir)[0] == 0
    code, _, err = run(capsys, "--setting", "quick", "--epochs", "1", "--image-size", "16", "--pool", "gmp",
                       "--output-dir", out_dir)
    assert code == 2 and "another configuration" in err and "pool" in err


def test_check_verb_exit_codes(capsys):
    assert main(["check", "gem"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["check", str(BROKEN / "std_bessel.py"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False


def test_list_shows_settings_with_pool_input_shapes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"resnet56-cifar100 .* 64x8x8", out)
    assert re.search(r"vgg16bn-cifar100 .* 512x1x1", out)
    assert re.search(r"mobilenetv2-fmnist .* 1280x1x1", out)
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "gem" in listing["pools"] and "digits" in listing["datasets"] and "resnet110" in listing["archs"]


def test_float16_on_the_cpu_is_refused_before_anything_is_written(tmp_path, capsys):
    code, _, err = run(capsys, "--setting", "quick", "--epochs", "1", "--amp", "fp16", "--device", "cpu",
                       "--output-dir", str(tmp_path / "run"))
    assert code == 2 and "--amp fp16 needs a CUDA device" in err and "bf16" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("amp", ["bf16"])
def test_mixed_precision_runs_on_the_cpu_and_is_part_of_the_run_config(amp, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16",
                         "--amp", amp, "--output-dir", str(out_dir))
    assert code == 0, err
    assert json.loads((out_dir / "config.json").read_text())["config"]["amp"] == amp
    code, _, err = run(capsys, "--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16",
                       "--output-dir", str(out_dir))
    assert code == 2 and "amp" in err  # a float32 run never resumes a mixed-precision one


def test_the_vgg_setting_on_cifar100_files(cifar100_root, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "--setting", "vgg16bn-cifar100", "--pool", "gem", "--data-root", str(cifar100_root),
                         "--epochs", "1", "--batch-size", "8", "--output-dir", str(out_dir))
    assert code == 0, err
    assert METRICS_LINE.match(out.splitlines()[0])
    result = json.loads((out_dir / "result.json").read_text())
    assert result["num_params"] == 15_299_748 + 1  # the model and GeM's p
    assert result["pool_input_shape"] == [512, 1, 1]


@pytest.mark.slow
@pytest.mark.xdist_group("default_quick_run")
def test_the_embedded_default_reaches_90_percent_with_gap(default_quick_run):
    _, code, out, err = default_quick_run
    assert code == 0, err
    best = float(out.strip().splitlines()[-1].removeprefix("TEST_METRICS: test_acc="))
    assert best >= 90.0


def test_a_tensor_that_does_not_follow_to_is_a_warning_in_a_cpu_run_and_a_fail_in_check(tmp_path, capsys):
    pool = str(Path(__file__).parent.parent / "broken_pools" / "plain_tensor_attr.py")
    assert main(["check", pool]) == 1  # it breaks on a GPU: check refuses it
    capsys.readouterr()
    code, out, err = run(capsys, "--setting", "quick", "--pool", pool, "--epochs", "1", "--image-size", "16",
                         "--device", "cpu",
                         "--output-dir", str(tmp_path / "run"))
    assert code == 0, err  # a CPU run computes correctly with it: refuse what wastes the run, warn the rest
    assert "WARN to_dtype_device:" in err and "harmless in this CPU run; it fails on a GPU" in err
    assert "TEST_METRICS" in out


# --- A huge number anywhere: refused in one short line ---------------------------------------------

HUGE = "1" + "0" * 10_000  # more digits than Python's int() reads (4300)
LONG = "1" + "0" * 4_000  # an int Python reads, far too long to echo


@pytest.mark.parametrize("args", [
    ["--seed", HUGE], ["--epochs", HUGE], ["--image-size", HUGE], ["--threads", HUGE],
], ids=["seed", "epochs", "image-size", "threads"])
def test_a_number_argparse_cannot_read_is_one_short_line(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--setting", "quick", *args, "--output-dir", str(tmp_path / "r")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2 and f"argument {args[0]}: invalid int value" in error, error
    assert "(10,001 characters)" in error and len(error) < 200, error
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, words", [
    (["--seed", LONG], "--seed 1000"),
    (["--seed", "-" + LONG], "--seed -1000"),
    (["--image-size", LONG], "image size must be from 8 to 1024 pixels"),
    (["--epochs", "-" + LONG], "epochs must be >= 1"),
    (["--batch-size", "-" + LONG], "batch size must be >= 1"),
    (["--threads", "-" + LONG], "--threads -1000"),
    (["--num-classes", LONG], "the run asks for 1000"),
    (["--pool", f"gem(p={HUGE})"], "a number has more digits than Python reads"),
    (["--pool", f"gem(p={LONG})"], "gem: p must be a finite number"),
    (["--pool", f"gem(p=1e{HUGE})"], "is not a literal"),
    (["--pool", f"topk(k={HUGE})"], "a number has more digits than Python reads"),
    (["--pool", f"topk(k={HUGE}.5)"], "is not a literal"),
    (["--pool", f"simpool(num_heads={LONG})"], "num_heads must be a divisor"),
    (["--pool", f"gem({LONG})"], "has no keyword"),
    (["--pool", HUGE], "unknown pooling"),
    (["--setting", HUGE], "unknown setting"),
    (["--dataset", HUGE], "unknown data set"),
    (["--device", HUGE], "is not a device"),
], ids=lambda value: value[:40] if isinstance(value, str) else None)
def test_a_huge_value_is_refused_in_one_line_that_quotes_at_most_60_characters_of_it(tmp_path, capsys, args, words):
    out_dir = tmp_path / "r"
    assert main(["run", "--setting", "quick", *args, "--output-dir", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err[:500]
    assert re.search(r"\.\.\. \(\d[\d,]* (characters|digits)\)", err) and len(err) < 400, err[:500]
    assert not out_dir.exists()


def test_ctrl_c_in_a_verb_that_does_not_handle_it_is_one_line_and_exit_130(tmp_path):
    started = tmp_path / "started"
    slow = tmp_path / "slow_pool.py"  # the check imports it in a child process, which the parent waits for
    slow.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('')\ntime.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-m", "poolbench", "check", str(slow)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal sends it to every process of the group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "interrupted" and "Traceback" not in err
