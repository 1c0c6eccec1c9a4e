"""``poolbench export``: a sweep folder as tidy tables that pandas reads as they are."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from run_folders import write_run

from poolbench.analysis.sweep_analysis import SCORES, run_score
from poolbench.cli import main
from poolbench.render.export import EPOCH_COLUMNS, PROTOCOL_FIELDS, RUN_COLUMNS, read_tables
from poolbench.storage.sweep_runs import collect_runs


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "sweep"
    for seed, best in ((1, 90.0), (2, 91.5)):
        write_run(root, "quick", "gap", seed, best, epochs=3, val=best - 1.0)
    write_run(root, "quick", "gem", 1, None, epochs=3)  # diverged: a row without scores
    write_run(root, "quick", "gem", 2, 92.0, epochs=3, finished=False)  # interrupted after 3 epochs
    return root


def test_export_writes_one_row_per_run_and_one_per_epoch_that_pandas_reads(sweep_dir, tmp_path, capsys):
    out = tmp_path / "tables" / "runs.csv"
    out.parent.mkdir()
    assert main(["export", str(sweep_dir), "--output", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    runs = pd.read_csv(out)
    assert list(runs.columns) == list(RUN_COLUMNS) and set(PROTOCOL_FIELDS) <= set(runs.columns)
    assert len(runs) == 4 and runs["seed"].dtype.kind == "i" and runs["best_test_acc"].dtype.kind == "f"
    by_key = runs.set_index(["pool", "seed"])
    assert by_key.loc[("gap", 2), "best_test_acc"] == 91.5 and by_key.loc[("gap", 2), "val_test_acc"] == 90.5
    assert by_key.loc[("gap", 1), "status"] == "completed" and by_key.loc[("gem", 1), "status"] == "diverged"
    assert by_key.loc[("gem", 2), "status"] == "interrupted" and pd.isna(by_key.loc[("gem", 2), "final_test_acc"])
    assert (runs["epochs"] == 3).all() and (runs["lr"] == runs["lr"].iloc[0]).all()
    epochs = pd.read_csv(tmp_path / "tables" / "runs-epochs.csv")
    assert list(epochs.columns) == list(EPOCH_COLUMNS)
    assert len(epochs) == 3 * 3 + 2  # three epochs each, two for the diverged run
    assert epochs.groupby(["pool", "seed"])["test_acc"].max().loc[("gap", 2)] == 91.5


def test_parquet_tables_read_back_as_the_csv_ones(sweep_dir, tmp_path):
    assert main(["export", str(sweep_dir), "--output", str(tmp_path / "runs.parquet")]) == 0
    assert main(["export", str(sweep_dir), "--output", str(tmp_path / "runs.csv")]) == 0
    for stem in ("runs", "runs-epochs"):
        parquet, text = pd.read_parquet(tmp_path / f"{stem}.parquet"), pd.read_csv(tmp_path / f"{stem}.csv")
        assert list(parquet.columns) == list(text.columns) and len(parquet) == len(text)
        for column in ("seed", "test_acc" if stem == "runs-epochs" else "best_test_acc"):
            assert parquet[column].tolist() == pytest.approx(text[column].tolist(), nan_ok=True)


def test_export_refuses_what_it_cannot_write_in_one_line(sweep_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as where pyarrow is not installed
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    cases = [(["--output", str(tmp_path / "no" / "runs.csv")], "must be a file in an existing folder"),
             (["--output", str(sweep_dir / "quick" / "gap" / "seed1" / "t.csv")], "is in a run folder"),
             (["--output", str(tmp_path / "runs.parquet")], "needs pyarrow")]
    for flags, words in cases:
        assert main(["export", str(sweep_dir), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0]
    assert not list(tmp_path.glob("*.parquet")) and not (sweep_dir / "quick" / "gap" / "seed1" / "t.csv").exists()
    assert main(["export", str(tmp_path / "nothing"), "--output", str(tmp_path / "x.csv")]) == 2


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_tables_read_back_as_the_runs_of_the_folder(sweep_dir, tmp_path, fmt):
    """What a report reads of a run is in the tables: `poolbench report` takes them for the folder."""
    assert main(["export", str(sweep_dir), "--output", str(tmp_path / f"runs.{fmt}")]) == 0
    folder, table = collect_runs(sweep_dir), read_tables(tmp_path / f"runs.{fmt}")
    assert len(table) == len(folder) == 4
    for mine, theirs in zip(folder, table, strict=True):
        assert theirs.path == tmp_path / f"runs.{fmt}" / mine.path.relative_to(sweep_dir)
        for key in ("setting", "pool", "seed", "status", "best_test_acc", "epochs_completed", "epochs", "problem"):
            assert getattr(theirs, key) == getattr(mine, key), key
        assert [run_score(theirs, score) for score in SCORES] == [run_score(mine, score) for score in SCORES]
        assert theirs.config is not None and mine.config is not None
        assert theirs.config["protocol"] == mine.config["protocol"]
        assert theirs.metrics == mine.metrics  # every epoch's record, as metrics.jsonl holds it
        assert (theirs.result or {}).get("pool_input_shape") == (mine.result or {}).get("pool_input_shape")
