"""The benchmark's report: the machine it ran on, bench.json (atomically: never half a file), bench.md (the tables
docs/speed.md quotes) and the same tables on the console."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from statistics import mean, median, pstdev
from typing import Any

import rich.table
import torch
from rich.console import Console

from fmnist.core.atomic import write_json_atomic, write_text_atomic
from fmnist.core.numbers import markdown_table

PIPELINE_TARGET = 20.0  # the data pipeline's images/s over what the fastest model consumes


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": mean(values), "std": pstdev(values), "min": min(values), "median": median(values),
            "max": max(values)}


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on: the load average tells whether the CPU was shared, and whether the CPU
    computes in bf16 itself (AVX512-BF16 or AMX-BF16; else bf16 autocast converts in software, slower than fp32)."""
    cpuinfo = path.read_text(errors="replace") if (path := Path("/proc/cpuinfo")).is_file() else None
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo or "").splitlines() if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": None if cpuinfo is None else bool({"avx512_bf16", "amx_bf16"} & set(cpuinfo.split())),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


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


Table = tuple[list[str], list[list[str]]]  # header, rows: rendered as Markdown for bench.md, by rich on the console


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _spread(ratio: dict[str, float]) -> str:
    return f"{_fmt(ratio['median'], 3)} ({_fmt(ratio['min'], 3)}-{_fmt(ratio['max'], 3)})"


def training_table(results: list[dict[str, Any]], console: bool = False) -> Table:
    """The training table as bench.md has it; the console adds throughput, the CPU-time ratio (steady where other
    jobs share the CPU), the target and fmnist's own share over bare Lightning."""
    header = ["model", "batch", "steps x runs", "fmnist ms/step", "plain ms/step", "ratio median (min-max)",
              "bare Lightning / plain", "grouped ms/step (K)", "grouped / plain median (min-max)"]
    if console:
        header += ["fmnist img/s", "CPU-time ratio", "target", "fmnist / bare"]
    rows = []
    for row in results:
        cells = [row["model"], str(row["batch_size"]), f"{row['steps']} x {row['repeats']}",
                 _fmt(row["framework"]["ms_per_step"]), _fmt(row["plain"]["ms_per_step"]), _spread(row["ratio"]),
                 _fmt(row["lightning_floor_ratio"]["median"], 3),
                 f"{_fmt(row['grouped']['ms_per_step'])} ({row['grouped_steps_per_execution']})",
                 _spread(row["grouped_ratio"])]
        if console:
            cells += [_fmt(row["framework"]["images_per_second"], 0), _fmt(row["cpu_time_ratio"]["median"], 3),
                      "ok" if row["meets_target"] else "MISSED", _fmt(row["fmnist_over_lightning_ratio"]["median"], 3)]
        rows.append(cells)
    return header, rows


def switches_table(rows: list[dict[str, Any]]) -> Table:
    """A switch's row is its median ms/step against the recipe's; an eval batch's is one validation pass."""
    header = ["experiment", "switch", "baseline ms/step", "switched ms/step", "ratio median (min-max)",
              "first fit s (baseline -> switched)"]
    cells = []
    for row in rows:
        ratio = row["ratio"]
        if "validation_seconds" in row:
            cells.append([row["experiment"], f"`{row['switch']}` (one validation pass)", "",
                          f"{row['validation_seconds']:.2f} s", f"{ratio['median']:.3f}" if ratio else "", ""])
        else:
            cells.append([row["experiment"], row["switch"], f"{row['baseline_ms_per_step']:.2f}",
                          f"{row['switched_ms_per_step']:.2f}", _spread(ratio),
                          f"{row['baseline_first_fit_seconds']:.1f} -> {row['switched_first_fit_seconds']:.1f}"])
    return header, cells


def print_report(report: dict[str, Any]) -> None:
    """The machine, then every section of the report as a titled table, then the notes."""
    info, tables = report["machine"], []
    if results := report.get("training"):
        tables += [(f"Training step: fmnist (default module) and the opt-in module=grouped_steps vs a plain PyTorch "
                    f"loop, target ratio <= {report['targets']['ratio']}", training_table(results, console=True)),
                   ("Inference (eval mode, images/s)", (["model", "batch 1", "batch 1024"], [
                       [row["model"], _fmt(found["batch_1"], 0), _fmt(found["batch_1024"], 0)]
                       for row in results if (found := row.get("inference_images_per_second"))]))]
    if pipeline := report.get("data_pipeline"):
        tables.append((f"Data pipeline alone vs the fastest model (target >= {PIPELINE_TARGET:g}x)", (
            ["augmentation", "batch", "batches/s", "images/s", "x fastest model"],
            [[run["augmentation"], str(pipeline["batch_size"]), _fmt(run["batches_per_second"], 0),
              _fmt(run["images_per_second"], 0), _fmt(run["headroom"], 1)] for run in pipeline["runs"]])))
    if result := report.get("time_to_accuracy"):
        stats = ("mean", "std", "min", "max")
        tables.append((f"experiment={result['experiment']}: {len(result['runs'])} seeds, target {result['target']:.2%} "
                       "mean test accuracy", (["", *stats], [
                           ["test acc", *(f"{result['test_acc'][stat]:.4f}" for stat in stats)],
                           ["train s", *(f"{result['train_seconds'][stat]:.1f}" for stat in stats)]])))
    if report.get("switches"):
        tables.append(("Per-fit speed switches against their recipe", switches_table(report["switches"])))
    console = Console(width=160)
    console.print(f"device: {info['device']} ({info['device_name']}), {info['cpu_count']} CPUs, "
                  f"torch {info['torch']}, load average at start {info.get('load_average_at_start')}")
    for title, (header, rows) in tables:
        table = rich.table.Table(*header, title=title)
        for cells in rows:
            table.add_row(*cells)
        console.print(table)
    for line in [bf16_note(report), *(f"skipped {s['model']}: {s['reason']}" for s in report.get("skipped", []))]:
        if line:
            console.print(line)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """bench.json, and bench.md with the tables docs/speed.md quotes (training step; switches and the bf16 note)."""
    write_json_atomic(path, report)
    parts = [markdown_table(*training_table(report["training"])) + "\n"] if report.get("training") else []
    if report.get("switches"):
        note = bf16_note(report)
        parts.append(markdown_table(*switches_table(report["switches"])) + "\n" + (f"\n{note}\n" if note else ""))
    if parts:
        write_text_atomic(path.with_suffix(".md"), "\n".join(parts))
