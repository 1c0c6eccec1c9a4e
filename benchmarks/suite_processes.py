"""Where the test suite's CPU goes: every Python process the tests start, with its CPU time.

Runs ``python -m pytest`` with a ``sitecustomize`` module first on ``PYTHONPATH`` (inherited by every
process the tests start) that records each Python process's command line and CPU time (user + sys)
when it ends, ``os._exit`` included. Prints the suite's own CPU time (pytest and everything it
waited for), the recorded processes grouped by what they are, and how much of the CPU they took.
Processes that end by a signal (a run killed on purpose) and programs that are not Python record
nothing: their time is in the total only. So it also prints each test's CPU (a pytest plugin, ``-p``,
reads the test process's CPU and that of every child it waited for before and after each test: what
a test cost, whatever it started), grouped by size and the tests that cost most.

    python benchmarks/suite_processes.py                      # the whole suite, about 11 minutes on 2 cores
    python benchmarks/suite_processes.py tests/execution      # one folder (any pytest arguments)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

RECORDER = '''
import atexit, json, os, resource, sys

_LOG = os.environ["POOLBENCH_PROCESS_LOG"]
_real_exit = os._exit


def _record():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    line = json.dumps({"pid": os.getpid(), "argv": sys.argv[:4], "cpu_s": usage.ru_utime + usage.ru_stime,
                       "modules": len(sys.modules)})
    with open(_LOG, "a") as log:  # one short line per process: appends do not interleave
        log.write(line + "\\n")


def _exit(code):
    _record()
    _real_exit(code)


atexit.register(_record)
os._exit = _exit
'''


TEST_CPU_PLUGIN = '''
import json, os, resource

import pytest

_LOG = os.environ["POOLBENCH_TEST_CPU_LOG"]


def _cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    before = _cpu()
    yield  # setup (a shared fixture's first test pays for it), call and teardown
    with open(_LOG, "a") as log:
        log.write(json.dumps({"test": item.nodeid, "cpu_s": _cpu() - before}) + "\\n")
'''
SIZES = ((0.0, 1.0, "under 1 s"), (1.0, 5.0, "1 to 5 s"), (5.0, float("inf"), "5 s or more"))
SLOWEST = 15


def kind(argv: list[str], modules: int) -> str:
    """What a process was, from its command line: a poolbench verb, a sweep worker, a child, ..."""
    first = Path(argv[0]).name if argv else ""
    if first == "__main__.py" and len(argv) > 1 and argv[1].startswith("-"):
        return "pytest"
    if first == "__main__.py" and len(argv) > 1:
        return f"poolbench {argv[1]}"
    if first == "worker.py":
        return "sweep worker"
    if argv and argv[0] == "-c":
        return "pytest-xdist worker" if modules > 5000 else "python -c (checks in a child, ...)"
    return first or "?"


def main() -> None:
    pytest_args = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="suite_processes_") as folder:
        Path(folder, "sitecustomize.py").write_text(RECORDER)
        Path(folder, "poolbench_test_cpu.py").write_text(TEST_CPU_PLUGIN)
        log, test_log = Path(folder, "processes.jsonl"), Path(folder, "tests.jsonl")
        env = {**os.environ, "POOLBENCH_PROCESS_LOG": str(log), "POOLBENCH_TEST_CPU_LOG": str(test_log),
               "PYTHONPATH": os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    "-p", "poolbench_test_cpu", *pytest_args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        records = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            record = json.loads(line)
            records[record["pid"]] = record  # a process that ran its exit handlers and then os._exit: once
        tests = [json.loads(line) for line in test_log.read_text().splitlines()] if test_log.exists() else []
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    groups: dict[str, list[float]] = defaultdict(list)
    for record in records.values():
        groups[kind(record["argv"], record["modules"])].append(record["cpu_s"])
    recorded = sum(sum(times) for times in groups.values())
    print(f"pytest {' '.join(pytest_args)}: {completed.stdout.strip().splitlines()[-1] if completed.stdout else ''}")
    print(f"wall {wall:.0f} s; CPU of pytest and everything it started: {total:.0f} s")
    share = 100 * recorded / max(total, 1e-9)
    print(f"{len(records)} Python processes recorded, {recorded:.0f} s of CPU ({share:.0f}%):")
    for name, times in sorted(groups.items(), key=lambda item: -sum(item[1])):
        print(f"  {sum(times):8.1f} s  {len(times):4d} x {sum(times) / len(times):5.1f} s  {name}")
    print_tests(tests)
    if completed.returncode != 0:
        sys.exit(f"error: pytest exited {completed.returncode}:\n{completed.stdout[-2000:]}")


def print_tests(tests: list[dict]) -> None:
    """Each test's CPU, its children's included: how many tests of each size, and the costliest."""
    print(f"{len(tests)} tests, {sum(t['cpu_s'] for t in tests):.0f} s of CPU with what they started:")
    for low, high, name in SIZES:
        sized = [t["cpu_s"] for t in tests if low <= t["cpu_s"] < high]
        print(f"  {sum(sized):8.1f} s  {len(sized):4d} tests of {name}")
    print(f"the {min(SLOWEST, len(tests))} costliest:")
    for test in sorted(tests, key=lambda t: -t["cpu_s"])[:SLOWEST]:
        print(f"  {test['cpu_s']:8.1f} s  {test['test']}")


if __name__ == "__main__":
    main()
