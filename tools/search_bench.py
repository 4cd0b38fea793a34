"""`python tools/search_bench.py`: the same Optuna search with and without a pruner, side by side (docs/search.md);
a measurement to run by hand, so it lives outside the package."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def arm(out: Path, name: str, pruner: str | None, args: argparse.Namespace) -> dict[str, object]:
    import optuna

    storage = f"sqlite:///{(out / f'{name}.db').absolute()}"
    command = [sys.executable, "-m", "fmnist.train", "-m", "hparams_search=conv_maxpool_optuna",
               f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={args.trials}",
               f"hydra.sweeper.sampler.seed={args.seed}", f"hydra.sweep.dir={out / name}",
               f"data.train_subset={args.train_subset}", f"trainer.max_epochs={args.epochs}", "logger=csv",
               "process.threads=1", *([f"hydra/sweeper/pruner={pruner}"] if pruner else []), *args.overrides]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name="conv_maxpool_train", storage=storage)
    states = [trial.state.name for trial in study.trials]
    # what pruning saves whatever else the machine runs: the epochs the trials trained
    epochs = sum(json.loads(path.read_text()).get("epochs") or 0 for path in (out / name).glob("*/metrics.json"))
    return {"arm": name, "seconds": seconds, "epochs": epochs, "best": study.best_value,
            "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/search_bench.py", description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed, the same in both arms")
    parser.add_argument("--pruner", default="median", help="a hydra/sweeper/pruner option")
    parser.add_argument("--out", type=Path, default=Path("multirun/search_bench"))
    parser.add_argument("overrides", nargs="*", help="more overrides for both arms")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [arm(args.out, "no_pruner", None, args), arm(args.out, args.pruner, args.pruner, args)]
    print("| arm | wall time (s) | epochs trained | best val acc | complete | pruned | failed |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['arm']} | {row['seconds']:.0f} | {row['epochs']} | {100 * float(row['best']):.2f}% | "
              f"{row['complete']} | {row['pruned']} | {row['failed']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
