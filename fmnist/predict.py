"""`python -m fmnist.predict ckpt_path=<ckpt> input=<test|folder|image|idx> output=<csv>`: see conf/predict.yaml."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from fmnist.cli import exit_unless_output_writable, run_guarded
from fmnist.config_dir import CONF_DIR
from fmnist.inference.prediction import run_predict


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_guarded(lambda: run_predict(cfg))


if __name__ == "__main__":
    exit_unless_output_writable(sys.argv[1:])
    main()
