"""Experiment trackers: a run's epochs, configuration and result, also logged where researchers
already look: TensorBoard, MLflow, Weights & Biases (``run``/``sweep --log tensorboard,mlflow,wandb``).

The run folder stays the truth; a tracker holds a copy. Each library is an optional extra
(``pip install "poolbench[tensorboard,mlflow,wandb]"``), imported only when asked for. Each
follows its tool's conventions:

- **TensorBoard**: the event files of a run in ``<run folder>/tensorboard/``, so ``tensorboard
  --logdir SWEEP`` shows a sweep's runs as ``<setting>/<pool>/seed<k>/tensorboard``; a scalar per
  epoch metric (step = epoch), the configuration as hparams, the result as ``result/...`` scalars
  and the hparams session's end status.
- **MLflow**: the store of ``$MLFLOW_TRACKING_URI``, else MLflow's own default, ``mlflow.db``
  (SQLite) in the working folder, which for a sweep's runs is the sweep folder; an experiment per
  setting (``$MLFLOW_EXPERIMENT_NAME`` overrides it), a run named ``<setting>/<pool>/seed<k>``
  tagged with ``setting``, ``pool`` and ``seed``, the configuration as params (``protocol.lr``),
  epoch metrics with step = epoch, and the result as metrics, a ``poolbench.render.status`` tag, the
  ``result.json`` artifact and the MLflow run status.
- **W&B**: project ``$WANDB_PROJECT`` (default ``poolbench``), ``group`` = ``<setting>/<pool>`` (W&B
  draws a group's seeds as a mean with a band), ``job_type`` ``train``, name ``<setting>/<pool>/seed<k>``,
  ``config`` = the run's configuration, epoch metrics with step = epoch, the result in the summary.
  ``$WANDB_MODE`` (``offline``: ``wandb sync`` later) and ``$WANDB_DIR`` are W&B's own.

Metric names are those of ``metrics.jsonl`` (``train_loss``, ``test_acc``, ...) and ``result.json``
(``best_test_acc``, ...). A tracker that is not installed or cannot be reached is refused before
the run starts (:func:`problem`); one that fails during the run stops logging with a warning and
the run goes on. ``tracking.json`` in the run folder keeps each tracker's run id and how many
epochs it holds: a resumed run continues the same tracker runs and logs only the epochs they lack.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.unique import unique
from ..training.train import EpochRecord
from .rundir import DamagedFileError, RunConfig, pool_label, read_json_object, write_json

TRACKERS = ("tensorboard", "mlflow", "wandb")
STATE_FILE = "tracking.json"
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DEFAULT_DB = "mlflow.db"  # MLflow's own default store: SQLite in the working folder
WANDB_DEFAULT_PROJECT = "poolbench"
#: result.json's numbers a tracker records as the run's result.
RESULT_METRICS = ("best_test_acc", "best_epoch", "final_test_acc", "val_test_acc", "val_epoch", "best_val_acc",
                  "epochs_completed", "wall_time_s", "num_params")
PROBE_TIMEOUT_S = 10  # how long the check at the start waits for a tracking server

Log = Callable[[str], None]


class TrackerError(Exception):
    """A tracker cannot start: one line with the fix."""


def parse(text: str | None) -> tuple[str, ...]:
    """The trackers of ``--log``: comma-separated names, ``none`` for none; ValueError with the fix.

    >>> parse("tensorboard, wandb,tensorboard")
    ('tensorboard', 'wandb')
    >>> parse("none")
    ()
    """
    names = [name.strip().lower() for name in (text or "").split(",") if name.strip()]
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in TRACKERS]
    if unknown:
        raise ValueError(f"--log {unknown[0]!r} is no tracker: give a comma-separated list of "
                         f"{', '.join(TRACKERS)} (or none)")
    return tuple(unique(names))


def install_fix(name: str) -> str:
    return f"pip install \"poolbench[{name}]\""


def problem(names: Sequence[str]) -> str | None:
    """Why one of the trackers cannot log (not installed, its server unreachable, no W&B login),
    in one line with the fix; None when each can. Writes nothing in the run's or sweep's folder."""
    for name in names:
        try:
            importlib.import_module(name)  # the package itself: the extra's one requirement
        except ImportError as error:
            return (f"--log {name}: {name} is not installed ({error}): {install_fix(name)}, "
                    f"or leave {name} out of --log")
        if name == "mlflow":
            found = _mlflow_problem()
        elif name == "wandb":
            found = _wandb_problem()
        else:
            found = None  # TensorBoard writes files in the run folder: nothing to reach
        if found is not None:
            return f"--log {name}: {found}"
    return None


def mlflow_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else MLflow's default: ``mlflow.db`` (SQLite) in the working folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / MLFLOW_DEFAULT_DB}"


def _mlflow_problem() -> str | None:
    uri = mlflow_uri()
    if not uri.startswith(("http://", "https://", "databricks")):
        return None  # a local store: MLflow creates it when the run starts
    from mlflow.tracking import MlflowClient

    # MLflow retries a request for minutes by default: the check waits at most PROBE_TIMEOUT_S.
    with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(PROBE_TIMEOUT_S)):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as error:  # MlflowException, requests' errors: any means it cannot log
            return (f"cannot reach the MLflow tracking server {uri} ({_one_line(error)}): start it, "
                    f"correct MLFLOW_TRACKING_URI, or unset it to log to {MLFLOW_DEFAULT_DB} here")
    return None


def _wandb_problem() -> str | None:
    import wandb

    # $WANDB_MODE as it is now (W&B reads it once per process), else `wandb offline`'s settings file.
    if (os.environ.get("WANDB_MODE") or wandb.setup().settings.mode) in ("offline", "disabled", "dryrun"):
        return None
    try:
        logged_in = wandb.login(prompt=False, verify=True, timeout=PROBE_TIMEOUT_S)
    except Exception as error:  # AuthenticationError, CommError: a bad key or no connection
        return (f"cannot log in to W&B ({_one_line(error)}): check the network and `wandb login`, or log "
                f"offline with WANDB_MODE=offline and `wandb sync` later")
    if not logged_in:
        return ("W&B has no API key here: run `wandb login` (or set WANDB_API_KEY), or log offline with "
                "WANDB_MODE=offline and `wandb sync` later")
    return None


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set for a block, unless the user set them."""
    added = [key for key in values if key not in os.environ]
    os.environ.update({key: values[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_name(config: RunConfig) -> str:
    """``<setting>/<pool>/seed<k>``: the run's folder below its sweep, its name in every tracker."""
    return f"{group_name(config)}/seed{config.seed}"


def group_name(config: RunConfig) -> str:
    """``<setting>/<pool>``: the runs that differ only in their seed."""
    return f"{config.setting}/{pool_label(config.pool)}"


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """An epoch's metrics as in metrics.jsonl, without the epoch (a tracker's step)."""
    values = record.as_record()
    del values["epoch"]
    return values


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers of result.json a tracker records (the scores where present, epochs, wall time)."""
    return {key: float(result[key]) for key in RESULT_METRICS
            if isinstance(result.get(key), (int, float)) and not isinstance(result.get(key), bool)}


class Tracker:
    """One tracker of one run. ``start`` returns how many epochs the tracker already holds (a
    resumed run logs the epochs after them); ``state`` is what tracking.json keeps for it."""

    name = ""

    def start(self, config: RunConfig, run_dir: Path, state: dict[str, Any], first_epoch: int) -> int:
        raise NotImplementedError

    def log_epoch(self, record: EpochRecord) -> None:
        raise NotImplementedError

    def finish(self, result: dict[str, Any] | None) -> None:
        """The run's result (None: interrupted; it resumes into the same tracker run)."""
        raise NotImplementedError


class TensorBoard(Tracker):
    name = "tensorboard"

    def start(self, config: RunConfig, run_dir: Path, state: dict[str, Any], first_epoch: int) -> int:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = run_dir / TENSORBOARD_DIR
        # An earlier start's events from first_epoch on are dropped by TensorBoard's readers, so an
        # epoch logged again after a crash is never shown twice.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=first_epoch if folder.exists() else None)
        if first_epoch == 1:
            # hparams take numbers, strings and bools: anything else (a future list field) as its text
            values = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                      for key, value in config.flat().items() if value is not None}
            metrics = {f"result/{key}": None for key in ("best_test_acc", "final_test_acc", "val_test_acc")}
            experiment, session_start, _ = hparams(values, metrics)
            self._add_summary(experiment)
            self._add_summary(session_start)
        return first_epoch - 1

    def _add_summary(self, summary: Any) -> None:
        events = self.writer.file_writer
        assert events is not None  # made by SummaryWriter's constructor, gone only after close()
        events.add_summary(summary)

    def log_epoch(self, record: EpochRecord) -> None:
        for key, value in epoch_metrics(record).items():
            self.writer.add_scalar(key, value, record.epoch)
        self.writer.flush()

    def finish(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            step = int(result.get("epochs_completed") or 0)
            for key, value in result_metrics(result).items():
                self.writer.add_scalar(f"result/{key}", value, step)
            self._add_summary(_session_end(result.get("status") == "completed"))
        self.writer.close()


def _session_end(success: bool) -> Any:
    """The hparams session-end summary with the run's status (torch's ``hparams`` writes only success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    info = SessionEndInfo(status=Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE"),
                          end_time_secs=time.time())
    content = HParamsPluginData(session_end_info=info, version=0)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams",
                                                                      content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=metadata)])


class MLflow(Tracker):
    name = "mlflow"

    def start(self, config: RunConfig, run_dir: Path, state: dict[str, Any], first_epoch: int) -> int:
        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        uri = mlflow_uri()
        with _store_lock(uri):  # runs of a sweep starting together create the store and experiment once
            self.client = MlflowClient(tracking_uri=uri)
            run_id = state.get("run_id") if state.get("tracking_uri") == uri else None
            if run_id is not None and self._usable(run_id):
                self.run_id = run_id
                self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
                # MLflow's own record of the epochs it holds: a crash between logging an epoch and
                # writing tracking.json must not log that epoch twice.
                return max((metric.step for metric in self.client.get_metric_history(run_id, "test_acc")), default=0)
            experiment_id = self._experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or config.setting)
        tags = {"setting": config.setting, "pool": config.pool, "seed": str(config.seed), "arch": config.arch,
                "dataset": config.dataset, "poolbench.run_dir": str(run_dir.resolve())}
        run = self.client.create_run(experiment_id, tags=tags, run_name=run_name(config))
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(key, str(value)) for key, value in config.flat().items()])
        state.update(tracking_uri=uri, run_id=self.run_id, experiment_id=experiment_id)
        return 0

    def _usable(self, run_id: str) -> bool:
        try:
            return bool(self.client.get_run(run_id).info.lifecycle_stage == "active")
        except Exception:  # deleted from the store, or another store: a new run
            return False

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # another run (a remote store's) created it in between
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def log_epoch(self, record: EpochRecord) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, record.epoch)
                                                    for key, value in epoch_metrics(record).items()])

    def finish(self, result: dict[str, Any] | None) -> None:
        from mlflow.entities import Metric

        if result is None:
            self.client.set_terminated(self.run_id, "KILLED")
            return
        now, step = int(time.time() * 1000), int(result.get("epochs_completed") or 0)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step)
                                                    for key, value in result_metrics(result).items()])
        self.client.set_tag(self.run_id, "poolbench.render.status", str(result.get("status")))
        self.client.log_dict(self.run_id, result, "result.json")
        self.client.set_terminated(self.run_id, "FINISHED" if result.get("status") == "completed" else "FAILED")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """A lock beside a local SQLite store while it is created: two first runs would both set it up."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import filelock

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(database) + ".lock"):
        yield


class WandB(Tracker):
    name = "wandb"

    def start(self, config: RunConfig, run_dir: Path, state: dict[str, Any], first_epoch: int) -> int:
        import wandb

        # console off: the run's stdout holds only its metric lines, and W&B must not wrap it. The
        # folder and mode are passed as the environment says now: W&B reads it once per process.
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or WANDB_DEFAULT_PROJECT,
                              dir=os.environ.get("WANDB_DIR"), mode=os.environ.get("WANDB_MODE"),  # type: ignore[arg-type]
                              group=group_name(config), job_type="train", name=run_name(config),
                              config={**config.to_dict(), "run_dir": str(run_dir.resolve())},
                              id=state.get("id"), resume="allow", reinit="create_new",
                              settings=wandb.Settings(console="off"))
        state.update(id=self.run.id)
        return first_epoch - 1

    def log_epoch(self, record: EpochRecord) -> None:
        self.run.log({**epoch_metrics(record), "epoch": record.epoch}, step=record.epoch)

    def finish(self, result: dict[str, Any] | None) -> None:
        if result is not None:
            self.run.summary.update({**result_metrics(result), "status": str(result.get("status")),
                                     "error": result.get("error")})
        self.run.finish(exit_code=0 if result is not None and result.get("status") == "completed" else 1)


CLASSES: dict[str, type[Tracker]] = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


class Tracking:
    """The trackers of one run: ``start(config, run_dir, resumed)``, ``log_epoch(record)``,
    ``finish(result)``. After ``start`` no tracker ends the run: one that fails stops logging with
    a warning, since the run folder holds every epoch anyway."""

    def __init__(self, names: Sequence[str], log: Log):
        self.trackers = [CLASSES[name]() for name in names]
        self.log = log
        self.state: dict[str, dict[str, Any]] = {}
        self.run_dir: Path | None = None

    def start(self, config: RunConfig, run_dir: Path, resumed: list[EpochRecord]) -> None:
        """Start (or continue) each tracker's run and log the resumed epochs it lacks; TrackerError
        in one line when one cannot start."""
        if not self.trackers:
            return
        self.run_dir = run_dir
        stored = self._read_state(run_dir)
        for tracker in self.trackers:
            state = dict(stored.get(tracker.name) or {})
            logged = int(state.get("logged_epochs") or 0)
            if logged > len(resumed):  # the checkpoint went back (deleted: the run starts again): so does the tracker
                state, logged = {}, 0
            try:
                held = tracker.start(config, run_dir, state, logged + 1)
            except Exception as error:
                self.trackers = [started for started in self.trackers if started.name in self.state]
                self._write_state()  # the ones started: the next attempt continues their runs
                self.finish(None)
                raise TrackerError(f"--log {tracker.name}: cannot start ({_one_line(error)}); fix it, or leave "
                                   f"{tracker.name} out of --log") from error
            state["logged_epochs"] = held
            self.state[tracker.name] = state
        self._write_state()
        for record in resumed:
            self.log_epoch(record)

    def log_epoch(self, record: EpochRecord) -> None:
        """Log one epoch to every tracker that does not hold it yet."""
        for tracker in list(self.trackers):
            state = self.state[tracker.name]
            if record.epoch <= state["logged_epochs"]:
                continue
            if self._call(tracker, tracker.log_epoch, record):
                state["logged_epochs"] = record.epoch
        self._write_state()

    def finish(self, result: dict[str, Any] | None) -> None:
        """The run's result to every tracker (None: interrupted), and the trackers closed."""
        for tracker in list(self.trackers):
            self._call(tracker, tracker.finish, result)
        self.trackers = []

    def _call(self, tracker: Tracker, method: Callable[[Any], None], value: Any) -> bool:
        try:
            method(value)
            return True
        except Exception as error:  # a tracker's failure is never the run's
            self.trackers.remove(tracker)
            self.log(f"warning: --log {tracker.name} stopped logging ({_one_line(error)}); the run goes on and "
                     f"its folder holds every epoch")
            return False

    def _read_state(self, run_dir: Path) -> dict[str, Any]:
        path = run_dir / STATE_FILE
        if not path.exists():
            return {}
        try:
            return read_json_object(path, fix="")
        except DamagedFileError:
            self.log(f"warning: {path} is damaged; the trackers start new runs")
            return {}

    def _write_state(self) -> None:
        if self.run_dir is not None and self.state:
            write_json(self.run_dir / STATE_FILE, self.state)

