"""The benchmark scripts keep working: each runs on tiny sizes and prints its ratio line."""

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str) -> str:
    completed = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_loader_throughput_prints_a_ratio():
    out = run_benchmark("loader_throughput.py", "--images", "2000", "--measure", "1000", "--workers", "0")
    assert re.search(r"ratio DeviceLoader / DataLoader: \d+\.\dx", out)


def test_pool_overhead_prints_a_ratio_per_pooling():
    out = run_benchmark("pool_overhead.py", "--arch", "resnet20", "--batch-size", "8", "--repeats", "1",
                        "--pools", "gem,gem(p=4, learnable=False)")
    assert re.search(r"^gem\s+[\d.]+ ms/step\s+[\d.]+x$", out, flags=re.M)
    assert re.search(r"^gem\(p=4, learnable=False\)\s+[\d.]+ ms/step\s+[\d.]+x$", out, flags=re.M)
