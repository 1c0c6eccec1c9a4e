"""A researcher's own data set and model through run, sweep, check, list and report.

The fixtures write tiny data sets in the real formats into tmp_path: an ImageFolder of PNGs at
20x24 (3 classes, 4 training and 2 test images each, seeded noise) and an npz of grey 12x12
images (4 classes, labels ``i % 4``). A model file holds ``build(num_classes)`` returning a small
CNN with an ``nn.AdaptiveAvgPool2d`` pooling and a ``Linear`` head (torchvision's naming, so that
``attach`` finds it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from poolbench import data, models
from poolbench.cli import main
from poolbench.core.setting_spec import arch_label, dataset_label, normalise_arch, normalise_dataset
from poolbench.core.settings import Protocol, normalise_setting, run_protocol, setting_label
from poolbench.execution import runner
from poolbench.training import catalog

MODEL_FILE = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def build(num_classes):
    return Small(num_classes)
'''


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded data sets are cached under tmp_path (the env var reaches a sweep's run processes too)."""
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for split, count in (("train", 4), ("test", 2)):
        for name in ("cat", "dog", "eel"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def grey_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "grey.npz"
    np.savez(path, x_train=rng.integers(0, 256, (16, 12, 12), dtype=np.uint8), y_train=np.arange(16) % 4,
             x_test=rng.integers(0, 256, (8, 12, 12), dtype=np.uint8), y_test=np.arange(8) % 4)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "mynet.py"
    path.write_text(MODEL_FILE)
    return path


# --- specs and settings --------------------------------------------------------------------------

def test_specs_are_normalised_to_absolute_paths_and_labelled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalise_dataset("imagefolder:pets") == f"imagefolder:{tmp_path / 'pets'}"
    assert normalise_arch("nets/mine.py:build") == f"{tmp_path / 'nets' / 'mine.py'}:build"
    assert normalise_arch("ResNet20") == "resnet20" and normalise_arch("timm:resnet18") == "timm:resnet18"
    assert arch_label("timm:resnet18") == "timm-resnet18" and dataset_label("imagefolder:/a/my pets/") == \
        "imagefolder-my_pets"
    assert normalise_setting("resnet20@CIFAR10") == "resnet20@cifar10"
    assert setting_label("resnet56@cifar100") == "resnet56-cifar100"  # a named setting keeps its name
    for bad in ("resnet20", "@cifar10", "resnet20@", "foo:bar@cifar10", "resnet20@zip:/x"):
        with pytest.raises(ValueError) as error:
            normalise_setting(bad)
        assert "\n" not in str(error.value)


def test_an_adhoc_setting_takes_classes_and_size_from_the_data(png_folder: Path, grey_npz: Path) -> None:
    folder = catalog.get_setting(f"resnet8@imagefolder:{png_folder}")
    assert (folder.name, catalog.num_classes(folder), folder.image_size) == ("resnet8-imagefolder-pets", 3, 20)
    # Loaded at its own size, the crop padding scaled to it (4 px at 32: 2.5, rounded to even)
    assert run_protocol(folder, {}) == Protocol(crop_padding=2, image_size=20)
    assert run_protocol(folder, {"image_size": 64}).crop_padding == 8
    grey = catalog.get_setting(f"timm:resnet18@npz:{grey_npz}")
    assert (grey.name, catalog.num_classes(grey), grey.image_size, run_protocol(grey, {}).crop_padding) == \
        ("timm-resnet18-npz-grey", 4, 12, 2)
    with pytest.raises(ValueError, match="did you mean resnet20"):
        catalog.get_setting(f"resnt20@npz:{grey_npz}")
    with pytest.raises(ValueError, match="no file"):
        catalog.get_setting(f"resnet20@npz:{grey_npz.parent / 'none.npz'}")


def test_image_size_scales_the_crop_padding_unless_it_is_given() -> None:
    base = Protocol()
    assert base.with_overrides({"image_size": 64}).crop_padding == 8
    assert base.with_overrides({"image_size": 64, "crop_padding": 3}).crop_padding == 3
    assert Protocol(crop_padding=2).with_overrides({"image_size": 48}).crop_padding == 3
    with pytest.raises(ValueError, match="image size"):
        base.with_overrides({"image_size": 4})


# --- models from torchvision, timm and a file -------------------------------------------------------

@pytest.mark.parametrize("arch, shape", [("torchvision:resnet18", (512, 2, 2)), ("timm:resnet18", (512, 2, 2)),
                                         ("torchvision:mobilenet_v2", (1280, 2, 2))])
def test_torchvision_and_timm_models_get_the_poolbench_pooling(arch: str, shape: tuple) -> None:
    model = models.create(arch, num_classes=7, pool="gem")
    assert type(models.pooling_of(model)).__name__ == "GeM"
    assert models.pool_input_shape(arch, image_size=64) == shape
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_a_factory_file_builds_the_model_with_its_classes(model_file: Path) -> None:
    model = models.create(f"{model_file}:build", num_classes=5, pool="gmp")
    assert type(models.pooling_of(model)).__name__ == "GlobalMaxPool" and model.fc.out_features == 5
    x = torch.rand(3, 3, 16, 16)
    features = model.features(x)
    torch.testing.assert_close(model(x), model.fc(features.amax(dim=(2, 3))))  # the max really is used
    assert models.pool_input_shape(f"{model_file}:build", image_size=16) == (16, 8, 8)


def test_bad_models_are_one_line(model_file: Path) -> None:
    for arch, message in (("torchvision:resnet19", "did you mean resnet18"), ("timm:not_a_net", "timm has no model"),
                          (f"{model_file}:nope", "has no function 'nope'"),
                          (f"{model_file.parent / 'gone.py'}:build", "not found")):
        with pytest.raises(ValueError) as error:
            models.create(arch, num_classes=3)
        assert message in str(error.value) and "\n" not in str(error.value)


# --- run ------------------------------------------------------------------------------------------

def test_run_trains_a_factory_model_on_an_image_folder_at_another_size(png_folder, model_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--setting", f"{model_file}:build@imagefolder:{png_folder}", "--image-size", "16",
                 "--epochs", "2", "--batch-size", "4", "--pool", "gem", "--output-dir", str(out), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert result["status"] == "completed" and result["setting"] == "mynet-build-imagefolder-pets"
    assert result["pool_input_shape"] == [16, 8, 8] and result["image_shape"] == [3, 16, 16]
    assert config["protocol"]["image_size"] == 16 and config["protocol"]["crop_padding"] == 2
    assert config["dataset"] == f"imagefolder:{png_folder}" and config["num_classes"] == 3
    assert len(config["arch_sha256"]) == 64
    # The same command resumes nothing (it is done); an edited model file is another run.
    assert main(["run", "--setting", f"{model_file}:build@imagefolder:{png_folder}", "--image-size", "16",
                 "--epochs", "2", "--batch-size", "4", "--pool", "gem", "--output-dir", str(out)]) == 0
    model_file.write_text(MODEL_FILE + "\n# edited\n")
    assert main(["run", "--setting", f"{model_file}:build@imagefolder:{png_folder}", "--image-size", "16",
                 "--epochs", "2", "--batch-size", "4", "--pool", "gem", "--output-dir", str(out)]) == 2
    assert "other content of the model file" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--setting", "resnet8@imagefolder:{root}/none"], "not a folder"),
    (["--setting", "torchvision:resnet19@imagefolder:{root}/pets"], "did you mean resnet18"),
    (["--setting", "resnet8@imagefolder:{root}/pets", "--num-classes", "5"], "has 3 classes"),
    (["--setting", "resnet8@imagefolder:{root}/pets", "--image-size", "2000"], "image size"),
    (["--arch", "vgg16bn", "--dataset", "imagefolder:{root}/pets", "--image-size", "8"], "cannot take 8x8"),
])
def test_refusals_are_one_line_and_leave_no_run_folder(args, message, png_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", *[a.format(root=tmp_path) for a in args], "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert not out.exists()


def test_a_data_set_too_big_for_the_device_is_refused_with_its_size(png_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "free_memory_bytes", lambda device: 10_000)
    out = tmp_path / "run"
    code = main(["run", "--setting", f"resnet8@imagefolder:{png_folder}", "--image-size", "64",
                 "--output-dir", str(out)])
    err = capsys.readouterr().err
    need = 2 * data.describe(f"imagefolder:{png_folder}", 64).bytes(8)  # the decoded copy and the loader's
    assert code == 2 and f"needs {need / 2**30:.1f} GiB on cpu" in err and "12 + 6 uint8 images" in err
    assert not out.exists()


# --- sweep, status, report, check, list --------------------------------------------------------------

@pytest.mark.slow
def test_sweep_and_report_torchvision_timm_and_a_file_on_own_data(png_folder, grey_npz, model_file, tmp_path,
                                                                   capsys):
    settings = [f"torchvision:mobilenet_v3_small@imagefolder:{png_folder}", f"timm:resnet10t@npz:{grey_npz}",
                f"{model_file}:build@npz:{grey_npz}"]
    out = tmp_path / "sweep"
    code = main(["sweep", "--out", str(out), "--pools", "gap,gmp", "--settings", ",".join(settings),
                 "--seeds", "1", "--epochs", "1", "--batch-size", "8", "--image-size", "16", "--jobs", "2"])
    assert code == 0, capsys.readouterr().err
    labels = ["torchvision-mobilenet_v3_small-imagefolder-pets", "timm-resnet10t-npz-grey", "mynet-build-npz-grey"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(labels)
    assert json.loads((out / "sweep.json").read_text())["settings"] == [normalise_setting(s) for s in settings]
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "6 runs: 6 completed" in report
    assert f"## timm-resnet10t-npz-grey: timm:resnet10t on npz:{grey_npz}" in report
    assert "Pool input: 576x1x1" in report and "Pool input: 512x1x1" in report and "Pool input: 16x8x8" in report
    assert "images resized to 16x16" in report
    assert main(["status", str(out)]) == 0 and "mynet-build-npz-grey" in capsys.readouterr().out
    # Run again: everything is done, nothing is trained.
    assert main(["sweep", str(out)]) == 0
    assert "6 already done, 0 running elsewhere, 0 to run" in capsys.readouterr().err


def test_two_data_sets_with_one_folder_name_are_refused(png_folder, tmp_path, capsys):
    other = tmp_path / "elsewhere" / "pets"
    for split in ("train", "test"):
        for name in ("a", "b"):  # two classes: a data set of one class is refused
            (other / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(other / split / name / "0.png")
    code = main(["sweep", "--out", str(tmp_path / "sweep"), "--pools", "gap",
                 "--settings", f"resnet8@imagefolder:{png_folder},resnet8@imagefolder:{other}"])
    assert code == 2 and "would both be filed as 'resnet8-imagefolder-pets'" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_check_and_list_at_the_models_pool_input(png_folder, capsys):
    assert main(["check", "gem", "--settings", "timm:resnet18@cifar10", "--image-size", "64"]) == 0
    assert "for C = 512" in capsys.readouterr().out
    assert main(["list", "--json", "--settings", f"torchvision:resnet18@imagefolder:{png_folder}",
                 "--image-size", "64"]) == 0
    record = json.loads(capsys.readouterr().out)["settings"][0]
    assert record["pool_input_shape"] == [512, 2, 2] and record["num_classes"] == 3
    assert record["protocol"]["image_size"] == 64 and record["protocol"]["crop_padding"] == 8
    assert main(["list", "--settings", "resnet8@nothing"]) == 2
    assert "unknown data set 'nothing'" in capsys.readouterr().err


OWN_MODELS = '''
import torch
from torch import nn


def sequential(num_classes):
    """A researcher's CNN: the global pooling is the 6th module of a Sequential, flattened after."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, num_classes))


class Functional(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3), nn.ReLU())
        self.head = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))  # pools with a function in forward


def functional(num_classes):
    return Functional(num_classes)
'''


@pytest.mark.slow
def test_a_researchers_own_models_go_through_check_list_sweep_and_report(png_folder, tmp_path, capsys):
    path = tmp_path / "own.py"
    path.write_text(OWN_MODELS)
    settings = [f"{path}:sequential@imagefolder:{png_folder}", f"{path}:functional@imagefolder:{png_folder}"]
    assert main(["list", "--json", "--settings", ",".join(settings), "--image-size", "16"]) == 0
    shapes = [record["pool_input_shape"] for record in json.loads(capsys.readouterr().out)["settings"]]
    assert shapes == [[16, 8, 8], [12, 14, 14]]  # measured at the run's image size
    assert main(["check", "gem", "--settings", settings[1], "--image-size", "16"]) == 0
    assert "for C = 12" in capsys.readouterr().out
    out = tmp_path / "sweep"
    code = main(["sweep", "--out", str(out), "--pools", "gap,gem", "--settings", ",".join(settings),
                 "--seeds", "1", "--epochs", "1", "--batch-size", "4", "--image-size", "16", "--jobs", "2"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "4 runs: 4 completed" in report
    assert "Pool input: 16x8x8" in report and "Pool input: 12x14x14" in report
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*/gem/seed1/result.json"))]
    assert len(results) == 2 and all(r["status"] == "completed" for r in results)
    # which module attach replaced, in result.json and in the run's log
    assert [r["pool_path"] for r in results] == ["poolbench_pool (was mean() in forward)", "4"]
    log = (out / "own-sequential-imagefolder-pets" / "gem" / "seed1" / "stderr.log").read_text()
    assert "pool gem at 4, seed 1" in log


TWO_POOLINGS = '''
import torch
from torch import nn


class TwoPoolings(nn.Module):
    """Average and max pooling of one map, concatenated before the head: which one poolbench
    replaces is the user's to say (--pool-at)."""

    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.mean_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d((1, 1))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.body(x)
        return self.fc(torch.cat([self.mean_pool(x).flatten(1), self.max_pool(x).flatten(1)], 1))


def build(num_classes):
    return TwoPoolings(num_classes)
'''


@pytest.fixture
def two_poolings(tmp_path: Path) -> Path:
    path = tmp_path / "twopool.py"
    path.write_text(TWO_POOLINGS)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("site", ["mean_pool", "max_pool"])
def test_pool_at_names_the_module_replaced_and_is_part_of_the_run(site, png_folder, two_poolings, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--arch", f"{two_poolings}:build", "--pool-at", site, "--dataset", f"imagefolder:{png_folder}",
                 "--pool", "gem", "--seed", "1", "--epochs", "1", "--batch-size", "4", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())["config"]
    assert result["pool_path"] == site
    assert config["arch"] == f"{two_poolings}:build#{site}"
    assert config["setting"] == f"twopool-build-at-{site}-imagefolder-pets"
    # the other module is left as it was: only the one named holds poolbench's pooling
    model = models.create(config["arch"], 3, "gem")
    other = "max_pool" if site == "mean_pool" else "mean_pool"
    assert type(getattr(model, other)).__name__.startswith("Adaptive")
    assert not type(getattr(model, site)).__name__.startswith("Adaptive")


def test_pool_at_measures_the_pool_input_there(png_folder, two_poolings, tmp_path):
    model = f"{two_poolings}:build"
    # the input of the module named; one whose output cannot be pooled is refused
    assert catalog.pool_input(f"{model}#max_pool", f"imagefolder:{png_folder}") == (8, 20, 24)
    assert catalog.pool_input(f"{model}#body.1", f"imagefolder:{png_folder}") == (8, 20, 24)
    with pytest.raises(ValueError, match="with the pooling put at body.0, TwoPoolings fails a dry forward"):
        catalog.pool_input(f"{model}#body.0", f"imagefolder:{png_folder}")


@pytest.mark.parametrize("args, message", [
    (["--setting", "quick", "--pool-at", "pool"], "a pooling place (#PATH, --pool-at) is for torchvision:, timm: and"),
    (["--arch", "MODEL", "--pool-at", "no_such"], "no_such"),
    (["--arch", "MODEL", "--pool-at", "body[0]"], "is not a module path; write it as print(model) names it"),
    (["--arch", "MODEL#mean_pool", "--pool-at", "max_pool"], "already names its pooling at 'mean_pool'"),
])
def test_pool_at_refusals_are_one_line_before_the_run_folder(args, message, png_folder, two_poolings, tmp_path,
                                                             capsys):
    out = tmp_path / "run"
    args = [a.replace("MODEL", f"{two_poolings}:build") for a in args]
    dataset = [] if "--setting" in args else ["--dataset", f"imagefolder:{png_folder}"]
    assert main(["run", *args, *dataset, "--epochs", "1", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_sweep_pool_at_applies_to_its_settings_and_report_names_them(png_folder, two_poolings, tmp_path, capsys):
    out = tmp_path / "sweep"
    setting = f"{two_poolings}:build@imagefolder:{png_folder}"
    assert main(["sweep", "--out", str(out), "--pools", "gem", "--settings", setting, "--pool-at", "mean_pool",
                 "--seeds", "1", "--epochs", "1", "--batch-size", "4"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    result = json.loads((out / "twopool-build-at-mean_pool-imagefolder-pets" / "gem" / "seed1" / "result.json")
                        .read_text())
    assert result["pool_path"] == "mean_pool" and result["pool_input_shape"] == [8, 20, 20]
    assert main(["report", str(out)]) == 0
    assert "twopool-build-at-mean_pool-imagefolder-pets" in capsys.readouterr().out
    # the same folder resumed with the same flags has nothing to do
    assert main(["sweep", "--out", str(out), "--settings", setting, "--pool-at", "mean_pool"]) == 0
    assert "1 already done" in capsys.readouterr().err
    # --pool-at without the models it applies to
    assert main(["sweep", "--out", str(out), "--pool-at", "mean_pool"]) == 2
    assert "--pool-at needs the models it applies to" in capsys.readouterr().err
