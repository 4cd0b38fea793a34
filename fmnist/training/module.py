"""One LightningModule for every backbone: loss, metrics, optimisation. The backbone stays a plain module."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from fmnist.constants import CLASS_NAMES
from fmnist.training.constraints import apply_max_norm
from fmnist.training.figures import confusion_heatmap
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
CHECKPOINT_CONFIG_KEY = "fmnist_config"


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build and step a learning-rate schedule; `total_steps_kwarg` receives the run's step count."""

    factory: Callable[..., Any]
    interval: str = "epoch"
    monitor: str | None = None
    total_steps_kwarg: str | None = None


def metric_safe(name: str) -> str:
    """'T-shirt/top' -> 'T-shirt_top': a slash would nest TensorBoard groups."""
    return name.replace("/", "_").replace(" ", "_")


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification with torchmetrics for train, val and test."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
        max_norm: float | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_spec = scheduler
        self.label_smoothing = label_smoothing
        self.max_norm = max_norm
        self.class_names = tuple(class_names)
        self.run_config = run_config or {}
        num_classes = len(self.class_names)
        self.train_metrics = summary_metrics("train", num_classes)
        self.val_metrics = summary_metrics("val", num_classes)
        self.test_metrics = summary_metrics("test", num_classes)
        self.per_class = nn.ModuleDict({stage: per_class_metrics(num_classes) for stage in ("val", "test")})
        self.confusion = nn.ModuleDict({stage: confusion_matrix(num_classes) for stage in ("val", "test")})
        self.last_confusion: dict[str, torch.Tensor] = {}
        self.last_per_class: dict[str, dict[str, float]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_metrics.update(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.max_norm:
            apply_max_norm(self.net, self.max_norm)

    def _evaluate(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.net(x)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, y)
        self.per_class[stage].update(logits, y)
        self.confusion[stage].update(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def _finish_epoch(self, stage: str) -> None:
        """Per-class scalars and the confusion heatmap: computed once an epoch, not per step."""
        per_class = {name: values.cpu() for name, values in self.per_class[stage].compute().items()}
        self.per_class[stage].reset()
        flat: dict[str, float] = {}
        for metric, values in per_class.items():
            for class_name, value in zip(self.class_names, values.tolist(), strict=True):
                flat[f"{stage}/class_{metric}/{metric_safe(class_name)}"] = value
        self.log_dict(flat)
        self.last_per_class[stage] = flat
        matrix = self.confusion[stage].compute().cpu()
        self.confusion[stage].reset()
        self.last_confusion[stage] = matrix
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_figure") and not self.trainer.sanity_checking:
            figure = confusion_heatmap(matrix, self.class_names, f"{stage} confusion, epoch {self.current_epoch}")
            experiment.add_figure(f"{stage}/confusion_matrix", figure, global_step=self.current_epoch)

    def on_validation_epoch_end(self) -> None:
        self._finish_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._finish_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        spec = self.scheduler_spec
        if spec is None:
            return optimizer
        kwargs = {}
        if spec.total_steps_kwarg:
            kwargs[spec.total_steps_kwarg] = int(self.trainer.estimated_stepping_batches)
        scheduler: dict[str, Any] = {"scheduler": spec.factory(optimizer, **kwargs), "interval": spec.interval}
        if spec.monitor:
            scheduler["monitor"] = spec.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the resolved run config (plain types only) so eval can rebuild the model from the file alone."""
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.run_config
