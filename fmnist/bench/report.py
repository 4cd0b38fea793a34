"""Print the benchmark as rich tables and write it to bench.json (atomically: never half a file)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from fmnist.bench.study import study_markdown
from fmnist.bench.switches import switches_markdown
from fmnist.core.atomic import write_json_atomic, write_text_atomic

CPU_RATIO_TARGET = 1.05
GPU_RATIO_TARGET = 1.15
PIPELINE_TARGET = 20.0


def ratio_target(device: torch.device) -> float:
    return CPU_RATIO_TARGET if device.type == "cpu" else GPU_RATIO_TARGET


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_native_bf16() -> bool | None:
    """Whether the CPU computes in bf16 itself (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo): without it, bf16
    autocast converts in software and is slower than fp32. None where the flags cannot be read (not Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on; the load average tells whether the CPU was shared."""
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_native_bf16(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())
    return info


def bf16_note(report: dict[str, Any]) -> str | None:
    """The line a bf16 timing on the CPU needs: whether this CPU computes in bf16 natively."""
    timed = any(row.get("switch") == "bf16 autocast" for row in report.get("switches") or [])
    info = report["machine"]
    if not timed or not info["device"].startswith("cpu"):
        return None
    native = info.get("cpu_native_bf16")
    if native is None:
        return "bf16 on the CPU: whether it computes in bf16 natively is unknown here (no /proc/cpuinfo)."
    if native:
        return "bf16 on the CPU: this CPU computes in bf16 natively (avx512_bf16 or amx_bf16)."
    return ("bf16 on the CPU: this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16), so bf16 autocast is "
            "converted in software and slower than fp32 here; keep trainer.precision=32-true.")


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def training_table(results: list[dict[str, Any]], target: float) -> Table:
    table = Table(title="Training step: fmnist (default module, Lightning's automatic optimization) and the opt-in "
                        f"module=grouped_steps vs a plain PyTorch loop, target ratio <= {target}")
    for column in ("model", "batch", "steps x runs", "fmnist ms/step", "plain ms/step", "fmnist img/s",
                   "ratio min", "ratio median", "ratio max", "CPU-time ratio", "target",
                   "bare Lightning / plain", "fmnist / bare", "grouped ms/step", "grouped / plain"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        ratio = row["ratio"]
        grouped = row.get("grouped_ratio")
        table.add_row(row["model"], str(row["batch_size"]), f"{row['steps']} x {row['repeats']}",
                      _fmt(row["framework"]["ms_per_step"]), _fmt(row["plain"]["ms_per_step"]),
                      _fmt(row["framework"]["images_per_second"], 0), _fmt(ratio["min"], 3),
                      _fmt(ratio["median"], 3), _fmt(ratio["max"], 3), _fmt(row["cpu_time_ratio"]["median"], 3),
                      "ok" if row["meets_target"] else "MISSED", _fmt(row["lightning_floor_ratio"]["median"], 3),
                      _fmt(row["fmnist_over_lightning_ratio"]["median"], 3),
                      _fmt(row["grouped"]["ms_per_step"]) if grouped else "-",
                      f"{_fmt(grouped['median'], 3)} (K={row['grouped_steps_per_execution']})" if grouped else "-")
    return table


def inference_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Inference (eval mode, images/s)")
    for column in ("model", "batch 1", "batch 1024"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in results:
        found = row.get("inference_images_per_second")
        if found:
            table.add_row(row["model"], _fmt(found["batch_1"], 0), _fmt(found["batch_1024"], 0))
    return table


def pipeline_table(pipeline: dict[str, Any]) -> Table:
    table = Table(title=f"Data pipeline alone vs the fastest model (target >= {PIPELINE_TARGET:g}x)")
    for column in ("augmentation", "batch", "batches/s", "images/s", "x fastest model"):
        table.add_column(column, justify="right")
    for row in pipeline["runs"]:
        table.add_row(row["augmentation"], str(pipeline["batch_size"]), _fmt(row["batches_per_second"], 0),
                      _fmt(row["images_per_second"], 0), _fmt(row["headroom"], 1))
    return table


def accuracy_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"experiment={result['experiment']}: {len(result['runs'])} seeds, "
                        f"target {result['target']:.2%} mean test accuracy")
    for column in ("", "mean", "std", "min", "max"):
        table.add_column(column, justify="right")
    acc, seconds = result["test_acc"], result["train_seconds"]
    table.add_row("test acc", *(f"{acc[key]:.4f}" for key in ("mean", "std", "min", "max")))
    table.add_row("train s", *(f"{seconds[key]:.1f}" for key in ("mean", "std", "min", "max")))
    return table


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=160)
    info = report["machine"]
    console.print(f"device: {info['device']} ({info['device_name']}), {info['cpu_count']} CPUs, "
                  f"torch {info['torch']}, load average at start {info.get('load_average_at_start')}")
    if report.get("training"):
        console.print(training_table(report["training"], report["targets"]["ratio"]))
        console.print(inference_table(report["training"]))
    if report.get("data_pipeline"):
        console.print(pipeline_table(report["data_pipeline"]))
    if report.get("time_to_accuracy"):
        console.print(accuracy_table(report["time_to_accuracy"]))
    for section, render in (("switches", switches_markdown), ("study", study_markdown)):
        if report.get(section):
            console.print(Markdown(render(report[section])))
    if bf16_note(report):
        console.print(bf16_note(report))
    for skipped in report.get("skipped", []):
        console.print(f"skipped {skipped['model']}: {skipped['reason']}")


def training_markdown(results: list[dict[str, Any]]) -> str:
    """The training table as Markdown (written beside bench.json as bench.md), for docs/speed.md and notes."""
    header = ["model", "batch", "steps x runs", "fmnist ms/step", "plain ms/step", "ratio median (min-max)",
              "bare Lightning / plain", "grouped ms/step (K)", "grouped / plain median (min-max)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results:
        ratio, grouped = row["ratio"], row.get("grouped_ratio")
        cells = [row["model"], str(row["batch_size"]), f"{row['steps']} x {row['repeats']}",
                 _fmt(row["framework"]["ms_per_step"]), _fmt(row["plain"]["ms_per_step"]),
                 f"{_fmt(ratio['median'], 3)} ({_fmt(ratio['min'], 3)}-{_fmt(ratio['max'], 3)})",
                 _fmt(row["lightning_floor_ratio"]["median"], 3),
                 f"{_fmt(row['grouped']['ms_per_step'])} ({row['grouped_steps_per_execution']})" if grouped else "-",
                 f"{_fmt(grouped['median'], 3)} ({_fmt(grouped['min'], 3)}-{_fmt(grouped['max'], 3)})" if grouped
                 else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(path: Path, report: dict[str, Any]) -> None:
    write_json_atomic(path, report)
    parts = []
    if report.get("training"):
        parts.append(training_markdown(report["training"]))
    if report.get("switches"):
        parts.append(switches_markdown(report["switches"]) + (f"\n{bf16_note(report)}\n" if bf16_note(report) else ""))
    if report.get("study"):
        parts.append(study_markdown(report["study"]))
    if parts:
        write_text_atomic(path.with_suffix(".md"), "\n".join(parts))
