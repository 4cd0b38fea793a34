"""`python -m fmnist.bench [hydra overrides]`: fmnist's training step against a plain PyTorch loop, the data
pipeline, inference, and (with --time-to-accuracy) the speedrun recipe's accuracy and time over seeds.

Overrides are the same as for `python -m fmnist.train` and apply to every case, e.g. `trainer=gpu
trainer.precision=bf16-mixed model.compile=true`; both loops run on the device the trainer config selects.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fmnist.bench.configs import compose_run, model_exists, probe_trainer, study_batch_size
from fmnist.bench.data_pipeline import pipeline_report
from fmnist.bench.overhead import Budget, Case, measure_case, resident_datamodule
from fmnist.bench.report import PIPELINE_TARGET, machine, print_report, ratio_target, write_report
from fmnist.bench.study import finished_study, study_report
from fmnist.bench.switches import SWITCHES, VALIDATION_SWITCH, switch_report
from fmnist.bench.time_to_accuracy import EXPERIMENT, time_to_accuracy

DEFAULT_MODELS = ("conv_maxpool", "drop_norm_l2", "lstm", "rnn", "fast_cnn")
SWITCH_EXPERIMENTS = ("study_a_conv_maxpool", "study_a_drop_norm_conv", "study_a_lstm")
COMMON_BATCH = 256
QUICK_BUDGET = Budget(repeats=2, warmup=2, seconds=0.05, min_steps=3, max_steps=20, probe_steps=2,
                      inference_seconds=0.02)
QUICK_OVERRIDES = ("data.train_subset=2048",)
GROUP_IMAGES = 1024  # the opt-in grouped module gets about this many images per Lightning step, as the studies do


def grouped_overrides(batch_size: int) -> list[str]:
    return ["module=grouped_steps", f"data.steps_per_execution={max(1, math.ceil(GROUP_IMAGES / batch_size))}"]
QUICK_ACCURACY_OVERRIDES = ("data.train_subset=4096", "trainer.max_epochs=1", "logger=none")
log = logging.getLogger("fmnist.bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fmnist.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer=gpu")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="model configs to compare")
    parser.add_argument("--batch-sizes", nargs="+", default=["study", str(COMMON_BATCH)],
                        help="'study' (the batch of the model's recipe in conf/experiment/) and/or integers")
    parser.add_argument("--repeats", type=int, default=Budget.repeats, help="framework/plain pairs per case")
    parser.add_argument("--seconds", type=float, default=Budget.seconds, help="target length of each timed run")
    parser.add_argument("--warmup", type=int, default=Budget.warmup, help="untimed steps before each timed run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 steadies timings on a shared CPU")
    parser.add_argument("--no-grouped", dest="grouped", action="store_false",
                        help="skip timing the opt-in module=grouped_steps beside the default module")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference throughput")
    parser.add_argument("--quick", action="store_true", help="seconds instead of minutes: a smoke test")
    parser.add_argument("--output", type=Path, default=Path("outputs/bench/bench.json"), help="where bench.json goes")
    parser.add_argument("--time-to-accuracy", type=float, default=None, metavar="ACC",
                        help="instead of the speed table: train --experiment --runs times, report test acc and time")
    parser.add_argument("--experiment", default=EXPERIMENT,
                        help="the recipe --time-to-accuracy trains (speedrun; speedrun_gpu on a GPU)")
    parser.add_argument("--runs", type=int, default=5, help="seeds for --time-to-accuracy")
    parser.add_argument("--switches", nargs="*", metavar="EXPERIMENT", default=None,
                        help="instead of the speed table: time each per-fit speed switch (fused Adam, torch.compile, "
                        "channels-last, validation batch) against its recipe, e.g. --switches study_a_conv_maxpool")
    parser.add_argument("--only", nargs="+", choices=[*SWITCHES, VALIDATION_SWITCH], default=None, metavar="SWITCH",
                        help="with --switches: time only these, e.g. --only 'bf16 autocast'")
    parser.add_argument("--steps", type=int, default=256, help="optimizer steps per timed fit for --switches")
    parser.add_argument("--study", default=None, metavar="STUDY",
                        help="instead of the speed table: the study (conf/study/) run sequentially and in parallel, "
                        "e.g. --study study_a trainer.max_epochs=1 (overrides apply to both)")
    parser.add_argument("--study-dir", type=Path, default=None, metavar="DIR",
                        help="instead of running --study: read a study already run there, e.g. at its full budget")
    parser.add_argument("--study-reference", type=Path, default=None, metavar="DIR",
                        help="committed results to compare each model's accuracy with, e.g. docs/results/study_a")
    return parser.parse_args(argv)


def batch_sizes_for(model: str, requested: list[str]) -> list[tuple[int, str]]:
    """[(batch size, where it came from)], without duplicates."""
    found: list[tuple[int, str]] = []
    for entry in requested:
        if entry == "study":
            size, experiment = study_batch_size(model)
            if size is None:
                log.warning("%s: no recipe in conf/experiment/ sets its batch size; skipping 'study'", model)
                continue
            found.append((size, f"experiment={experiment}"))
        else:
            found.append((int(entry), "common"))
    unique: dict[int, str] = {}
    for size, source in found:
        unique.setdefault(size, source)
    return list(unique.items())


def speed_report(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    budget = QUICK_BUDGET if args.quick else Budget(repeats=args.repeats, warmup=args.warmup, seconds=args.seconds)
    overrides = [*(QUICK_OVERRIDES if args.quick else ()), *args.overrides]
    probe_cfg = compose_run(overrides, work_dir)
    probe = probe_trainer(probe_cfg)
    device = probe.strategy.root_device
    target = ratio_target(device)
    report: dict[str, Any] = {"machine": machine(device), "overrides": overrides, "budget": budget.__dict__,
                              "targets": {"ratio": target, "pipeline_headroom": PIPELINE_TARGET},
                              "training": [], "skipped": []}
    cases: dict[tuple[str, int], Case] = {}
    for model in args.models:
        if not model_exists(model):
            report["skipped"].append({"model": model, "reason": f"conf/model/{model}.yaml does not exist"})
            log.warning("skipping %s: no conf/model/%s.yaml", model, model)
            continue
        for index, (batch_size, source) in enumerate(batch_sizes_for(model, args.batch_sizes)):
            case_dir = work_dir / f"{model}_b{batch_size}"
            case_overrides = [f"model={model}", f"data.batch_size={batch_size}", *overrides]
            cfg = compose_run(case_overrides, case_dir)
            grouped_cfg = None
            if args.grouped:
                grouped_cfg = compose_run([*grouped_overrides(batch_size), *case_overrides], case_dir)
            L.seed_everything(0, verbose=False)
            case = Case(cfg, resident_datamodule(cfg, probe), case_dir, grouped_cfg,
                        resident_datamodule(grouped_cfg, probe) if grouped_cfg is not None else None)
            row = measure_case(case, budget, with_inference=index == 0 and not args.no_inference)
            row.update(batch_source=source, meets_target=row["ratio"]["median"] <= target)
            report["training"].append(row)
            cases[(model, batch_size)] = case
    if report["training"]:
        fastest = max(report["training"], key=lambda row: row["framework"]["images_per_second"])
        case = cases[(fastest["model"], fastest["batch_size"])]
        pipeline = pipeline_report(case.datamodule, fastest["batch_size"], batches=max(50, 10 * fastest["steps"]),
                                   model=fastest["model"],
                                   model_images_per_second=fastest["framework"]["images_per_second"])
        pipeline["meets_target"] = all(run["headroom"] >= PIPELINE_TARGET for run in pipeline["runs"])
        report["data_pipeline"] = pipeline
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    return report


def accuracy_report(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    overrides = [*(QUICK_ACCURACY_OVERRIDES if args.quick else ()), *args.overrides]
    # the recipe's own overrides apply to the probe too: they may pick the accelerator or name its model's keys
    probe = probe_trainer(compose_run([f"experiment={args.experiment}", *overrides], work_dir))
    report: dict[str, Any] = {"machine": machine(probe.strategy.root_device)}
    runs_dir = args.output.parent / args.experiment
    report["time_to_accuracy"] = time_to_accuracy(args.time_to_accuracy, args.runs, runs_dir, overrides,
                                                  experiment=args.experiment)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.output.parent, prefix=".bench-runs-") as scratch:
        if args.time_to_accuracy is not None:
            report = accuracy_report(args, Path(scratch))
        elif args.study_dir is not None:
            report = {"machine": machine(torch.device("cpu")), "study": finished_study(args.study_dir,
                                                                                      args.study_reference)}
        elif args.study is not None:
            report = {"machine": machine(torch.device("cpu")), "study": study_report(
                args.study, list(args.overrides), Path(scratch), args.study_reference)}
        elif args.switches is not None:
            probe = probe_trainer(compose_run(list(args.overrides), Path(scratch)))
            report = {"machine": machine(probe.strategy.root_device), "switches": switch_report(
                args.switches or list(SWITCH_EXPERIMENTS), list(args.overrides), probe, Path(scratch),
                steps=args.steps, warmup=args.warmup, repeats=args.repeats, only=args.only)}
        else:
            report = speed_report(args, Path(scratch))
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
