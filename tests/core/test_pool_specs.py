"""Pooling specs with hyper-parameters, ``name(key=value, ...)``: parsing, errors, construction,
labels, and every place that takes a spec (registry.resolve, pools.create, models, check, run, sweep)."""

import functools
import json
import re

import pytest
import torch

import poolbench.pools as pools
from poolbench import models
from poolbench.cli import build_parser, main
from poolbench.cli.run_verb import run_config_from_args
from poolbench.contract import check_pool
from poolbench.core.poolspec import USAGE, normalise_spec, parse_call, split_specs
from poolbench.execution import sweep_runner as sw
from poolbench.pools import registry
from poolbench.pools.classic import GeM
from poolbench.pools.smooth import TopKPool
from poolbench.storage.rundir import pool_label, run_path
from poolbench.storage.sweepdir import load_sweep

LABEL_CHARACTERS = re.compile(r"^[A-Za-z0-9._-]+$")


# --- Parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("gem", ("gem", {})),
    ("topk(k=0.5)", ("topk", {"k": 0.5})),
    ("topk(k=2)", ("topk", {"k": 2})),
    ("gem(p=4, learnable=False)", ("gem", {"p": 4, "learnable": False})),
    ("  gem ( p = 4 ,learnable=False ) ", ("gem", {"p": 4, "learnable": False})),
    ("lse(r=10, r_min=-1e-3)", ("lse", {"r": 10, "r_min": -0.001})),
    ("x(a=None, b='s, (t)', c=(1, 2.5, 'u'), d=True)", ("x", {"a": None, "b": "s, (t)", "c": (1, 2.5, "u"),
                                                         "d": True})),
    ("topk()", ("topk", {})),
])
def test_parse_good_specs(spec, expected):
    assert parse_call(spec) == expected


@pytest.mark.parametrize("spec, problem", [
    ("topk(k=)", "invalid syntax"),
    ("topk(0.5)", "0.5 has no keyword; use name(key=value, ...), e.g. topk(k=0.5)"),
    ("gem(4, False)", "4, False have no keyword; use name(key=value, ...), e.g. gem(p=4, ...)"),
    ("topk(k=0.5", "unbalanced parentheses"),
    ("topk(k=0.5))", "unbalanced parentheses"),
    ("topk k=0.5)", "unbalanced parentheses"),
    ("gem(p=__import__('os'))", "the value of p, __import__('os'), is not a literal"),
    ("gem(p=[1, 2])", "the value of p, [1, 2], is not a literal"),
    ("gem(p=1e400)", "is not a literal"),
    ("topk(k=1, k=2)", "k is given twice"),
    ("topk(**{'k': 1})", "** is not allowed"),
    ("my_pool.py(k=1)", "not a registered name with (key=value, ...)"),
    ("gem(p=1)(eps=2)", "not a registered name with (key=value, ...)"),
    ("topk(kk=0.5)", "topk has no keyword kk (did you mean k?); its keywords are k"),
    ("gem(q=2)", "gem has no keyword q; its keywords are p, eps, p_min, learnable"),
    ("gap(k=1)", "gap has no keyword k; it takes no keywords"),
    ("gem(channels=8)", "channels is set by the model"),
])
def test_malformed_specs_are_one_line_pool_spec_errors_with_the_fix(spec, problem):
    with pytest.raises(pools.PoolSpecError) as caught:
        registry.resolve(spec)
    message = str(caught.value)
    assert problem in message and USAGE in message and "\n" not in message, message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("spec, message", [
    ("gem(p='3')", "gem: p must be a number, got '3'; write it unquoted: gem(p=3)"),
    ("gem(p='x')", "gem: p must be a number, got 'x'; e.g. gem(p=3.0)"),
    ("gem(p=None)", "gem: p must be a number, got None; e.g. gem(p=3.0)"),
    ("gem(p=True)", "gem: p must be a number, got True; e.g. gem(p=3.0)"),
    ("gem(p=(1, 2))", "gem: p must be a number, got (1, 2); e.g. gem(p=3.0)"),
    ("gem(learnable='no')", "gem: learnable must be True or False, got 'no'; e.g. gem(learnable=True)"),
    ("gem(learnable=0)", "gem: learnable must be True or False, got 0"),
    ("simpool(num_heads=2.0)", "simpool: num_heads must be a whole number, got 2.0; e.g. simpool(num_heads=1)"),
    ("topk(k='0.5')", "topk: k must be a number, got '0.5'; write it unquoted: topk(k=0.5)"),
    ("gem(p=" + "9" * 400 + ")", "gem: p must be a finite number, got 999999999999"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_type(spec, message):
    with pytest.raises(pools.HyperParameterError) as caught:
        registry.resolve(spec)
    assert str(caught.value).startswith(message) and len(str(caught.value)) < 200, str(caught.value)
    with pytest.raises(pools.HyperParameterError):  # the same through create()'s keywords
        pools.create(parse_call(spec)[0], 64, **parse_call(spec)[1])


def test_values_are_never_evaluated(tmp_path):
    target = tmp_path / "touched"
    with pytest.raises(pools.PoolSpecError, match="not a literal"):
        registry.resolve(f"gem(p=open({str(target)!r}, 'w'))")
    assert not target.exists()


def test_an_unknown_name_with_values_lists_close_names():
    with pytest.raises(pools.PoolSpecError, match="unknown pooling 'topkk': did you mean topk"):
        registry.resolve("topkk(k=0.5)")


# --- Resolving and building ----------------------------------------------------------------------

def test_resolve_gives_a_partial_of_the_registered_class():
    factory = registry.resolve("gem(p=4, learnable=False)")
    assert isinstance(factory, functools.partial) and factory.func is GeM
    assert factory.keywords == {"p": 4, "learnable": False}
    assert registry.accepts_channels(factory)
    assert registry.hyper_parameters(factory) == ["p", "eps", "p_min", "learnable"]
    assert registry.resolve("gem") is GeM and registry.resolve("GeM()") is GeM


def test_a_spec_builds_what_the_keywords_build():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 4)
    assert isinstance(pools.create("topk(k=0.5)", 8), TopKPool)
    assert pools.create("topk(k=0.5)", 8).k == pools.create("topk", 8, k=0.5).k == 0.5
    torch.testing.assert_close(pools.create("topk(k=1)", 8)(x), x.amax(dim=(2, 3)))  # k=1: max
    positive = x.abs() + 0.1
    torch.testing.assert_close(pools.create("gem(p=1, learnable=False)", 8)(positive), pools.create("gap", 8)(positive))
    fixed = pools.create("gem(p=4, learnable=False)", 8)
    assert list(fixed.parameters()) == [] and fixed.p.item() == 4.0
    torch.testing.assert_close(fixed(positive), pools.create("gem", 8, p=4, learnable=False)(positive))
    assert pools.create("topk(k=0.5)", channels=8).k == 0.5


def test_models_create_takes_a_spec_and_builds_the_same_model_as_a_factory():
    torch.manual_seed(1)
    by_spec = models.create("resnet20", num_classes=10, pool="gem(p=4, learnable=False)")
    torch.manual_seed(1)
    by_factory = models.create("resnet20", num_classes=10,
                               pool=functools.partial(GeM, p=4, learnable=False))
    assert isinstance(by_spec.pool, GeM) and by_spec.pool.p.item() == 4.0
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(by_spec.eval()(x), by_factory.eval()(x))


def test_a_class_without_init_takes_no_keywords(monkeypatch):
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    monkeypatch.setitem(registry._REGISTRY, "plain_spec_test", Plain)
    assert registry.resolve("plain_spec_test()") is Plain
    with pytest.raises(pools.PoolSpecError, match="plain_spec_test has no keyword k; it takes no keywords"):
        registry.resolve("plain_spec_test(k=1)")
    assert not registry.accepts_channels(functools.partial(Plain))


def test_the_contract_check_builds_a_spec_and_names_its_values():
    report = check_pool("topk(k=0.5)", pool_inputs=[(64, 8, 8)], include_cost=False)
    assert report.ok, report.format()
    assert "TopKPool(channels=C, k=0.5)" in report.results[0].message
    bad = check_pool("topk(k=-1)", pool_inputs=[(64, 8, 8)], include_cost=False)
    assert not bad.ok and bad.results[0].message.startswith("topk: k must be a count >= 1")  # its own line
    assert not check_pool("topk(0.5)").ok


# --- Normalised spellings and labels ---------------------------------------------------------------

@pytest.mark.parametrize("spec, normal", [
    ("gem(p=4,learnable=False)", "gem(p=4, learnable=False)"),
    ("  GeM( p = 4 , learnable = False )", "gem(p=4, learnable=False)"),
    ("topk(k=.5)", "topk(k=0.5)"),
    ("meanstd(lam=1.0, learnable=False)", "meanstd(lam=1.0, learnable=False)"),  # key order is the user's
    ("x(s=\"a, b\", t=( 1 ,2 ))", "x(s='a, b', t=(1, 2))"),
    ("topk()", "topk"),
    ("gem", "gem"),
    ("GeM", "gem"),  # a plain name as the registry keeps it: GeM and gem are one run; files as given
    ("dir/my_pool.py:Other", "dir/my_pool.py:Other"),
])
def test_normalise_spec(spec, normal):
    assert normalise_spec(spec) == normal
    assert normalise_spec(normal) == normal


@pytest.mark.parametrize("spec, label", [
    ("topk(k=0.5)", "topk-k0.5"),
    ("gem(p=4, learnable=False)", "gem-p4-learnableFalse"),
    ("gem(p=4,learnable=False)", "gem-p4-learnableFalse"),
    ("gem( p=4 , learnable=False )", "gem-p4-learnableFalse"),
    ("lse(r=10)", "lse-r10"),
    ("lse(r=-1e-3)", "lse-r-0.001"),
    ("cov(dim=(8, 16))", "cov-dim8_16"),
    ("x(s='a b/c', n=None)", "x-sa_b_c-nNone"),
    ("gem", "gem"),
    ("dir/my_pool.py", "my_pool"),
    ("dir/my_pool.py:Other", "my_pool-Other"),
])
def test_pool_labels_are_folder_friendly(spec, label):
    assert pool_label(spec) == label
    assert LABEL_CHARACTERS.match(label)
    assert run_path("runs", "quick", spec, 1).as_posix() == f"runs/quick/{label}/seed1"


def test_file_specs_are_not_taken_for_call_specs():
    assert registry.is_file_spec("my_pool.py") and registry.is_file_spec("a(1).py:Pool")
    assert not registry.is_file_spec("gem(s='a.py:b')") and not registry.is_file_spec("topk(k=0.5)")


def test_run_config_stores_the_normalised_spec():
    parser = build_parser()

    def config(pool):
        return run_config_from_args(parser.parse_args(["run", "--setting", "quick", "--pool", pool]))

    assert config("gem(p=4,learnable=False)") == config("gem(p=4, learnable=False)")
    assert config("gem(p=4,learnable=False)").pool == "gem(p=4, learnable=False)"
    assert config("gem(p=4,learnable=False)").pool_sha256 is None
    with pytest.raises(pools.PoolSpecError, match="use name"):
        config("topk(k=)")


# --- Sweeps --------------------------------------------------------------------------------------

def test_pools_split_keeps_parentheses_whole_and_settings_split_as_before():
    assert split_specs("gap,topk(k=0.1), topk(k=0.5),gem(p=4, learnable=False),,gap") == [
        "gap", "topk(k=0.1)", "topk(k=0.5)", "gem(p=4, learnable=False)"]
    assert sw.split_pools("x(s='a,b', t=(1, 2)),gmp") == ["x(s='a,b', t=(1, 2))", "gmp"]
    assert sw.split_list("quick, resnet56-cifar100,quick") == ["quick", "resnet56-cifar100"]


def test_a_dry_run_sweep_plans_one_folder_per_spec_and_passes_the_spec_to_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    pools_arg = "gap,topk(k=0.1),topk(k=0.5),gem(p=4, learnable=False),gem(p=4,learnable=False)"
    assert main(["sweep", "--pools", pools_arg, "--seeds", "1", "--out", str(out), "--dry-run"]) == 0
    planned = re.findall(r"^(\S+)\s+pending$", capsys.readouterr().out, flags=re.M)
    assert planned == ["quick/gap/seed1", "quick/topk-k0.1/seed1", "quick/topk-k0.5/seed1",
                       "quick/gem-p4-learnableFalse/seed1"]
    stored = json.loads((out / "sweep.json").read_text())["pools"]
    assert stored == {"gap": "gap", "topk-k0.1": "topk(k=0.1)", "topk-k0.5": "topk(k=0.5)",
                      "gem-p4-learnableFalse": "gem(p=4, learnable=False)"}
    assert not (out / "pools").exists()  # no file to copy
    sweep = load_sweep(out)
    gem_run = next(run for run in sweep.runs() if run.pool == "gem-p4-learnableFalse")
    arguments = sw.run_arguments(sweep, gem_run)
    assert arguments[arguments.index("--pool") + 1] == "gem(p=4, learnable=False)"
    assert arguments[arguments.index("--output-dir") + 1] == "quick/gem-p4-learnableFalse/seed1"


@pytest.mark.parametrize("pools_arg, message", [
    ("gap,topk(k=0.1", "unbalanced parentheses"),
    ("topk(kk=1)", "topk has no keyword kk"),
    ("topk(k='a')", "topk: k must be a number, got 'a'"),
    ("worded(mode='a b'),worded(mode='a_b')", "pooling name 'worded-modea_b' would name two poolings"),
])
def test_bad_specs_in_a_sweep_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch, pools_arg,
                                                                    message):
    class Worded(torch.nn.Module):  # a pooling with a text hyper-parameter, whose labels can collide
        def __init__(self, channels=None, mode="x"):
            super().__init__()

        def forward(self, x):
            return x.mean(dim=(2, 3))

    monkeypatch.setitem(registry._REGISTRY, "worded", Worded)
    out = tmp_path / "sweep"
    assert main(["sweep", "--pools", pools_arg, "--out", str(out), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert not (out / "sweep.json").exists()


# --- The command line ----------------------------------------------------------------------------

def test_check_takes_a_spec(capsys):
    assert main(["check", "topk(k=0.5)"]) == 0
    assert "TopKPool(channels=C, k=0.5)" in capsys.readouterr().out
    assert main(["check", "topk(k=)"]) == 1
    assert "use name(key=value, ...)" in capsys.readouterr().out


def test_a_bad_spec_makes_run_exit_2_with_one_line(tmp_path, capsys):
    assert main(["run", "--setting", "quick", "--pool", "topk(0.5)", "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: bad pooling spec 'topk(0.5)': 0.5 has no keyword; "
                           "use name(key=value, ...), e.g. topk(k=0.5)")
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize("spec, line", [
    ("topk(k=2.5)", "error: topk: k must be a fraction in (0, 1] when written with a decimal point, got 2.5; use "
                    "a fraction of the positions in (0, 1] such as topk(k=0.25), or a whole count such as topk(k=2)"),
    ("lse(r=0)", "error: lse: r must be > r_min = 0.1 (r is clamped to >= r_min and gets no gradient there: it "
                 "trains as lse(r=0.1) for good), got 0; use e.g. lse(r=5)"),
    ("gem(p='3')", "error: gem: p must be a number, got '3'; write it unquoted: gem(p=3)"),
])
def test_a_refused_value_makes_run_exit_2_with_one_line_and_no_folder(tmp_path, capsys, spec, line):
    assert main(["run", "--setting", "quick", "--pool", spec, "--output-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == line
    assert not (tmp_path / "r").exists()
    report = check_pool(spec, pool_inputs=[(64, 8, 8)], include_cost=False)
    assert not report.ok and line.removeprefix("error: ") in report.results[0].message


def test_run_with_a_spec_trains_and_records_it(tmp_path, capsys):
    out_dir = tmp_path / "run"
    code = main(["run", "--setting", "quick", "--epochs", "1", "--image-size", "16", "--pool", "topk( k=0.5 )",
                 "--output-dir", str(out_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().splitlines()[-1].startswith("TEST_METRICS: test_acc=")
    config = json.loads((out_dir / "config.json").read_text())["config"]
    assert config["pool"] == "topk(k=0.5)"
    assert json.loads((out_dir / "result.json").read_text())["status"] == "completed"
    # Another spelling of the same spec is the same run: finished, not trained again.
    assert main(["run", "--setting", "quick", "--epochs", "1", "--image-size", "16", "--pool", "topk(k=0.5)",
                 "--output-dir", str(out_dir)]) == 0
    assert "not run again" in capsys.readouterr().err
