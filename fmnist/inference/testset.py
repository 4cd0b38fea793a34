"""The training run's datamodule, with the data looked for where this command is told, not where training ran."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.data.datamodule import FashionMnistDataModule
from fmnist.inference.checkpoint import LoadedModel
from fmnist.training.builders import build_datamodule

LOCATION_KEYS = ("data_dir", "system_dir", "download", "verify_checksums", "eval_batch_size")


def run_datamodule(run_config: DictConfig, data: DictConfig) -> FashionMnistDataModule:
    """`data` (conf/data_location) holds only where to find the files and the batch size; the split and the input
    layout come from the checkpoint's run config, so the batches and the normalisation are training's own."""
    overrides = {key: data[key] for key in LOCATION_KEYS if key in data and data[key] is not None}
    return build_datamodule(OmegaConf.merge(run_config, {"data": overrides}))  # type: ignore[arg-type]


def official_test_batches(run_config: DictConfig, data: DictConfig) -> TensorBatches:
    """Training's test loader, set up outside a Trainer; its `transform` holds the only copy of the normalisation
    (the mean and std the datamodule computes from the train images)."""
    datamodule = run_datamodule(run_config, data)
    datamodule.setup("test")  # finds (or downloads) the data as prepare_data would
    return datamodule.test_dataloader()


def test_transform(model: LoadedModel, data: DictConfig) -> BatchTransform:
    """How training normalised its test batches: the mean and std its checkpoint saved, or for a checkpoint
    without them, the ones its datamodule computes from the train set (found through `data`)."""
    if model.normalisation is not None:
        return BatchTransform(*model.normalisation, model.input_kind)
    return official_test_batches(model.config, data).transform
