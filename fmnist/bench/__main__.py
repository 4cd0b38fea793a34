"""`python -m fmnist.bench [hydra overrides]`: fmnist's training step against a plain PyTorch loop, data pipeline
and inference; --switches each per-fit speed switch against its recipe; --time-to-accuracy the speedrun recipe."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from fmnist.bench.configs import compose_run, probe_trainer
from fmnist.bench.report import machine, print_report, spread, write_report
from fmnist.bench.speed import QUICK_BUDGET, Budget, speed_report
from fmnist.bench.switches import SWITCHES, VALIDATION_SWITCH, switch_report
from fmnist.train import fit_and_test

DEFAULT_MODELS = ("conv_maxpool", "drop_norm_l2", "lstm", "rnn", "fast_cnn")
SWITCH_EXPERIMENTS = ("study_a_conv_maxpool", "study_a_drop_norm_conv", "study_a_lstm")
QUICK_OVERRIDES = ("data.train_subset=2048",)
QUICK_ACCURACY_OVERRIDES = ("data.train_subset=4096", "trainer.max_epochs=1", "logger=none")
log = logging.getLogger("fmnist.bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fmnist.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer=gpu")
    add("--models", nargs="+", default=list(DEFAULT_MODELS), help="model configs to compare")
    add("--batch-sizes", nargs="+", default=["study", "256"],
        help="'study' (the batch of the model's recipe in conf/experiment/) and/or integers")
    add("--repeats", type=int, default=Budget.repeats, help="interleaved rounds of timings per case or switch")
    add("--seconds", type=float, default=Budget.seconds, help="target length of each timed run")
    add("--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice); 1 steadies timings on a shared CPU")
    add("--no-inference", dest="inference", action="store_false", help="skip the inference throughput")
    add("--quick", action="store_true", help="seconds instead of minutes: a smoke test")
    add("--output", type=Path, default=Path("outputs/bench/bench.json"), help="where bench.json goes")
    add("--switches", nargs="*", metavar="EXPERIMENT", default=None,
        help="instead of the speed table: time each per-fit speed switch against these recipes (default: study A's)")
    add("--only", nargs="+", choices=[*SWITCHES, VALIDATION_SWITCH], default=None, metavar="SWITCH",
        help="with --switches: time only these, e.g. --only 'bf16 autocast'")
    add("--steps", type=int, default=256, help="optimizer steps per timed fit for --switches")
    add("--time-to-accuracy", type=float, default=None, metavar="ACC",
        help="instead of the speed table: train --experiment --runs times, report test acc and time")
    add("--experiment", default="speedrun", help="the recipe --time-to-accuracy trains (speedrun_gpu on a GPU)")
    add("--runs", type=int, default=5, help="seeds for --time-to-accuracy")
    return parser.parse_args(argv)


def time_to_accuracy(target: float, runs: int, experiment: str, overrides: list[str], runs_dir: Path,
                     work_dir: Path) -> dict[str, Any]:
    """The recipe trained `runs` times as `python -m fmnist.train experiment=E seed=S` would. `train_seconds` is
    `trainer.fit` wall time (per-epoch validation in, the final test out); the target is met by the *mean* test acc."""
    # the recipe's own overrides apply to the probe too: they may pick the accelerator or name its model's keys
    probe = probe_trainer(compose_run([f"experiment={experiment}", *overrides], work_dir))
    info, results = machine(probe.strategy.root_device), []
    for seed in range(runs):
        run_dir = runs_dir / f"{experiment}_seed{seed}"
        metrics = fit_and_test(compose_run([f"experiment={experiment}", f"seed={seed}", *overrides], run_dir), run_dir)
        results.append({"seed": seed, "test_acc": metrics["test/acc"], "val_acc": metrics["val/acc"],
                        "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
                        "run_dir": str(run_dir)})
        log.info("time to accuracy: run %d/%d, seed %d: test/acc %.4f in %.1fs", seed + 1, runs, seed,
                 metrics["test/acc"], metrics["train_seconds"])
    accuracy = spread([result["test_acc"] for result in results])
    seconds = spread([result["train_seconds"] for result in results])
    return {"machine": info, "time_to_accuracy": {
        "experiment": experiment, "overrides": overrides, "target": target, "runs": results, "test_acc": accuracy,
        "train_seconds": seconds, "reached": accuracy["mean"] >= target}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.output.parent, prefix=".bench-runs-") as scratch:
        work_dir = Path(scratch)
        if args.time_to_accuracy is not None:
            overrides = [*(QUICK_ACCURACY_OVERRIDES if args.quick else ()), *args.overrides]
            report = time_to_accuracy(args.time_to_accuracy, args.runs, args.experiment, overrides,
                                      args.output.parent / args.experiment, work_dir)
        elif args.switches is not None:
            probe = probe_trainer(compose_run(list(args.overrides), work_dir))
            report = {"machine": machine(probe.strategy.root_device), "switches": switch_report(
                args.switches or list(SWITCH_EXPERIMENTS), list(args.overrides), probe, work_dir,
                steps=args.steps, warmup=Budget.warmup, repeats=args.repeats, only=args.only)}
        else:
            budget = QUICK_BUDGET if args.quick else Budget(repeats=args.repeats, seconds=args.seconds)
            overrides = [*(QUICK_OVERRIDES if args.quick else ()), *args.overrides]
            report = speed_report(args.models, args.batch_sizes, overrides, budget, args.inference, work_dir)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    write_report(args.output, report)
    print_report(report)
    log.info("wrote %s", args.output)
    return report


def cli() -> None:
    """The `fmnist-bench` console script: `python -m fmnist.bench` (user errors end in one line, exit 2)."""
    from fmnist.core.cli import run_guarded

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # the process's, not main's
    for noisy in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_guarded(main)


if __name__ == "__main__":
    cli()
