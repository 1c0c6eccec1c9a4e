"""Seconds per epoch (train + full test evaluation) of the reference pipeline and of poolbench, per
benchmark setting, measured in the same run; projected 200-epoch and 36-run grid times.

Pipelines, each on CIFAR-format data made on the device (random uint8 images of the real sizes,
no download):

- reference: the original harness's way: a torchvision DataLoader with PIL transforms (FashionMNIST:
  28x28 grey, Resize(32) + 3 channels), NCHW, float32, a ``.item()`` per batch, cudnn.benchmark off;
- default: poolbench's ``run``: the DeviceLoader on the device, channels-last, float32, no host sync
  inside an epoch (poolbench.training.train's own loop);
- fastest: ``default`` plus ``--fastest`` (default on CUDA: --compile + bf16 autocast; on the CPU:
  bf16, since compiling there takes minutes and gave 0.94x).

With ``--jobs N`` (N > 1), N processes train the ``--pack-pipeline`` at once on the same device and the
aggregate images/s is compared with one process's. The grid projection is 4 baselines x 3 seeds per
setting (12 runs) x 200 epochs, one run at a time, and packed N at a time.

    python benchmarks/epoch_time.py --device cuda [--settings resnet56-cifar100,...] [--jobs 4]
    python benchmarks/epoch_time.py --device cpu --smoke      # seconds: tiny data, batch 16, CI
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from poolbench import models
from poolbench.core.settings import BENCHMARK_SETTINGS, Protocol, get_setting
from poolbench.data import DeviceLoader, describe
from poolbench.training.catalog import num_classes
from poolbench.training.compile import CompiledForward
from poolbench.training.train import evaluate, make_optimizer, train_one_epoch

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
EPOCHS, RUNS_PER_SETTING = 200, 12  # the protocol; 4 baselines x 3 seeds
REFERENCE_TEST_BATCH = 256
GOAL_RESNET56_S, GOAL_GRID_S = 460, 3600


@dataclass
class Sizes:
    train: int
    test: int
    batch_size: int
    test_batch: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_data(setting: str, sizes: Sizes, device: torch.device, seed: int = 0):
    """Random uint8 images and labels of the setting's format, made on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    classes = num_classes(get_setting(setting))
    n = sizes.train + sizes.test
    labels = torch.randint(0, classes, (n,), device=device, generator=generator)
    if get_setting(setting).dataset == "fmnist":  # the reference sees the 28x28 grey originals
        raw = torch.randint(0, 256, (n, 28, 28), device=device, generator=generator, dtype=torch.uint8)
        rgb32 = F.interpolate(raw[:, None].float(), size=32, mode="bilinear").round().to(torch.uint8)
        rgb32 = rgb32.expand(-1, 3, -1, -1).contiguous()
    else:
        rgb32 = torch.randint(0, 256, (n, 3, 32, 32), device=device, generator=generator, dtype=torch.uint8)
        raw = rgb32.permute(0, 2, 3, 1)
    return raw.cpu().numpy(), rgb32, labels


class PilDataset(Dataset):
    """torchvision's CIFAR / FashionMNIST datasets per item: a PIL image through the transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, train: bool):
        self.images, self.labels = images, labels
        steps = [transforms.Resize(32), transforms.Grayscale(3)] if images.ndim == 3 else []
        if train:
            steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        self.transform = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class Limited:
    """The first ``steps`` batches of a DeviceLoader (``None``: all), with its interface."""

    def __init__(self, loader, steps: int | None):
        self.loader, self.steps = loader, steps

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(self.loader), self.steps or len(self.loader))

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


class Pipeline:
    """One way of training a setting: ``train(steps)`` and ``evaluate()`` return seconds."""

    def __init__(self, kind: str, setting: str, sizes: Sizes, device: torch.device, data, workers: int,
                 fastest: list[str]):
        self.kind, self.device = kind, device
        self.sizes = sizes
        images, rgb32, labels = data
        arch, classes = get_setting(setting).arch, num_classes(get_setting(setting))
        torch.manual_seed(0)
        self.model = models.create(arch, classes)
        self.optimizer = None
        self.autocast = None
        self.forward = None
        if kind == "reference":
            torch.backends.cudnn.benchmark = False
            self.model.to(device)
            host_labels = labels.cpu().numpy()
            train_set = PilDataset(images[:sizes.train], host_labels[:sizes.train], train=True)
            test_set = PilDataset(images[sizes.train:], host_labels[sizes.train:], train=False)
            options = dict(num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
            self.train_loader = DataLoader(train_set, sizes.batch_size, shuffle=True, **options)
            self.test_loader = DataLoader(test_set, sizes.test_batch, shuffle=False, **options)
        else:
            torch.backends.cudnn.benchmark = device.type == "cuda"  # what poolbench's harness sets
            self.model.to(device, memory_format=torch.channels_last)
            options = dict(mean=MEAN, std=STD, device=device, channels_last=True)
            self.train_loader = DeviceLoader(rgb32[:sizes.train], labels[:sizes.train], sizes.batch_size,
                                             train=True, seed=0, **options)
            self.test_loader = DeviceLoader(rgb32[sizes.train:], labels[sizes.train:], sizes.test_batch,
                                            train=False, **options)
            if kind == "fastest":
                self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
                    next((option for option in fastest if option in ("bf16", "fp16")), ""))
                if "compile" in fastest:
                    self.forward = CompiledForward(self.model, device, warn=lambda line: print(line, flush=True))
        self.optimizer = make_optimizer(self.model, Protocol(batch_size=sizes.batch_size))
        self.epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.sizes.train // self.sizes.batch_size)

    def train(self, steps: int | None) -> float:
        """Seconds for ``steps`` training steps (None: a whole epoch)."""
        self.epoch += 1
        sync(self.device)
        start = time.perf_counter()
        if self.kind == "reference":
            self._reference_train(steps)
        else:
            scaler = torch.amp.GradScaler(self.device.type) if self.autocast == torch.float16 else None
            self.train_loader.set_epoch(self.epoch)
            train_one_epoch(self.model, Limited(self.train_loader, steps), self.optimizer, self.epoch,
                            self.autocast, scaler, self.forward)
        sync(self.device)
        return time.perf_counter() - start

    def evaluate(self) -> float:
        sync(self.device)
        start = time.perf_counter()
        if self.kind == "reference":
            self._reference_evaluate()
        else:
            evaluate(self.model, self.test_loader, self.autocast, self.forward)
        sync(self.device)
        return time.perf_counter() - start

    def _reference_train(self, steps: int | None) -> None:
        self.model.train()
        loss_sum, correct = 0.0, 0
        for x, y in itertools.islice(self.train_loader, steps):
            x, y = x.to(self.device), y.to(self.device)
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item()
            correct += logits.argmax(1).eq(y).sum().item()

    @torch.no_grad()
    def _reference_evaluate(self) -> None:
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for x, y in self.test_loader:
            x, y = x.to(self.device), y.to(self.device)
            logits = self.model(x)
            loss_sum += F.cross_entropy(logits, y).item()
            correct += logits.argmax(1).eq(y).sum().item()

    def warm_up(self, steps: int) -> None:
        """cuDNN autotuning, compilation (train and eval graphs) and DataLoader workers, untimed."""
        self.train(steps)
        self.evaluate()


def epoch_seconds(pipeline: Pipeline, max_steps: int | None) -> tuple[float, float, float]:
    """(seconds per epoch, of which evaluation, training images/s), the train part extrapolated from
    ``max_steps`` steps when given."""
    steps = min(pipeline.steps_per_epoch, max_steps or pipeline.steps_per_epoch)
    train_s = pipeline.train(steps)
    eval_s = pipeline.evaluate()
    images = min(steps * pipeline.sizes.batch_size, pipeline.sizes.train)
    rate = images / train_s
    return pipeline.sizes.train / rate + eval_s, eval_s, rate


# --- Packed runs: N processes training at once ---------------------------------------------------

def worker(args: argparse.Namespace) -> None:
    """One packed process: warm up, wait for the others, train for ``--seconds``, print images/s."""
    device = torch.device(args.device)
    sizes = sizes_for(args, args.setting)
    pipeline = Pipeline(args.pack_pipeline, args.setting, sizes, device, make_data(args.setting, sizes, device),
                        args.workers, args.fastest)
    pipeline.warm_up(2)
    ready = Path(args.ready_dir)
    (ready / f"{os.getpid()}.ready").touch()
    while len(list(ready.glob("*.ready"))) < args.jobs:
        time.sleep(0.01)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        pipeline.train(1)
        images += sizes.batch_size
    print(json.dumps({"images_per_s": images / (time.perf_counter() - start)}))


def packed_rate(args: argparse.Namespace, setting: str) -> float:
    """Aggregate training images/s of ``--jobs`` processes on the device at once."""
    with tempfile.TemporaryDirectory() as ready:
        command = [sys.executable, __file__, "--worker", "--setting", setting, "--ready-dir", ready,
                   "--device", args.device, "--jobs", str(args.jobs), "--seconds", str(args.pack_seconds),
                   "--workers", str(args.workers), "--pack-pipeline", args.pack_pipeline,
                   "--fastest", ",".join(args.fastest)] + (["--smoke"] if args.smoke else [])
        threads = str(max(1, torch.get_num_threads() // args.jobs))
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True) for _ in range(args.jobs)]
        outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        raise SystemExit(f"a packed worker failed (exit codes {[p.returncode for p in processes]})")
    return sum(json.loads(out.strip().splitlines()[-1])["images_per_s"] for out in outputs)


# --- Main ------------------------------------------------------------------------------------------

def sizes_for(args: argparse.Namespace, setting: str) -> Sizes:
    if args.smoke:
        return Sizes(train=64, test=32, batch_size=16, test_batch=32)
    info = describe(get_setting(setting).dataset)
    train, test = info.train_images, info.test_images
    return Sizes(train, test, get_setting(setting).protocol.batch_size, 1000)


def hours(seconds: float) -> str:
    return f"{seconds:7.0f} s = {seconds / 3600:5.2f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", default=",".join(BENCHMARK_SETTINGS))
    parser.add_argument("--pipelines", default="reference,default,fastest")
    parser.add_argument("--fastest", help="what the fastest pipeline adds: compile, bf16, fp16 "
                                          "(default: compile,bf16 on CUDA, bf16 on the CPU)")
    parser.add_argument("--max-steps", type=int, help="time this many training steps of each epoch and "
                                                      "extrapolate to the whole epoch (default: all)")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(4, len(os.sched_getaffinity(0))),
                        help="DataLoader workers of the reference pipeline")
    parser.add_argument("--jobs", type=int, default=4, help="packed processes (1: no packing measured)")
    parser.add_argument("--pack-pipeline", choices=["default", "fastest"], default="fastest")
    parser.add_argument("--pack-seconds", type=float, default=20.0)
    parser.add_argument("--pack-settings", help="settings whose packing is measured (default: all measured); "
                                                "the others use the mean gain")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny data (64 train / 32 test images), batch 16, one setting, 2 s of packing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--ready-dir", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.fastest is None:
        args.fastest = "compile,bf16" if device.type == "cuda" else "bf16"
    args.fastest = [option for option in args.fastest.split(",") if option]
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.settings = args.settings if "--settings" in sys.argv else BENCHMARK_SETTINGS[0]
        args.pack_seconds, args.jobs = min(args.pack_seconds, 2.0), min(args.jobs, 2)
        args.warmup_steps = min(args.warmup_steps, 1)
        if "--workers" not in sys.argv:
            args.workers = 0
    settings = [name.strip() for name in args.settings.split(",") if name.strip()]
    pipelines = [name.strip() for name in args.pipelines.split(",") if name.strip()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; fastest = {'+'.join(args.fastest) or 'default'}; "
          f"reference: DataLoader with {args.workers} workers, PIL transforms, NCHW, fp32"
          + ("; SMOKE sizes (not the benchmark's)" if args.smoke else ""), flush=True)
    print(f"{'setting':20s} {'pipeline':10s} {'s/epoch':>9s} {'(eval s)':>9s} {'train img/s':>12s} "
          f"{'200 epochs':>11s} {'vs reference':>13s}", flush=True)

    results: dict[str, dict] = {}
    for setting in settings:
        sizes = sizes_for(args, setting)
        data = make_data(setting, sizes, device)
        results[setting] = {}
        for kind in pipelines:
            pipeline = Pipeline(kind, setting, sizes, device, data, args.workers, args.fastest)
            pipeline.warm_up(args.warmup_steps)
            seconds, eval_s, rate = epoch_seconds(pipeline, args.max_steps)
            results[setting][kind] = {"epoch_s": seconds, "eval_s": eval_s, "train_images_per_s": rate}
            if pipeline.forward is not None:
                results[setting][kind]["compile"] = pipeline.forward.status
            reference = results[setting].get("reference", {}).get("epoch_s")
            ratio = f"{reference / seconds:12.2f}x" if reference else f"{'-':>13s}"
            print(f"{setting:20s} {kind:10s} {seconds:9.2f} {eval_s:9.2f} {rate:12.0f} {EPOCHS * seconds:10.0f}s "
                  f"{ratio}", flush=True)
            del pipeline
        pack_here = args.pack_settings is None or setting in args.pack_settings.split(",")
        if args.jobs > 1 and pack_here and args.pack_pipeline in results[setting]:
            single = results[setting][args.pack_pipeline]["train_images_per_s"]
            aggregate = packed_rate(args, setting)
            results[setting]["packed"] = {"jobs": args.jobs, "pipeline": args.pack_pipeline,
                                          "aggregate_images_per_s": aggregate, "gain": aggregate / single}
            print(f"{setting:20s} packed {args.jobs} x {args.pack_pipeline}: {aggregate:.0f} images/s in all, "
                  f"{aggregate / single:.2f}x one run's", flush=True)

    print("\nprojected (protocol: 200 epochs; grid: 4 baselines x 3 seeds per setting)")
    if "resnet56-cifar100" in results:
        for kind, result in results["resnet56-cifar100"].items():
            if "epoch_s" in result:
                print(f"  one ResNet-56 run, {kind:9s}: {hours(EPOCHS * result['epoch_s'])} "
                      f"(goal <= {GOAL_RESNET56_S} s)")
    gains = [r["packed"]["gain"] for r in results.values() if "packed" in r]
    mean_gain = sum(gains) / len(gains) if gains else None
    for kind in pipelines:
        grid = sum(RUNS_PER_SETTING * EPOCHS * results[s][kind]["epoch_s"] for s in settings)
        print(f"  {RUNS_PER_SETTING * len(settings)}-run grid, {kind:9s} one at a time: {hours(grid)}")
        if kind == args.pack_pipeline and mean_gain:
            packed = sum(RUNS_PER_SETTING * EPOCHS * results[s][kind]["epoch_s"]
                         / results[s].get("packed", {}).get("gain", mean_gain) for s in settings)
            print(f"  {RUNS_PER_SETTING * len(settings)}-run grid, {kind:9s} {args.jobs} at a time: {hours(packed)} "
                  f"(goal <= {GOAL_GRID_S} s; {3600 * RUNS_PER_SETTING * len(settings) / packed:.1f} runs/hour)")
    if "reference" in pipelines:
        for kind in pipelines:
            if kind != "reference":
                ratios = ", ".join(f"{s} {results[s]['reference']['epoch_s'] / results[s][kind]['epoch_s']:.2f}x"
                                   for s in settings)
                print(f"  ratio reference / {kind}: {ratios}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "fastest": args.fastest, "smoke": args.smoke,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
