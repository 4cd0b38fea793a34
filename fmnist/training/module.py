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

from fmnist.core.checkpoints import CHECKPOINT_CONFIG_KEY, check_checkpoint_fits
from fmnist.core.constants import CLASS_NAMES, NUM_CLASSES
from fmnist.core.errors import FmnistError
from fmnist.core.figures import confusion_heatmap
from fmnist.core.metric_keys import flatten_per_class, metric_safe
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics
from fmnist.training.tally import EpochTally


class MonitorMissingError(FmnistError):
    """A learning-rate schedule waits on a metric the run does not log."""


OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


@torch.no_grad()
def apply_max_norm(net: nn.Module, max_norm: float) -> None:
    """Cap the L2 norm of each output unit's incoming weights (Keras `MaxNorm`) in conv and linear layers."""
    for layer in net.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            layer.weight.copy_(torch.renorm(layer.weight, p=2, dim=0, maxnorm=max_norm))


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build and step a learning-rate schedule (conf/scheduler/); `total_steps_kwarg` receives the run's
    step count. scheduler=none instantiates one without a factory, which build_scheduler turns into None."""

    factory: Callable[..., Any] | None = None
    name: str = "none"
    interval: str = "epoch"
    monitor: str | None = None
    total_steps_kwarg: str | None = None


class ClassifierModule(L.LightningModule):
    """Cross-entropy classification under Lightning's automatic optimization, so every Trainer option behaves as
    documented; training metrics come from a per-epoch tally, as torchmetrics per step cost more than the step."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
        max_norm: float | None = None,
        run_config: dict[str, Any] | None = None,
        tta_flip: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.tta_flip = tta_flip
        self.cuda_graphs = cuda_graphs
        self.optimizer_factory = optimizer
        # The optimizer's learning rate (its partial's `lr`), which configure_optimizers passes on: the attribute
        # Lightning's learning-rate finder reads and sets (Tuner.lr_find, python -m fmnist.lr_find).
        self.lr: float | None = getattr(optimizer, "keywords", {}).get("lr")
        self.scheduler_spec = scheduler
        self.label_smoothing = label_smoothing
        self.max_norm = max_norm
        self.run_config = run_config or {}
        self.train_tally = EpochTally(NUM_CLASSES)
        self.val_metrics = summary_metrics("val")
        self.test_metrics = summary_metrics("test")
        self.per_class = nn.ModuleDict({stage: per_class_metrics() for stage in ("val", "test")})
        self.confusion = nn.ModuleDict({stage: confusion_matrix() for stage in ("val", "test")})
        self.last_confusion: dict[str, torch.Tensor] = {}
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # the last test pass's softmax probabilities and labels (10k x 10 floats): PR curves, test_predictions.npz
        self.last_test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loaded_epoch: int | None = None  # the epoch of the checkpoint Lightning last loaded into this module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.net(x)
        # A CUDA-graph replay (model.compile=reduce-overhead) reuses its output buffer: copy it, so the mirrored
        # images of test-time augmentation cannot overwrite the first output.
        torch.compiler.cudagraph_mark_step_begin()
        return self.net(x).clone()

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of one batch, tallied for the epoch; `y` may be mixup / CutMix soft labels, whose argmax
        (the image that dominates the mix) counts as the label for training accuracy."""
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_tally.update(logits, y if y.dim() == 1 else y.argmax(dim=1), loss)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.training_loss(x, y)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Lightning's step, then the Keras-style max-norm weight constraint (regularization.max_norm)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.max_norm:
            apply_max_norm(self.net, self.max_norm)

    def on_train_epoch_start(self) -> None:
        self.train_tally.reset()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The epoch's last batch, or a batch after which it stops early (max_time, max_steps, a stop signal):
        # logged here, before validation and before the callbacks' on_train_epoch_end (history.csv) read it.
        if self.trainer.fit_loop.epoch_loop.done:
            self.log_train_epoch()

    def on_train_epoch_end(self) -> None:
        """Also names a schedule's missing metric before Lightning's epoch-end schedule step fails on it."""
        if self.train_tally:  # an epoch that ended without its last batch reporting done
            self.log_train_epoch()
        spec = self.scheduler_spec
        if spec is not None and spec.monitor and spec.monitor not in self.trainer.callback_metrics:
            raise MonitorMissingError(
                f"the learning-rate schedule monitors {spec.monitor!r}, which this run did not log "
                f"(logged: {sorted(self.trainer.callback_metrics) or 'nothing'}). Fix: keep validation on "
                "(trainer.limit_val_batches > 0), or set scheduler.monitor to a logged metric.")

    def log_train_epoch(self) -> None:
        """train/loss, acc, precision, recall, f1 of the epoch: logged once, not on every step."""
        self.log_dict(self.train_tally.compute("train"), on_step=False, on_epoch=True)
        self.train_tally.reset()

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """With `tta_flip`, the mean of the logits of each image and its mirror image (the last axis in both layouts,
        as training's flip augmentation showed them): test-time augmentation, the same in eval and predict."""
        return (self(x) + self(x.flip(-1))) / 2 if self.tta_flip else self(x)

    def eval_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self.eval_logits(x)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, y)
        self.per_class[stage].update(logits, y)
        self.confusion[stage].update(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=True)  # one epoch-end reduction; a no-op in a single process
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.eval_step("val", batch)

    def on_test_epoch_start(self) -> None:
        self.test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self.eval_step("test", batch)
        self.test_outputs.append((logits.detach().float().softmax(dim=1), batch[1]))

    def predict_step(self, batch: torch.Tensor | Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Logits of images, or of the images of (images, labels), with the test stage's flip TTA (`tta_flip`)."""
        return self.eval_logits(batch if isinstance(batch, torch.Tensor) else batch[0])

    def finish_eval_epoch(self, stage: str) -> None:
        """Per-class scalars and the confusion heatmap: computed once an epoch, not per step."""
        per_class = {name: values.cpu() for name, values in self.per_class[stage].compute().items()}
        self.per_class[stage].reset()
        flat = flatten_per_class(stage, per_class, CLASS_NAMES)
        self.log_dict(flat, rank_zero_only=True)  # already synchronised by torchmetrics' compute
        matrix = self.confusion[stage].compute().cpu()
        self.confusion[stage].reset()
        self.last_confusion[stage] = matrix
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_figure") and not self.trainer.sanity_checking:
            figure = confusion_heatmap(matrix, CLASS_NAMES, f"{stage} confusion, epoch {self.current_epoch}")
            experiment.add_figure(f"{stage}/confusion_matrix", figure, global_step=self.current_epoch)

    def on_validation_epoch_end(self) -> None:
        self.finish_eval_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Also a one-vs-rest precision-recall curve per class (TensorBoard's PR Curves tab); under DDP from rank
        0's shard only (curves, not reported figures)."""
        self.finish_eval_epoch("test")
        if self.test_outputs:
            self.last_test_outputs = (torch.cat([output[0] for output in self.test_outputs]).cpu(),
                                      torch.cat([output[1] for output in self.test_outputs]).cpu())
        self.test_outputs = []
        experiment = getattr(self.logger, "experiment", None)
        if self.last_test_outputs is None or not hasattr(experiment, "add_pr_curve"):
            return
        probabilities, labels = self.last_test_outputs
        for index, class_name in enumerate(CLASS_NAMES):
            experiment.add_pr_curve(f"test/pr_curve/{metric_safe(class_name)}", labels == index,
                                    probabilities[:, index], global_step=self.current_epoch)

    def planned_optimizer_steps(self) -> int:
        """Optimizer steps of the whole run, for schedules that need it (one-cycle, cosine)."""
        steps = self.trainer.estimated_stepping_batches  # counts accumulation and max_steps
        if steps == float("inf"):
            raise FmnistError("this learning-rate schedule needs the run's length. Fix: set trainer.max_epochs "
                              "or trainer.max_steps.")
        return int(steps)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters(), **({} if self.lr is None else {"lr": self.lr}))
        spec = self.scheduler_spec
        if spec is None:
            return optimizer
        kwargs = {spec.total_steps_kwarg: self.planned_optimizer_steps()} if spec.total_steps_kwarg else {}
        scheduler = {"scheduler": spec.factory(optimizer, **kwargs), "interval": spec.interval}
        if spec.monitor:
            scheduler["monitor"] = spec.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse another model's weights with one line, on the one read of the file Lightning makes; remember
        their epoch, so train reports the tested checkpoint's without reading it again."""
        name = self.run_config.get("model", {}).get("name")
        check_checkpoint_fits(checkpoint, self, name, self.trainer.ckpt_path)
        self.loaded_epoch = checkpoint.get("epoch")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the resolved run config (plain types only) so eval can rebuild the model from the file alone."""
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.run_config
