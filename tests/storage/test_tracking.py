"""`run`/`sweep --log tensorboard,mlflow,wandb`: each tracker tested for real and offline, read back
with its own tool: TensorBoard's EventAccumulator, MLflow's client on a local SQLite store, and
W&B's offline run file (its records are W&B's own protobuf messages)."""

import json
import socket
import struct
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from wandb.proto import wandb_internal_pb2

from poolbench.cli import main
from poolbench.storage import tracking

# 16x16 images: what the trackers receive is the same at any image size.
RUN = ["run", "--setting", "quick", "--epochs", "2", "--threads", "1", "--image-size", "16"]
EPOCH_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Trackers with nothing to reach: W&B offline into tmp_path, MLflow's default store, the
    working folder tmp_path (MLflow's default store is there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- Each tool's own reader ---------------------------------------------------------------------------

def tensorboard_scalars(folder: Path) -> tuple[EventAccumulator, dict[str, list[tuple[int, float]]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return events, {tag: [(s.step, s.value) for s in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tensorboard_hparams(events: EventAccumulator) -> tuple[dict, int | None]:
    """The hparams session's values and its end status (None without an end)."""
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = {key: value.number_value if value.HasField("number_value") else
              value.bool_value if value.HasField("bool_value") else value.string_value
              for key, value in start.session_start_info.hparams.items()}
    end = content.get("_hparams_/session_end_info")
    return values, plugin_data_pb2.HParamsPluginData.FromString(end).session_end_info.status if end else None


def wandb_records(path: Path) -> list:
    """The records of a W&B run file: W&B's protobuf messages in LevelDB's log format (after a
    7-byte ':W&B' header, 32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, position, pieces, block = [], 7, b"", 32768
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if left < 7 or (kind == 0 and length == 0):  # a block's padding
            position += left
            continue
        pieces += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def wandb_run(folder: Path) -> dict:
    """What W&B's offline run files under ``folder`` hold: the run record, the history rows by
    step, the summary and the exit codes (a resumed run has one file per start)."""
    files = sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {folder}"
    run, history, summary, exits, starts = None, [], {}, [], 0
    for path in files:
        starts += 1
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
            elif kind == "history":
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
            elif kind == "summary":
                summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.summary.update})
            elif kind == "exit":
                exits.append(record.exit.exit_code)
    assert run is not None
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    return {"run": run, "config": config, "history": history, "summary": summary, "exits": exits,
            "files": files, "starts": starts}


def mlflow_runs(store: Path, experiment: str) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} in {store}"
    return client.search_runs([found.experiment_id])


def mlflow_history(store: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


# --- One run, three trackers ----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_logs_epochs_configuration_and_result_to_all_three(offline, capsys):
    run_dir = offline / "run"
    assert main([*RUN, "--seed", "1", "--output-dir", str(run_dir), "--log", "tensorboard,mlflow,wandb"]) == 0
    out = capsys.readouterr().out
    # The trackers print nothing on stdout: it holds only the run's metric lines.
    assert all(line.startswith(("TRAIN_METRICS", "TEST_METRICS")) for line in out.splitlines()), out
    epochs = metrics(run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    assert [e["epoch"] for e in epochs] == [1, 2] and result["status"] == "completed"

    events, scalars = tensorboard_scalars(run_dir / "tensorboard")
    for key in EPOCH_KEYS:
        assert scalars[key] == [(e["epoch"], pytest.approx(e[key])) for e in epochs], key
    assert scalars["result/best_test_acc"] == [(2, pytest.approx(result["best_test_acc"]))]
    values, status = tensorboard_hparams(events)
    assert values["setting"] == "quick" and values["pool"] == "gap" and values["seed"] == 1
    protocol = json.loads((run_dir / "config.json").read_text())["config"]["protocol"]
    assert values["protocol.epochs"] == 2 and values["protocol.lr"] == pytest.approx(protocol["lr"])
    assert status == api_pb2.STATUS_SUCCESS

    (logged,) = mlflow_runs(offline / "mlflow.db", "quick")  # MLflow's default store: the working folder
    assert logged.info.run_name == "quick/gap/seed1" and logged.info.status == "FINISHED"
    assert {k: logged.data.tags[k] for k in ("setting", "pool", "seed")} == {"setting": "quick", "pool": "gap",
                                                                              "seed": "1"}
    assert logged.data.params["protocol.epochs"] == "2" and logged.data.params["arch"] == "resnet20"
    for key in EPOCH_KEYS:
        assert mlflow_history(offline / "mlflow.db", logged.info.run_id, key) == [
            (e["epoch"], pytest.approx(e[key])) for e in epochs]
    assert logged.data.metrics["best_test_acc"] == pytest.approx(result["best_test_acc"])
    assert logged.data.tags["poolbench.render.status"] == "completed"

    wandb = wandb_run(offline)
    assert (wandb["run"].run_group, wandb["run"].job_type, wandb["run"].display_name) == (
        "quick/gap", "train", "quick/gap/seed1")
    assert wandb["config"]["seed"] == 1 and wandb["config"]["protocol"]["epochs"] == 2
    assert [(row["_step"], row["test_acc"]) for row in wandb["history"]] == [
        (e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]
    assert wandb["summary"]["best_test_acc"] == pytest.approx(result["best_test_acc"])
    assert wandb["summary"]["status"] == "completed" and wandb["exits"] == [0]

    state = json.loads((run_dir / tracking.STATE_FILE).read_text())
    assert {name: state[name]["logged_epochs"] for name in tracking.TRACKERS} == dict.fromkeys(tracking.TRACKERS, 2)
    assert state["mlflow"]["run_id"] == logged.info.run_id and state["wandb"]["id"] == wandb["run"].run_id


# --- Resume -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_resumed_run_continues_the_same_tracker_runs_and_logs_no_epoch_twice(offline, monkeypatch, capsys):
    run_dir = offline / "run"
    argv = [*RUN, "--seed", "3", "--output-dir", str(run_dir), "--log", "tensorboard,mlflow,wandb"]
    log_epoch = tracking.Tracking.log_epoch

    def interrupted_after_logging(self, record):  # Ctrl-C once epoch 1 is in every tracker
        log_epoch(self, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(tracking.Tracking, "log_epoch", interrupted_after_logging)
    assert main(argv) == 130
    first = json.loads((run_dir / tracking.STATE_FILE).read_text())
    assert first["mlflow"]["logged_epochs"] == 1 and not (run_dir / "result.json").exists()
    (killed,) = mlflow_runs(offline / "mlflow.db", "quick")
    assert killed.info.status == "KILLED"

    monkeypatch.setattr(tracking.Tracking, "log_epoch", log_epoch)
    capsys.readouterr()
    assert main(argv) == 0
    assert "resumed" in capsys.readouterr().err
    epochs = metrics(run_dir)

    _, scalars = tensorboard_scalars(run_dir / "tensorboard")
    assert scalars["test_acc"] == [(e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]

    (logged,) = mlflow_runs(offline / "mlflow.db", "quick")  # the same MLflow run, continued
    assert logged.info.run_id == first["mlflow"]["run_id"] and logged.info.status == "FINISHED"
    assert [step for step, _ in mlflow_history(offline / "mlflow.db", logged.info.run_id, "test_acc")] == [1, 2]

    wandb = wandb_run(offline)  # one offline file per start, one W&B run id: `wandb sync` joins them
    assert wandb["starts"] == 2 and {path.stem for path in wandb["files"]} == {f"run-{first['wandb']['id']}"}
    assert [row["_step"] for row in wandb["history"]] == [1, 2]


# --- A sweep ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_sweep_carries_log_to_each_run_a_tensorboard_folder_and_an_mlflow_run_each(offline, capsys):
    out = offline / "sweep"
    code = main(["sweep", "--pools", "gap", "--settings", "quick", "--seeds", "1,2", "--epochs", "2",
                 "--threads", "1", "--image-size", "16", "--log", "tensorboard,mlflow", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "sweep.json").read_text())["options"]["log"] == "tensorboard,mlflow"

    board = EventMultiplexer()  # what `tensorboard --logdir SWEEP` reads: a run per run folder
    board.AddRunsFromDirectory(str(out))
    board.Reload()
    assert set(board.Runs()) == {"quick/gap/seed1/tensorboard", "quick/gap/seed2/tensorboard"}
    for seed in (1, 2):
        epochs = metrics(out / "quick" / "gap" / f"seed{seed}")
        steps = [(s.step, s.value) for s in board.Scalars(f"quick/gap/seed{seed}/tensorboard", "test_acc")]
        assert steps == [(e["epoch"], pytest.approx(e["test_acc"])) for e in epochs]

    # The runs work in the sweep folder, so MLflow's default store is the sweep's own.
    runs = mlflow_runs(out / "mlflow.db", "quick")
    assert sorted((r.info.run_name, r.data.tags["seed"], r.info.status) for r in runs) == [
        ("quick/gap/seed1", "1", "FINISHED"), ("quick/gap/seed2", "2", "FINISHED")]


# --- Refusals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["run", "sweep"])
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_written(offline, monkeypatch, capsys, verb):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python does for a package that is not there
    folder = offline / "out"
    argv = ([*RUN, "--output-dir", str(folder)] if verb == "run" else
            ["sweep", "--pools", "gap", "--settings", "quick", "--seeds", "1", "--out", str(folder)])
    assert main([*argv, "--log", "tensorboard,mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --log mlflow: mlflow is not installed"), err
    assert 'pip install "poolbench[mlflow]"' in err
    assert not folder.exists() and not (offline / "mlflow.db").exists()


def test_a_tracker_name_that_is_none_is_refused(offline, capsys):
    assert main([*RUN, "--output-dir", str(offline / "out"), "--log", "tensorbord"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--log 'tensorbord' is no tracker" in err and "tensorboard, mlflow, wandb" in err
    assert not (offline / "out").exists()


def test_an_mlflow_server_that_cannot_be_reached_is_one_line_at_the_start(offline, monkeypatch, capsys):
    with socket.socket() as closed:  # a port that refuses connections: bound, never listening
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed.getsockname()[1]}")
        assert main([*RUN, "--output-dir", str(offline / "out"), "--log", "mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the MLflow tracking server http://127.0.0.1:" in err, err
    assert not (offline / "out").exists()


def test_wandb_online_without_a_login_is_one_line_at_the_start(offline, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(offline / "no-netrc"))  # no stored key either
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(offline / "wandb-config"))
    assert main([*RUN, "--output-dir", str(offline / "out"), "--log", "wandb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "W&B has no API key here" in err and "WANDB_MODE=offline" in err, err
    assert not (offline / "out").exists()


@pytest.mark.slow
def test_a_tracker_failing_during_the_run_stops_logging_and_the_run_completes(offline, monkeypatch, capsys):
    def broken(self, record):
        raise ConnectionError("the server went away")

    monkeypatch.setattr(tracking.TensorBoard, "log_epoch", broken)
    run_dir = offline / "run"
    assert main([*RUN, "--output-dir", str(run_dir), "--log", "tensorboard,mlflow"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: --log tensorboard stopped logging (the server went away)") == 1
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"
    (logged,) = mlflow_runs(offline / "mlflow.db", "quick")  # the other tracker went on
    assert [step for step, _ in mlflow_history(offline / "mlflow.db", logged.info.run_id, "test_acc")] == [1, 2]
