"""The data path alone: TensorBatches with no model, to show that training never waits on data."""

from __future__ import annotations

from fmnist.bench.timing import Timing, clock
from fmnist.data.augment import Augmentation
from fmnist.data.batches import BatchTransform, TensorBatches
from fmnist.data.datamodule import FashionMnistDataModule


def time_data_pipeline(datamodule: FashionMnistDataModule, batch_size: int, batches: int,
                       augmentation: Augmentation | None = None) -> Timing:
    """Shuffled, transformed training batches exactly as `train_dataloader` makes them (one epoch's worth
    at most, so the per-epoch shuffle is included); `augmentation` replaces the config's if given."""
    loader = datamodule.train_dataloader()
    transform = datamodule.transform
    if augmentation is not None:
        transform = BatchTransform(transform.mean, transform.std, transform.input_kind, augmentation,
                                   transform.channels_last)
    loader = TensorBatches(loader.images, loader.labels, batch_size, transform, train=True, seed=0, drop_last=True)
    batches = min(batches, len(loader))
    device = loader.images.device
    start = clock(device)
    count = 0
    for x, _ in loader:
        count += 1
        if count == batches:
            x.sum()  # the last batch is really computed before the clock stops
            break
    return Timing(steps=count, batch_size=batch_size, seconds=clock(device) - start)


def pipeline_report(datamodule: FashionMnistDataModule, batch_size: int, batches: int, model: str,
                    model_images_per_second: float) -> dict:
    """Pipeline throughput with the config's augmentation and with flip + translate (the speedrun's), each as a
    multiple of what the fastest model consumes."""
    runs = []
    for name, augmentation in (("config", None), ("flip+translate", Augmentation(flip=True, translate=2))):
        timing = time_data_pipeline(datamodule, batch_size, batches, augmentation)
        runs.append({"augmentation": name, "batches": timing.steps, "batches_per_second": timing.steps / timing.seconds,
                     "images_per_second": timing.images_per_second,
                     "headroom": timing.images_per_second / model_images_per_second})
    return {"batch_size": batch_size, "fastest_model": model,
            "fastest_model_images_per_second": model_images_per_second, "runs": runs}
