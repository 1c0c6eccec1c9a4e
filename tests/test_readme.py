"""The README's and docs/'s examples are real: their Python runs, and every `poolbench` command in
them parses."""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from poolbench import pools
from poolbench.cli import build_parser, main
from poolbench.contract import check_pool
from poolbench.core.settings import SUITES
from poolbench.pools import registry

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def python_blocks(name: str) -> list[str]:
    """The ```python blocks of docs/NAME."""
    return re.findall(r"```python\n(.*?)```", DOCS[name], flags=re.S)


def poolbench_commands(text: str = README) -> list[list[str]]:
    """Every `poolbench ...` command in the bash blocks of `text`, split into arguments."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "poolbench":
                    commands.append(words[1:])
    return commands


def test_the_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(commands) == 2
    assert commands[0].startswith("pip install torch==2.14.1 torchvision==0.29.1 && ")
    # The tests train on Debian's real FashionMNIST, so the test command installs it first.
    assert commands[1].startswith("apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist && "
                                  "pip install torch==2.14.1 torchvision==0.29.1 && ")
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()


@pytest.mark.parametrize("argv", poolbench_commands(), ids=" ".join)
def test_every_readme_command_parses(argv):
    build_parser().parse_args(argv)  # argparse exits on an unknown flag or value


DOCS_COMMANDS = [(name, argv) for name, text in DOCS.items() for argv in poolbench_commands(text)]


def test_the_docs_exist_and_the_readme_links_each_page():
    assert len(DOCS) >= 8
    for name in DOCS:
        assert f"(docs/{name})" in README, f"the README does not link docs/{name}"
        assert "(../README.md)" in DOCS[name]
    assert len(DOCS_COMMANDS) >= 20
    links = [(ROOT, link) for link in re.findall(r"\]\(([^)#]+\.md)", README)]
    links += [(ROOT / "docs", link) for text in DOCS.values() for link in re.findall(r"\]\(([^)#]+\.md)", text)]
    for folder, link in links:
        assert (folder / link).is_file(), f"a link to {link} leads nowhere"


@pytest.mark.parametrize(("page", "argv"), DOCS_COMMANDS, ids=[f"{n}: {' '.join(a)}" for n, a in DOCS_COMMANDS])
def test_every_docs_command_parses(page, argv):
    build_parser().parse_args(argv)  # argparse exits on an unknown flag or value


def test_every_other_python_block_of_the_readme_and_docs_runs(capsys):
    """The blocks no test below runs: each runs in a few seconds, in its own namespace."""
    blocks = [(name, block) for name, text in {"README.md": README, **DOCS}.items()
              for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]
    assert len(blocks) >= 7
    covered = ("pools.create(", "pools.attach(", "pools.register(")
    for name, block in blocks:
        if not any(word in block for word in covered):
            exec(compile(block, name, "exec"), {})


def test_the_readme_attach_example_runs_and_prints_what_it_says(capsys):
    example = next(block for block in PYTHON_BLOCKS if "pools.attach(" in block)
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["GeM(p=3.000, eps=1e-06, p_min=1.0)"]


def test_the_main_sweep_command_plans_the_diagnostic_suite_for_four_poolings(tmp_path, capsys):
    sweep = next(argv for argv in poolbench_commands() if argv[0] == "sweep")
    out = sweep.index("--out")
    argv = [*sweep[:out + 1], str(tmp_path / "sweep"), *sweep[out + 2:], "--dry-run"]
    assert main(argv) == 0
    planned = set(re.findall(r"(diag-\w+)/(\w+)/seed(\d+)", capsys.readouterr().out))
    assert {setting for setting, _, _ in planned} == set(SUITES["diagnostics"])
    assert len({pool for _, pool, _ in planned}) >= 4
    assert len(planned) == len(SUITES["diagnostics"]) * 4 * 3


def test_the_custom_pool_example_passes_the_contract(tmp_path):
    example = next(block for block in PYTHON_BLOCKS if block.startswith("# my_pool.py"))
    (tmp_path / "my_pool.py").write_text(example)
    report = check_pool(str(tmp_path / "my_pool.py"), include_cost=False)
    assert report.ok, report.format()


def test_the_library_example_runs_and_registers_its_pooling(capsys):
    example = next(block for block in PYTHON_BLOCKS if "pools.create(" in block)
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("torch.Size([2, 64])") == 2 and "GeM(p=4.000, eps=1e-06, p_min=1.0)" in out
    assert "half_max" in pools.names()


def test_the_attach_examples_run_and_print_what_they_say(capsys):
    examples = [block for block in python_blocks("own-model.md") if "pools.attach(" in block]
    assert len(examples) == 3  # torchvision, timm, your own Sequential
    for example in examples:
        exec(compile(example, "docs/own-model.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert "GeM(p=3.000, eps=1e-06, p_min=1.0)" in out and out.count("torch.Size([2, 10])") == 2  # timm, yours
    assert out[-2:] == ["2", "torch.Size([2, 10])"]  # pool_path of the Sequential's pooling


def test_the_pooling_table_names_every_registered_pooling_with_its_class():
    table = README.split("## The poolings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    built_in = [name for name in pools.names() if registry.get(name).__module__.startswith("poolbench.pools.")]
    assert len(built_in) >= 20
    assert f"{len(built_in)} built-in poolings" in README, "the README's count of built-in poolings is stale"
    for name in built_in:
        row = next((line for line in rows if f"`{name}`" in line.split("|")[1]), None)
        assert row is not None, f"{name} is not in the README's pooling table"
        assert f"`{registry.get(name).__name__}`" in row.split("|")[2], f"{name}: its class is not in its row"


def test_the_hand_written_mean_example_computes_gap_exactly(tmp_path):
    example = next(block for block in python_blocks("diagnostics.md") if block.startswith("# mean_pool.py"))
    (tmp_path / "mean_pool.py").write_text(example)
    pool = pools.create(str(tmp_path / "mean_pool.py"), channels=8)
    x = torch.randn(3, 8, 5, 7)
    torch.testing.assert_close(pool(x), pools.create("gap", channels=8)(x), rtol=0, atol=1e-6)
    assert check_pool(str(tmp_path / "mean_pool.py"), include_cost=False).ok


@pytest.mark.slow
@pytest.mark.xdist_group("merge_example")  # conftest.merge_example: one worker trains it, once
def test_the_merge_example_makes_one_report_of_both_machines(merge_example):
    """docs/running.md's grid in two halves, one sent as a table (run by conftest.merge_example)."""
    report = (merge_example / "report.md").read_text()
    assert report.startswith("# poolbench report: runs/laptop + gpu-box.csv\n")
    assert "Note: one report of 2 inputs: runs/laptop (2 runs); gpu-box.csv (2 runs)" in report
    assert report.splitlines()[2].startswith("4 runs: 4 completed")
    for pooling in ("gap", "gem"):  # each with both machines' seeds in its mean
        assert re.search(rf"\| {pooling} +\| 2/2 +\| \d+\.\d\d ± \d+\.\d\d ", report), pooling


@pytest.mark.slow
def test_the_tracker_example_of_docs_running_logs_to_tensorboard(tmp_path, monkeypatch):
    """The one docs command that logs without a server or an account: run it, read it back with
    TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = next(argv for argv in poolbench_commands(DOCS["running.md"]) if argv[0] == "run" and "--log" in argv)
    assert argv[argv.index("--log") + 1] == "tensorboard" and argv[argv.index("--epochs") + 1] == "1"
    monkeypatch.chdir(tmp_path)  # its --output-dir is relative
    assert main([*argv, "--threads", "1"]) == 0
    run_dir = tmp_path / argv[argv.index("--output-dir") + 1]
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    epoch = json.loads((run_dir / "metrics.jsonl").read_text())
    assert [(s.step, s.value) for s in events.Scalars("test_acc")] == [(1, pytest.approx(epoch["test_acc"]))]


def test_the_sweep_file_example_plans_what_the_page_says(tmp_path, monkeypatch, capsys):
    page = DOCS["running.md"].split("## Sweep files", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "grid.yaml").write_text(re.findall(r"```yaml\n(.*?)```", page, flags=re.S)[0])
    monkeypatch.chdir(tmp_path)  # the example's paths are relative to the current folder
    argv = next(argv for argv in poolbench_commands(page) if "--dry-run" in argv)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "3 poolings x 1 settings x 2 seeds x 2 protocol variants (lr0.05, lr0.01) = 12 runs" in captured.err
    assert len(re.findall(r"lr0\.0[15]/quick/\S+/seed[12] +pending", captured.out)) == 12
