"""`--time-to-accuracy T --runs N`: train `experiment=speedrun` N times with different seeds, as
`python -m fmnist.train experiment=speedrun seed=S` would, and report test accuracy and training time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

from fmnist.bench.configs import compose_run
from fmnist.train import fit_and_test

log = logging.getLogger(__name__)
EXPERIMENT = "speedrun"


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": mean(values), "std": pstdev(values), "min": min(values), "max": max(values)}


def time_to_accuracy(target: float, runs: int, output_dir: Path, overrides: Sequence[str] = (),
                     experiment: str = EXPERIMENT, first_seed: int = 0) -> dict[str, Any]:
    """`train_seconds` is `trainer.fit` wall time (data setup and the per-epoch validation included;
    the final test excluded); the target is met when the *mean* test accuracy reaches it."""
    results = []
    for index in range(runs):
        seed = first_seed + index
        run_dir = output_dir / f"{experiment}_seed{seed}"
        cfg = compose_run([f"experiment={experiment}", f"seed={seed}", *overrides], run_dir)
        metrics = fit_and_test(cfg, run_dir)
        results.append({"seed": seed, "test_acc": metrics["test/acc"], "val_acc": metrics["val/acc"],
                        "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
                        "run_dir": str(run_dir)})
        log.info("time to accuracy: run %d/%d, seed %d: test/acc %.4f in %.1fs", index + 1, runs, seed,
                 metrics["test/acc"], metrics["train_seconds"])
    accuracy = spread([result["test_acc"] for result in results])
    return {
        "experiment": experiment,
        "overrides": list(overrides),
        "target": target,
        "runs": results,
        "test_acc": accuracy,
        "train_seconds": spread([result["train_seconds"] for result in results]),
        "reached": accuracy["mean"] >= target,
    }
