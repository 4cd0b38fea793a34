"""`python -m fmnist.train [overrides]`: train, validate and test one model; see conf/train.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fmnist.cli import exit_unless_output_writable, run_guarded
from fmnist.training.run import fit_and_test

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the configs' resolvers: fmnist/__init__.py


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Return the validation accuracy, so a Hydra sweeper can optimise it (never the test accuracy)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run_guarded(lambda: fit_and_test(cfg, run_dir))
    return float(metrics["val/acc"])


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
