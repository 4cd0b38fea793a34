"""`python -m fmnist.export ckpt_path=<ckpt> format=onnx|torchscript`: a verified model file; see conf/export.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fmnist.cli import exit_unless_output_writable, run_guarded
from fmnist.config_dir import CONF_DIR
from fmnist.inference.exporting import run_export


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_guarded(lambda: run_export(cfg, run_dir))


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
