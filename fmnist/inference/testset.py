"""The official test set exactly as training's `trainer.test` saw it: same datamodule, same normalisation."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from fmnist.data.batches import TensorBatches
from fmnist.training.builders import build_datamodule

LOCATION_KEYS = ("data_dir", "system_dir", "download", "verify_checksums", "eval_batch_size")


def official_test_batches(run_config: DictConfig, data: DictConfig) -> TensorBatches:
    """Training's test loader, with the data looked for where this command is told, not where training ran.

    `data` holds only where to find the files and the batch size; the split and the input layout come
    from the checkpoint's run config, so the batches and the statistics are training's own.
    """
    overrides = {key: data[key] for key in LOCATION_KEYS if key in data and data[key] is not None}
    config = OmegaConf.merge(run_config, {"data": overrides})
    datamodule = build_datamodule(config)  # type: ignore[arg-type]
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.test_dataloader()
