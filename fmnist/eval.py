"""`python -m fmnist.eval ckpt_path=<checkpoint or run dir>`: test a trained model; see conf/eval.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fmnist.cli import exit_unless_output_writable, run_guarded
from fmnist.config_dir import CONF_DIR
from fmnist.inference.evaluation import evaluate


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    """Return the test accuracy (eval selects nothing, so reporting test here is safe)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics = run_guarded(lambda: evaluate(cfg, run_dir))
    return float(metrics["test/acc"])


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
