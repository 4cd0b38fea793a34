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
from fmnist.training.tally import EpochTally

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
        tta_flip: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.tta_flip = tta_flip
        self.cuda_graphs = cuda_graphs
        self.optimizer_factory = optimizer
        self.scheduler_spec = scheduler
        self.label_smoothing = label_smoothing
        self.max_norm = max_norm
        self.class_names = tuple(class_names)
        self.run_config = run_config or {}
        num_classes = len(self.class_names)
        self.train_tally = EpochTally(num_classes)  # cheap per-step train metrics: see fmnist/training/tally.py
        self.val_metrics = summary_metrics("val", num_classes)
        self.test_metrics = summary_metrics("test", num_classes)
        self.per_class = nn.ModuleDict({stage: per_class_metrics(num_classes) for stage in ("val", "test")})
        self.confusion = nn.ModuleDict({stage: confusion_matrix(num_classes) for stage in ("val", "test")})
        self.last_confusion: dict[str, torch.Tensor] = {}
        self.last_per_class: dict[str, dict[str, float]] = {}
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # for PR curves, test only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.net(x)
        # A CUDA-graph replay (model.compile=reduce-overhead) writes its output into the same buffer every
        # time: each call starts a new step, and its output is copied so that a second call (the mirrored
        # images of test-time augmentation) cannot overwrite the first. The copy is (batch, 10) floats.
        torch.compiler.cudagraph_mark_step_begin()
        return self.net(x).clone()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_tally.update(logits, y, loss)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_tally.reset()

    def on_train_epoch_end(self) -> None:
        if self.train_tally:  # not reached in practice: on_train_batch_end logs the epoch's last batch
            self._log_train_epoch()

    def _log_train_epoch(self) -> None:
        """train/loss, acc, precision, recall, f1 of the epoch: logged once, not on every step."""
        self.log_dict(self.train_tally.compute("train"), on_step=False, on_epoch=True)
        self.train_tally.reset()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.max_norm:
            apply_max_norm(self.net, self.max_norm)
        # The epoch's last batch, or a batch after which it stops early (trainer.max_time, max_steps, a
        # callback's stop signal: the module's hook runs after every callback's). Logged here, before
        # validation and before the callbacks' on_train_epoch_end (history.csv) read the metrics.
        if self.trainer.fit_loop.epoch_loop.done:
            self._log_train_epoch()

    def _eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """With `tta_flip`, the mean of the logits of each image and its mirror image (test-time augmentation)."""
        logits = self.forward(x)
        return (logits + self.forward(x.flip(-1))) / 2 if self.tta_flip else logits

    def _evaluate(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self._eval_logits(x)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, y)
        self.per_class[stage].update(logits, y)
        self.confusion[stage].update(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=True)  # one epoch-end reduction; a no-op in a single process
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_test_epoch_start(self) -> None:
        """Keep test probabilities (10k x 10 floats) only when the logger can draw PR curves."""
        self._test_outputs = [] if hasattr(getattr(self.logger, "experiment", None), "add_pr_curve") else None

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self._evaluate("test", batch)
        if self._test_outputs is not None:
            self._test_outputs.append((logits.detach().softmax(dim=1), batch[1]))

    def _finish_epoch(self, stage: str) -> None:
        """Per-class scalars and the confusion heatmap: computed once an epoch, not per step."""
        per_class = {name: values.cpu() for name, values in self.per_class[stage].compute().items()}
        self.per_class[stage].reset()
        flat: dict[str, float] = {}
        for metric, values in per_class.items():
            for class_name, value in zip(self.class_names, values.tolist(), strict=True):
                flat[f"{stage}/class_{metric}/{metric_safe(class_name)}"] = value
        self.log_dict(flat, rank_zero_only=True)  # already synchronised by torchmetrics' compute
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
        self._log_pr_curves()

    def _log_pr_curves(self) -> None:
        """One-vs-rest precision-recall curve per class on the test set (TensorBoard's PR Curves tab).

        Under DDP only rank 0 writes, from its own shard of the test set (curves, not reported figures).
        """
        if not self._test_outputs:
            return
        probabilities = torch.cat([output[0] for output in self._test_outputs]).cpu()
        labels = torch.cat([output[1] for output in self._test_outputs]).cpu()
        self._test_outputs = None
        experiment = self.logger.experiment  # type: ignore[union-attr]
        for index, class_name in enumerate(self.class_names):
            experiment.add_pr_curve(f"test/pr_curve/{metric_safe(class_name)}", labels == index,
                                    probabilities[:, index], global_step=self.current_epoch)

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
