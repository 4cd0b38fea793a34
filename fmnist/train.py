"""`python -m fmnist.train [overrides]`: train, validate and test one model; see conf/train.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fmnist.cli import exit_unless_output_writable, run_guarded
from fmnist.config_dir import CONF_DIR
from fmnist.training.process import apply_process_settings
from fmnist.training.run import fit_and_test


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Return the validation accuracy, so a Hydra sweeper can optimise it (never the test accuracy)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    apply_process_settings(cfg.process)
    metrics = run_guarded(lambda: fit_and_test(cfg, run_dir))
    return float(metrics["val/acc"])


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
