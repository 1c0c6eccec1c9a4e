"""Worker processes: one long-lived process per job slot of a CPU sweep, training its runs one after another.

A run started as its own ``python -m poolbench run`` process pays, every time, for importing torch
and poolbench, decoding its data set and checking its pooling file in a child process: seconds, on
runs of the diagnostic suite that train for 11-13 s. A worker pays them once. It is
``python -m poolbench.cli.worker FD`` (:func:`serve`): it reads one run's command line at a time
from the connection on FD and runs it with the same function ``poolbench run`` calls, in its main
thread, with fd 1 and fd 2 sent to the run's stdout.log and stderr.log, and answers the exit
code. So a run's folder, exit code and outcome are those of a run process; what differs is kept
in memory between runs:

- decoded data sets (:func:`poolbench.execution.runner.keep_decoded_data`);
- the check of each pooling file in a child process (:func:`poolbench.execution.isolation.probe`
  is cached by the file's content);
- nothing else: :func:`poolbench.core.global_state.run_scope` starts each run from the state the worker
  had before its first one (random generators, threads, default dtype, grad mode, deterministic
  flags, environment, working directory) and forgets the changes the run recorded. A run that
  leaves what cannot be put back (the inter-op thread count, a replaced function of torch) ends
  its worker, and a run interrupted by Ctrl-C or SIGTERM too (also one that comes as the run ends:
  the worker holds the signals while it sets a run up and cleans up after it): the next run gets a new one.

A run whose code ends the process (``os._exit``, a signal) ends the worker with it: the parent
(:class:`Worker`) reads the worker's exit code as the run's, exactly what a run process would
have given, and starts a new worker for the next run.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..core import global_state
from ..core.outcomes import ExitCode
from .runner import keep_decoded_data
from .signals import HeldSignals, interrupted_code

#: The worker's entry point (``python -m`` of it); the command line is the cli's to parse.
WORKER_MODULE = "poolbench.cli.worker"
#: How long a worker that is told to stop may take to exit before it is killed.
EXIT_WAIT_S = 10.0


@dataclass(frozen=True)
class Request:
    """One run for a worker: its ``poolbench`` arguments and where its stdout and stderr go."""

    argv: list[str]
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Reply:
    """A run's exit code, and why the worker ends after it (None: it takes the next run)."""

    code: int
    retires: str | None = None


# --- The parent's side -------------------------------------------------------------------------------

def runs_in_a_worker(arguments: list[str]) -> bool:
    """Whether ``python <arguments>`` is a command a worker runs: a ``poolbench`` command (any other
    program is started as a process of its own)."""
    return arguments[:2] == ["-m", "poolbench"]


class Worker:
    """A worker process started in ``cwd`` with ``env`` added to this process' environment.

    ``preexec_fn`` runs in the child before it starts (the executor's: die with the parent).
    """

    def __init__(self, cwd: str | Path, env: dict[str, str], preexec_fn: Callable[[], Any] | None = None):
        ours, theirs = Pipe()

        def start() -> None:  # Ctrl-C and the stop signals wait until serve can take them
            signal.pthread_sigmask(signal.SIG_BLOCK, HeldSignals.SIGNALS)
            if preexec_fn is not None:
                preexec_fn()

        # Windows has neither signal masks nor preexec_fn.
        masks = hasattr(signal, "pthread_sigmask")
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno())], cwd=cwd, env={**os.environ, **env},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
            preexec_fn=start if masks else preexec_fn)
        theirs.close()
        self.connection = ours
        self.ready = False

    def alive(self) -> bool:
        return self.process.poll() is None and not self.connection.closed

    def wait_ready(self) -> bool:
        """Wait until the worker has started (imported torch and poolbench, seconds) and can take a
        run; False, and this worker closed, if it ended instead."""
        if not self.ready:
            try:
                self.connection.recv()  # serve's first message
            except (EOFError, OSError):
                self.connection.close()
                return False
            self.ready = True
        return True

    def run(self, arguments: list[str], stdout: Path, stderr: Path) -> int:
        """Run ``python <arguments>`` (``-m poolbench run ...``) in the worker; the exit code a run
        process would have given. A run that ends the worker gives the worker's exit code (its
        ``os._exit`` code, or minus the signal that killed it) and leaves this worker closed."""
        if not runs_in_a_worker(arguments):
            raise ValueError(f"a worker runs poolbench commands, not {arguments[:2]}")
        if not self.wait_ready():
            return self.process.wait()
        try:
            self.connection.send(Request(arguments[2:], str(stdout), str(stderr)))
            reply: Reply = self.connection.recv()
        except (EOFError, OSError):  # the run's code ended the process (os._exit, a signal, the OOM killer)
            self.connection.close()
            return self.process.wait()
        if reply.retires is not None:
            self.close()
        return reply.code

    def close(self) -> None:
        """Tell the worker to exit (the end of its connection), and wait for it; killed if it does not."""
        self.connection.close()
        try:
            self.process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- The worker's side -------------------------------------------------------------------------------

def serve(fd: int, run: Callable[[list[str]], int]) -> int:
    """The worker's loop: say ``"ready"`` on the connection on ``fd``, then read a :class:`Request`
    from it, call ``run(argv)`` (the ``poolbench`` command's main function) with the run's logs as
    fd 1 and 2, answer a :class:`Reply`; return the worker's exit code when the connection ends, or
    after a run that must be the worker's last.
    """
    connection = Connection(fd)
    keep_decoded_data()
    code = 0
    # Ctrl-C reaches every process of the group, and it may come as a run ends, while the worker puts
    # its state back or answers: held there, it ends the worker after its answer. One that came while
    # the worker started (blocked by Worker) is held now, and ends it before its first run.
    with HeldSignals() as held:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HeldSignals.SIGNALS)
        connection.send("ready")  # the sweep asks whether a run is still to do once a worker can start it
        while True:
            try:
                with held.raising():
                    request: Request = connection.recv()
            except (EOFError, OSError):  # the sweep is done with this worker
                break
            except KeyboardInterrupt as error:  # an idle worker just ends
                code = interrupted_code(error)
                break
            reply = run_one(request, run, held)
            connection.send(reply)
            if reply.retires is not None or held.signals:
                code = held.exit_code() or 0
                break
    connection.close()
    return code


def run_one(request: Request, run: Callable[[list[str]], int], held: HeldSignals) -> Reply:
    """One run in this process, as a run process would have run it (see the module's text); the
    signals ``held`` are raised only while ``run`` runs, and one held ends the worker after it."""
    with logs_as_fds(request.stdout, request.stderr), global_state.run_scope() as left:
        try:
            with held.raising():
                code = run(request.argv)
        except SystemExit as stop:  # argparse's exit 2, a sys.exit() in the run's code
            code = _exit_status(stop.code)
        except KeyboardInterrupt as error:  # an interrupt outside the run's own handling (its arguments)
            code = interrupted_code(error)
            left.append("the run was interrupted")
        except BaseException:  # what the interpreter does with an uncaught exception: traceback, exit 1
            traceback.print_exc()
            code = 1
        finally:
            gc.collect()  # the run's model, optimizer and loaders, before the next one builds its own
        if (code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) or held.signals) and not left:
            left.append("the run was interrupted")  # the sweep is stopping: this worker takes no more
    retires = "; ".join(left) if left else None
    if retires is not None:
        with logs_as_fds(request.stdout, request.stderr):
            print(f"--- the worker ends after this run ({retires}); the next run starts in a new one",
                  file=sys.stderr, flush=True)
    return Reply(int(code), retires)


@contextmanager
def logs_as_fds(stdout: str, stderr: str) -> Iterator[None]:
    """Within the block fd 1 appends to ``stdout`` and fd 2 to ``stderr`` (what the run's code and the
    child processes it starts write there too); the worker's own fds are put back after."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        for target, path in ((1, stdout), (2, stderr)):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, target)
            os.close(fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a full disk, a stream the run's code closed
                pass
        for target, fd in zip((1, 2), saved, strict=True):
            os.dup2(fd, target)
            os.close(fd)


def _exit_status(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives a process: None 0, an int itself, else 1 (printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
