"""The suites that tell poolings apart: generated diagnostic tasks, the spatial settings, seed
planning, the fingerprint and the 1x1 warnings.

The generated images are decoded back from their pixels here, so each task is checked to carry
exactly the property its label claims.
"""

import json
import math

import numpy as np
import pytest
import torch
from run_folders import write_run
from scipy import stats

from poolbench import data, models
from poolbench.analysis import sweep_analysis
from poolbench.analysis.fingerprint import fingerprint
from poolbench.analysis.power import detectable_difference, paired_power, plan_seeds, seeds_needed
from poolbench.cli import main
from poolbench.contract import check_pool
from poolbench.core.settings import SETTINGS, SUITES
from poolbench.data.diagnostics import CELL, COUNTS, DIAGNOSTICS, GRID, PALETTE
from poolbench.training import catalog


def decode(image: torch.Tensor) -> list[tuple[int, float]]:
    """(colour index, brightness) of every square of one uint8 [3, 32, 32] image, read from its cells."""
    pixels = image.permute(1, 2, 0).numpy().astype(float) / 255
    squares = []
    for row in range(GRID):
        for col in range(GRID):
            cell = pixels[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL]
            brightest = cell.reshape(-1, 3)[cell.reshape(-1, 3).sum(1).argmax()]
            if brightest.max() < 0.12:  # background (with the salient task's noise)
                continue
            level = brightest.max() / PALETTE.max(1)  # each palette colour peaks in one channel
            colour = int(np.argmin([np.abs(brightest - PALETTE[c] * level[c]).sum() for c in range(len(PALETTE))]))
            squares.append((colour, float(level[colour])))
    return squares


@pytest.fixture(scope="module")
def generated():
    return {name: data.load(name) for name in DIAGNOSTICS}


@pytest.mark.parametrize("name", list(DIAGNOSTICS))
def test_a_diagnostic_data_set_is_fixed_uint8_32x32_with_every_class(name, generated):
    task = generated[name]
    again = data.load(name)
    assert task.train_images.dtype == torch.uint8 and tuple(task.train_images.shape[1:]) == (3, 32, 32)
    assert torch.equal(task.train_images, again.train_images) and torch.equal(task.test_labels, again.test_labels)
    assert not torch.equal(task.train_images[:100], task.test_images[:100])  # the splits are different draws
    counts = torch.bincount(task.train_labels, minlength=task.num_classes)
    assert len(counts) == task.num_classes and counts.min() > 0.6 * len(task.train_labels) / task.num_classes


def test_majority_labels_are_the_most_frequent_colour_and_every_colour_is_present(generated):
    task = generated["majority"]
    for image, label in zip(task.train_images[:200], task.train_labels[:200], strict=True):
        colours = [c for c, _ in decode(image)]
        counts = np.bincount(colours, minlength=4)
        assert counts.min() >= 1 and 5 <= len(colours) <= 12
        assert counts.argmax() == label and sorted(counts)[-1] > sorted(counts)[-2]


def test_count_labels_are_the_number_of_squares(generated):
    task = generated["count"]
    for image, label in zip(task.train_images[:200], task.train_labels[:200], strict=True):
        assert len(decode(image)) == COUNTS[label]


def test_brightest_labels_are_the_colour_of_the_single_brightest_square_which_is_outnumbered(generated):
    task = generated["brightest"]
    for image, label in zip(task.train_images[:200], task.train_labels[:200], strict=True):
        squares = decode(image)
        colours = [c for c, _ in squares]
        assert max(squares, key=lambda s: s[1])[0] == label
        assert colours.count(int(label)) == 1 < min(colours.count(c) for c in range(4) if c != label)


def test_salient_labels_are_the_colour_of_the_one_bright_square(generated):
    task = generated["salient"]
    for image, label in zip(task.train_images[:200], task.train_labels[:200], strict=True):
        bright = [c for c, level in decode(image) if level > 0.8]
        assert bright == [int(label)]


def test_diagnostic_settings_declare_their_side_and_form_the_suite():
    diagnostics = [SETTINGS[name] for name in SUITES["diagnostics"]]
    assert {s.favours for s in diagnostics} == {"mean", "max"}
    for setting in diagnostics:
        assert setting.dataset in DIAGNOSTICS
        assert catalog.num_classes(setting) == DIAGNOSTICS[setting.dataset].num_classes
        assert DIAGNOSTICS[setting.dataset].favours == setting.favours
        assert catalog.pool_input(setting.arch, setting.dataset) == (64, 8, 8)


@pytest.mark.parametrize(("name", "params", "shape"), [
    ("vgg16bn-2x2-cifar100", 15_299_748, (512, 2, 2)),
    ("mobilenetv2-4x4-fmnist", 2_236_682, (1280, 4, 4)),
    ("resnet56-cifar100", 861_620, (64, 8, 8)),
])
def test_spatial_settings_keep_the_parameters_and_see_more_than_one_position(name, params, shape):
    setting = SETTINGS[name]
    model = models.create(setting.arch, catalog.num_classes(setting))
    assert sum(p.numel() for p in model.parameters()) == params
    assert models.pool_input_shape(setting.arch) == shape == catalog.pool_input(setting.arch, setting.dataset)
    assert name in SUITES["spatial"]


def test_the_2x2_vgg_has_the_same_weights_as_the_benchmark_vgg_for_a_seed():
    torch.manual_seed(3)
    one = models.create("vgg16bn", 100)
    torch.manual_seed(3)
    two = models.create("vgg16bn-2x2", 100)
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values(), strict=True))


def test_list_json_describes_every_setting(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {s["name"]: s for s in listing["settings"]}
    assert set(by_name) == set(SETTINGS)
    assert by_name["diag-majority"]["favours"] == "mean" and by_name["diag-brightest"]["favours"] == "max"
    assert by_name["vgg16bn-cifar100"]["pool_is_1x1"] and not by_name["vgg16bn-2x2-cifar100"]["pool_is_1x1"]
    assert by_name["mobilenetv2-4x4-fmnist"]["pool_input_shape"] == [1280, 4, 4]
    assert "spatial" in by_name["resnet56-cifar100"]["suites"] and by_name["quick"]["favours"] is None
    assert listing["suites"]["diagnostics"] == list(SUITES["diagnostics"])
    assert listing["own"] == "spectrum" and "spectrum" in listing["pools"]


def test_sweep_suite_expands_to_its_settings(tmp_path, capsys):
    assert main(["sweep", "--suite", "diagnostics", "--pools", "gap,gmp", "--seeds", "1",
                 "--out", str(tmp_path / "s"), "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert all(f"{name}/gap/seed1" in planned for name in SUITES["diagnostics"])
    assert main(["sweep", "--suite", "nope", "--pools", "gap", "--out", str(tmp_path / "t")]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err


SCALE_POOL = """
import torch
from torch import nn

class CustomPool(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, channels))

    def forward(self, x):
        return self.scale * x.mean(dim=(2, 3))
"""


def test_check_says_whether_a_pooling_is_the_identity_on_a_1x1_map(tmp_path):
    (tmp_path / "scaled.py").write_text(SCALE_POOL)
    messages = {spec: check_pool(spec, include_cost=False).result("identity_1x1").message
                for spec in ("gap", "gmp", "gem", str(tmp_path / "scaled.py"), "powernorm")}
    assert messages["gap"].startswith("identity") and messages["gmp"].startswith("identity")
    assert messages["gem"].startswith("identity")
    assert messages[str(tmp_path / "scaled.py")].startswith("a per-channel scale")
    assert messages["powernorm"].startswith("not the identity")


# --- seed planning ------------------------------------------------------------------------------

def test_detectable_difference_has_80_percent_power_by_simulation():
    rng = np.random.default_rng(0)
    delta = detectable_difference(sd=2.0, seeds=5)
    assert math.isclose(paired_power(delta, 2.0, 5), 0.8, abs_tol=1e-4)
    hits = np.mean([stats.ttest_1samp(rng.normal(delta, 2.0, 5), 0).pvalue < 0.05 for _ in range(4000)])
    assert abs(hits - 0.8) < 0.025


def test_seeds_needed_is_the_smallest_count_with_enough_power():
    n = seeds_needed(0.5, 1.0)
    assert paired_power(0.5, 1.0, n) >= 0.8 > paired_power(0.5, 1.0, n - 1)
    assert seeds_needed(5.0, 1.0) < n < seeds_needed(0.25, 1.0)


def test_the_seed_plan_is_for_the_two_leading_poolings_from_their_own_paired_spread():
    # c is erratic: a spread pooled over pairs would be wide; a and b, the two best, differ steadily
    scores = {"a": {1: 99.9, 2: 99.8, 3: 100.0, 4: 99.9}, "b": {1: 99.7, 2: 99.7, 3: 99.8, 4: 99.8},
              "c": {1: 60.0, 2: 90.0, 3: 40.0, 4: 80.0}}
    plan = plan_seeds("x", scores, detect=0.05)
    diffs = [0.2, 0.1, 0.2, 0.1]
    assert (plan.first, plan.second, plan.seeds) == ("a", "b", 4)
    assert math.isclose(plan.sd, float(np.std(diffs, ddof=1))) and math.isclose(plan.diff, float(np.mean(diffs)))
    assert math.isclose(plan.detectable, detectable_difference(plan.sd, 4))
    assert plan.to_tell == seeds_needed(plan.diff, plan.sd) and plan.needed == seeds_needed(0.05, plan.sd)
    text = plan.text()
    assert f"the two leading poolings, a and b, differ by +{np.mean(diffs):.2f} points" in text
    assert f"4 seeds detect {plan.detectable:.2f} points between them" in text
    assert f"needs about {plan.to_tell} seeds" in text and f"detecting 0.05 points needs {plan.needed} seeds" in text


def test_a_steady_difference_or_one_shared_seed_gives_no_spread():
    steady = plan_seeds("x", {"a": {1: 2.0, 2: 3.0}, "b": {1: 1.0, 2: 2.0}})
    assert steady.sd == 0 and "differ by the same +1.00 points on all 2 shared seeds" in steady.text()
    single = plan_seeds("x", {"a": {1: 1.0}, "b": {1: 2.0}})
    assert math.isnan(single.sd) and "not enough seeds" in single.text()


def test_without_shared_seeds_the_seed_plan_falls_back_to_sqrt2_times_the_seed_spread():
    scores = {"gap": {1: 70.0, 2: 75.0, 3: 72.0}, "gmp": {4: 60.0, 5: 62.0}}  # no seed in common
    plan = plan_seeds("x", scores)
    pooled = (2 * np.var([70.0, 75.0, 72.0], ddof=1) + 1 * np.var([60.0, 62.0], ddof=1)) / 3
    assert plan.source.startswith("sqrt(2) x their seed spread")
    assert math.isclose(plan.sd, math.sqrt(2 * pooled)) and plan.seeds == 2
    assert math.isclose(plan.detectable, detectable_difference(plan.sd, 2)) and not plan.identical


def test_identical_poolings_get_a_plan_that_says_no_seed_count_separates_them():
    same = {"gap": {1: 70.0, 2: 71.0}, "gmp": {1: 70.0, 2: 71.0}}
    assert "no number of seeds separates them" in plan_seeds("vgg", same).text()


# --- fingerprint and report -----------------------------------------------------------------------

def test_fingerprint_places_gap_at_0_and_gmp_at_1():
    favours = {"m": "mean", "x": "max"}
    scores = {"m": {"gap": 95.0, "gmp": 40.0, "mid": 70.0}, "x": {"gap": 50.0, "gmp": 80.0, "mid": 60.0}}
    rows = {row.pool: row for row in fingerprint(scores, favours).rows}
    assert rows["gap"].lean == 0 and rows["gmp"].lean == 1
    assert math.isclose(rows["mid"].lean, ((60 - 50) - (70 - 95)) / ((80 - 50) - (40 - 95)))
    assert (rows["mid"].mean_side, rows["mid"].max_side) == (70.0, 60.0)
    assert fingerprint({"quick": {"gap": 90.0}}, {}) is None


@pytest.fixture(scope="module")
def diagnostic_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    means = {"diag-majority": {"gap": 95, "gmp": 40}, "diag-brightest": {"gap": 50, "gmp": 70},
             "vgg16bn-cifar100": {"gap": 73, "gmp": 73}}
    noise = {"gap": (0.0, 1.0, 2.5), "gmp": (0.5, 2.0, 1.0)}
    for setting, by_pool in means.items():
        for pool, mean in by_pool.items():
            for k, seed in enumerate((1, 2, 3)):
                offset = noise["gap"][k] if setting.startswith("vgg") else noise[pool][k]  # vgg: identical
                write_run(root, setting, pool, seed, mean + offset, epochs=5)
    return root


def test_the_report_shows_the_fingerprint_seed_plans_and_marks_1x1_settings(diagnostic_sweep, capsys):
    assert main(["report", str(diagnostic_sweep), "--detect", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "## Fingerprint" in text and "diag-majority (mean)" in text and "max-like" in text
    assert "1x1: every parameter-free pooling is the identity here" in text
    assert "the pool input is 512x1x1" in text
    plans = text.split("## Seed planning", 1)[1]
    assert "vgg16bn-cifar100: every paired difference between the two leading poolings" in plans
    assert "no number of seeds separates them" in plans
    assert "diag-majority: the two leading poolings, gap and gmp, differ by" in plans
    assert "3 seeds detect" in plans and "detecting 0.5 points needs" in plans


def test_the_html_report_has_the_fingerprint_plot(diagnostic_sweep, tmp_path):
    assert main(["report", str(diagnostic_sweep), "--output", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Fingerprint</h2>" in page and "alt='fingerprint'" in page and "Seed planning" in page


def test_report_refuses_a_detect_that_is_not_a_positive_difference(diagnostic_sweep, capsys):
    assert main(["report", str(diagnostic_sweep), "--detect", "-1"]) == 2
    assert "--detect takes a difference" in capsys.readouterr().err


def test_report_pool_inputs_come_from_the_settings(diagnostic_sweep):
    report = sweep_analysis.build_report(diagnostic_sweep)
    assert report.pool_is_1x1("vgg16bn-cifar100") and not report.pool_is_1x1("diag-majority")


def test_the_seed_plan_agrees_with_statsmodels_power_solver():
    """Power, the detectable difference and the seeds needed are statsmodels' paired t-test power
    (TTestPower, two-sided), to 1e-6, over a grid of effect sizes and seed counts (issue 19)."""
    from statsmodels.stats.power import TTestPower

    solver, sd = TTestPower(), 2.0
    for effect in (0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0):
        for seeds in (2, 3, 4, 5, 8, 10, 20, 30, 50, 100):
            theirs = solver.power(effect_size=effect, nobs=seeds, alpha=0.05, alternative="two-sided")
            if math.isnan(theirs):  # statsmodels' noncentral t gives NaN far past the critical value
                theirs = 1.0
            assert paired_power(effect * sd, sd, seeds) == pytest.approx(theirs, abs=1e-6), (effect, seeds)
        needed = solver.solve_power(effect_size=effect, alpha=0.05, power=0.8, alternative="two-sided")
        if needed < 5000:
            assert seeds_needed(effect * sd, sd) == max(2, math.ceil(needed)), effect
    for seeds in (3, 5, 10, 20, 50):
        theirs = solver.solve_power(nobs=seeds, alpha=0.05, power=0.8, alternative="two-sided")
        assert detectable_difference(sd, seeds) == pytest.approx(theirs * sd, abs=1e-6 * sd), seeds


def test_the_one_sided_seeds_needed_agree_with_statsmodels():
    """The non-inferiority check's seeds needed: statsmodels' one-sided paired t power (issue 19)."""
    from statsmodels.stats.power import TTestPower

    solver = TTestPower()
    for effect in (0.1, 0.2, 0.35, 0.5, 0.8, 1.0, 2.0):
        needed = solver.solve_power(effect_size=effect, alpha=0.05, power=0.8, alternative="larger")
        assert seeds_needed(effect, 1.0, one_sided=True) == max(2, math.ceil(needed)), effect
        assert seeds_needed(-effect, 1.0, one_sided=True) == max(2, math.ceil(needed)), effect
        assert seeds_needed(effect, 1.0, one_sided=True) <= seeds_needed(effect, 1.0)
