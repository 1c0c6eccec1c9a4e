"""A sweep's Slurm jobs: each run's job id, kept in the sweep folder's ``slurm.json`` when the Slurm
executor (:mod:`.slurm`) submits it, and the jobs' states in Slurm's queue, which ``poolbench
status`` shows. Apart from the executor so that ``status`` reads them without importing submitit or
torch.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ..core.outcomes import RunStatus
from ..storage import rundir
from ..storage.sweepdir import Sweep, SweepRun

JOBS_FILE = "slurm.json"  # run name -> its job id, written at submission


def record_jobs(sweep: Sweep, submitted: list[tuple[SweepRun, Any]], name: str) -> None:
    """Add each run's job id to the sweep's slurm.json (a run submitted again gets its new id)."""
    path = sweep.root / JOBS_FILE
    try:
        recorded = rundir.read_json_object(path, "delete it: the next sweep command writes it anew") \
            if path.exists() else {}
    except rundir.DamagedFileError:
        recorded = {}
    stored = recorded.get("runs")
    runs: dict[str, Any] = stored if isinstance(stored, dict) else {}
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    for run, job in submitted:
        runs[run.name] = {"job_id": str(job.job_id), "cluster": name, "submitted": when}
    rundir.write_json(path, {"runs": runs})


def recorded_jobs(root: str | Path) -> dict[str, dict[str, str]]:
    """Run name -> {"job_id", "cluster", "submitted"} from the sweep's slurm.json; none: {}."""
    path = Path(root) / JOBS_FILE
    if not path.exists():
        return {}
    data = rundir.read_json_object(path, "delete it: the next `poolbench sweep --executor slurm` writes it anew")
    runs = data.get("runs")
    return {str(k): v for k, v in runs.items() if isinstance(v, dict)} if isinstance(runs, dict) else {}


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """Job id -> its state in Slurm's queue (PENDING, RUNNING, ...; a job no longer listed has ended),
    from ``squeue``; None when squeue is not on PATH or fails."""
    if shutil.which("squeue") is None or not job_ids:
        return None
    arrays = sorted({job_id.partition("_")[0] for job_id in job_ids})
    try:
        listing = subprocess.run(["squeue", "--array", "--noheader", "--format=%i %T", f"--jobs={','.join(arrays)}"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split(None, 1) for line in listing.splitlines() if len(line.split(None, 1)) == 2)


def job_rows(root: str | Path, states: dict[str, RunStatus]) -> list[dict[str, str]]:
    """One row per run with a recorded job: run, job id, the queue's state (when squeue answers)
    else the run folder's; ``states`` is run name -> the folder's state."""
    jobs = recorded_jobs(root)
    queue = queue_states([job["job_id"] for job in jobs.values()]) if any(
        job.get("cluster") == "slurm" for job in jobs.values()) else None
    rows = []
    for name, job in jobs.items():
        folder_state = str(states.get(name, RunStatus.PENDING))
        queued = queue.get(str(job["job_id"])) if queue is not None else None
        state = queued.lower() if queued else folder_state if queue is None else f"{folder_state} (left the queue)"
        rows.append({"run": name, "job_id": str(job["job_id"]), "state": state})
    return rows
