"""What identifies a run, and the researcher's own models checked before a run (issue 31).

An edited data set or model file is another run (never a finished one reported again, a resumed
one continued, or a seed averaged with the others); a model's output is checked; a model factory
cannot give every seed the same weights; a pooling has one spelling; the fixes name the real
problem; a checkpoint with the wrong content is one line. Tiny files written by fixtures, 1-epoch
runs on a 12x12 npz of 16 images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolbench.cli import main
from poolbench.storage.rundir import RunConfig

MODEL_FILE = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def build(num_classes):
    return Small(num_classes)
'''

TINY = ["--epochs", "1", "--batch-size", "8", "--threads", "1"]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))


def write_npz(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (16, 12, 12), dtype=np.uint8), y_train=np.arange(16) % 4,
             x_test=rng.integers(0, 256, (8, 12, 12), dtype=np.uint8), y_test=np.arange(8) % 4)
    return path


@pytest.fixture
def grey_npz(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "grey.npz", 1)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "mynet.py"
    path.write_text(MODEL_FILE)
    return path


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --- 1. a data set's and a model file's content identify a run -------------------------------------

def test_a_replaced_data_set_or_edited_model_file_is_refused_not_reported_again(grey_npz, model_file, tmp_path,
                                                                                capsys):
    out = tmp_path / "run"
    command = ["run", "--setting", f"{model_file}:build@npz:{grey_npz}", "--output-dir", str(out), *TINY]
    assert main(command) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert len(config["dataset_sha256"]) == 64 and len(config["arch_sha256"]) == 64
    result = (out / "result.json").read_bytes()
    write_npz(grey_npz, 2)  # replaced after the run completed
    capsys.readouterr()
    assert main(command) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "other content of the data set 'npz:" in line and "use a new --output-dir" in line
    assert (out / "result.json").read_bytes() == result  # nothing written is lost
    write_npz(grey_npz, 1)  # the same bytes again: the same run, done
    model_file.write_text(MODEL_FILE.replace("8", "16"))
    assert main(command) == 2
    assert "other content of the model file" in one_error_line(capsys.readouterr().err)


def test_a_run_resumed_on_a_replaced_data_set_is_refused(grey_npz, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["run", "--setting", f"resnet8@npz:{grey_npz}", "--output-dir", str(out), *TINY]
    assert main(command) == 0
    (out / "result.json").unlink()  # as if killed (-9) before the end: a resume from the checkpoint
    write_npz(grey_npz, 3)
    capsys.readouterr()
    assert main(command) == 2
    assert "other content of the data set" in one_error_line(capsys.readouterr().err)
    assert (out / "checkpoint.pt").exists()


def test_a_config_without_the_data_hash_still_loads_and_builtin_sets_record_none() -> None:
    old = {"setting": "quick", "arch": "resnet20", "dataset": "fmnist", "num_classes": 10, "pool": "gap",
           "seed": 1, "protocol": {}, "pool_sha256": None, "amp": "none", "compile": False, "arch_sha256": None}
    config = RunConfig.from_dict(old)
    assert config.dataset_sha256 is None
    assert "dataset_sha256" not in config.to_dict()  # a built-in set's config and checkpoint are as before


def test_a_sweep_extended_after_the_data_set_changed_is_refused(grey_npz, tmp_path, capsys):
    out = tmp_path / "sweep"
    setting = f"resnet8@npz:{grey_npz}"
    sweep = ["sweep", "--out", str(out), "--pools", "gap", "--settings", setting, "--epochs", "1",
             "--batch-size", "8", "--threads", "1"]
    assert main([*sweep, "--seeds", "1"]) == 0, capsys.readouterr().err
    write_npz(grey_npz, 4)
    grid = (out / "sweep.json").read_text()
    capsys.readouterr()
    assert main([*sweep, "--seeds", "2"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "seed1 was run on other content of the data set" in line and "new --out" in line
    assert not (out / "resnet8-npz-grey" / "gap" / "seed2").exists()
    assert (out / "sweep.json").read_text() == grid  # refused before the grid took seed 2
    assert main(["sweep", str(out)]) == 2  # the folder as it is: refused the same way
    assert "was run on other content of the data set" in one_error_line(capsys.readouterr().err)


def test_a_report_row_of_runs_on_two_contents_gets_a_note(grey_npz, tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in (1, 2):
        write_npz(grey_npz, seed)
        assert main(["run", "--setting", f"resnet8@npz:{grey_npz}", "--seed", str(seed), "--output-dir",
                     str(root / "resnet8-npz-grey" / "gap" / f"seed{seed}"), *TINY]) == 0
    capsys.readouterr()
    assert main(["report", str(root)]) == 0
    assert "resnet8-npz-grey / gap: its runs were made from 2 different contents" in capsys.readouterr().out


# --- 2. the model's output is checked before the run --------------------------------------------------

BAD_MODELS = MODEL_FILE + '''

def ignores_classes(num_classes):
    return Small(1000)


def too_narrow(num_classes):
    return Small(2)


class Spatial(Small):
    def forward(self, x):
        return self.features(x)[:, :3] + 0 * self.avgpool(self.features(x))[:, :3]


def spatial(num_classes):
    return Spatial(num_classes)


def float64(num_classes):
    return Small(num_classes).double()
'''


@pytest.mark.parametrize("function, words", [
    ("ignores_classes", "returned shape [1, 1000] for one image, expected [1, 4]"),
    ("too_narrow", "returned shape [1, 2] for one image, expected [1, 4]"),
    ("spatial", "returned shape [1, 3, 12, 12] for one image, expected [1, 4]"),
    ("float64", "has float64 parameters"),
])
def test_a_model_with_the_wrong_output_is_refused_before_the_run_folder(function, words, grey_npz, tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text(BAD_MODELS)
    out = tmp_path / "run"
    assert main(["run", "--setting", f"{path}:{function}@npz:{grey_npz}", "--output-dir", str(out), *TINY]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert words in line and ("model.float()" in line if function == "float64" else
                              f"{path}:{function}" in line and "pass num_classes to its head" in line)
    assert "--image-size" not in line and not out.exists()


# --- 3. a model factory that reseeds cannot give every seed the same weights --------------------------

RESEEDING = MODEL_FILE.replace("def build(num_classes):\n", "def build(num_classes):\n    torch.manual_seed(0)\n"
                               "    numpy.random.seed(0)\n") .replace("import torch\n", "import numpy\nimport torch\n")


def test_a_reseeding_factory_gives_each_seed_its_own_weights_and_is_reported(grey_npz, tmp_path, capsys):
    import torch

    from poolbench import models
    from poolbench.core import global_state

    path = tmp_path / "reseeds.py"
    path.write_text(RESEEDING)
    weights = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        weights.append(models.create(f"{path}:build", num_classes=4).fc.weight.detach().clone())
    assert not torch.equal(weights[0], weights[1])
    torch.manual_seed(1)
    torch.testing.assert_close(models.create(f"{path}:build", num_classes=4).fc.weight, weights[0])  # still seeded
    assert any("called torch.manual_seed(0): ignored" in change for change in global_state.recorded())
    out = tmp_path / "run"
    assert main(["run", "--setting", f"{path}:build@npz:{grey_npz}", "--output-dir", str(out), *TINY]) == 0
    assert "WARN global_state: building build from" in capsys.readouterr().err
    restored = json.loads((out / "result.json").read_text())["global_state_restored"]
    assert any("torch.manual_seed(0): ignored" in change for change in restored)
    assert any("numpy.random.seed(0): ignored" in change for change in restored)


# --- 4. one spelling per registered pooling ----------------------------------------------------------

def test_gap_and_GAP_are_one_run(grey_npz, tmp_path, monkeypatch, capsys):
    from poolbench.core.poolspec import normalise_spec

    assert normalise_spec("GAP") == "gap" and normalise_spec("TopK(k=2)") == "topk(k=2)"
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--setting", f"resnet8@npz:{grey_npz}", "--pool", "GAP", *TINY]) == 0
    capsys.readouterr()
    assert main(["run", "--setting", f"resnet8@npz:{grey_npz}", "--pool", "gap", *TINY]) == 0
    assert "already completed, not run again" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "runs" / "resnet8-npz-grey").iterdir()] == ["gap"]


# --- 5. fixes that name the real problem ---------------------------------------------------------------

def test_an_at_sign_in_a_model_files_path_is_not_blamed_on_the_data_set(grey_npz, tmp_path, capsys):
    folder = tmp_path / "my@nets"
    folder.mkdir()
    (folder / "mynet.py").write_text(MODEL_FILE)
    out = tmp_path / "run"
    assert main(["run", "--setting", f"{folder / 'mynet.py'}:build@npz:{grey_npz}", "--output-dir", str(out),
                 *TINY]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["config"]["arch"] == f"{folder / 'mynet.py'}:build"


def test_a_comma_in_a_pooling_files_path_says_that_commas_separate_poolings(grey_npz, tmp_path, capsys):
    folder = tmp_path / "a,b"
    folder.mkdir()
    (folder / "mine.py").write_text("import torch\nclass CustomPool(torch.nn.Module):\n"
                                    "    def forward(self, x):\n        return x.mean(dim=(2, 3))\n")
    out = tmp_path / "sweep"
    assert main(["sweep", "--pools", f"gap,{folder / 'mine.py'}", "--settings", f"resnet8@npz:{grey_npz}",
                 "--out", str(out), "--dry-run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "commas separate the poolings of --pools" in line and "path without a comma" in line
    assert not out.exists()


# --- 6. a checkpoint that loads but cannot be resumed from --------------------------------------------

@pytest.mark.parametrize("damage", ["no history", "wrong shape", "empty random state"])
def test_a_checkpoint_with_the_wrong_content_is_one_line_not_a_failed_run(damage, grey_npz, tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    command = ["run", "--setting", f"resnet8@npz:{grey_npz}", "--output-dir", str(out), *TINY]
    assert main(command) == 0
    (out / "result.json").unlink()  # as if killed after its last checkpoint: the run resumes from it
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    if damage == "no history":
        del state["history"]
    elif damage == "wrong shape":
        key = next(iter(state["model"]))
        state["model"][key] = torch.zeros(2, 2)
    else:
        state["rng"] = {}
    torch.save(state, out / "checkpoint.pt")
    capsys.readouterr()
    for _ in range(2):  # the same answer on a retry: never recorded as a failed run
        assert main(command) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"checkpoint {out / 'checkpoint.pt'} is damaged" in line and "delete it" in line
        assert not (out / "result.json").exists() and (out / "checkpoint.pt").exists()
    (out / "checkpoint.pt").unlink()
    assert main(command) == 0


# --- 7. an output folder inside a file ---------------------------------------------------------------

def test_an_output_dir_under_a_file_is_one_line(grey_npz, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine\n")
    assert main(["run", "--setting", f"resnet8@npz:{grey_npz}", "--output-dir", str(tmp_path / "afile" / "sub"),
                 *TINY]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"is under {tmp_path / 'afile'}, which is a file" in line
    assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("reseed", ["torch.default_generator.manual_seed(0)", "manual_seed(0)",
                                    "torch.set_rng_state(torch.Generator().manual_seed(0).get_state())"])
def test_a_reseed_that_cannot_be_ignored_is_refused(reseed, grey_npz, tmp_path, capsys):
    path = tmp_path / "hidden.py"
    path.write_text(MODEL_FILE.replace("def build(num_classes):\n", f"def build(num_classes):\n    {reseed}\n")
                    .replace("import torch\n", "import torch\nfrom torch import manual_seed\n"))
    out = tmp_path / "run"
    assert main(["run", "--setting", f"{path}:build@npz:{grey_npz}", "--output-dir", str(out), *TINY]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "sets torch's random generator to a fixed state" in line and "every --seed would get the same" in line
    assert not out.exists()
