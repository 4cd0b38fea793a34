"""One LightningModule for every backbone: loss, metrics, optimisation. The backbone stays a plain module."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import Optimizer

from fmnist.constants import CLASS_NAMES
from fmnist.errors import FmnistError
from fmnist.training.constraints import apply_max_norm
from fmnist.training.figures import confusion_heatmap
from fmnist.training.metrics import confusion_matrix, per_class_metrics, summary_metrics
from fmnist.training.stepping import hooks_are_silent
from fmnist.training.tally import EpochTally


class MonitorMissingError(FmnistError):
    """A learning-rate schedule waits on a metric the run does not log."""


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
    """Cross-entropy classification with torchmetrics for train, val and test.

    The module steps its optimizer itself (Lightning's manual optimization) so that one Lightning step can
    run several optimizer steps: a training batch of K x `micro_batch_size` images (data.steps_per_execution)
    is split into K batches, each with its own forward, backward, optimizer and scheduler step. Lightning's
    per-step loop then costs 1/K as much per optimizer step (docs/speed.md). Hence the module, not the
    trainer, clips gradients and steps learning-rate schedules, with Lightning's semantics. Where no callback
    listens to the per-step hooks the step skips their dispatch (training/stepping.py); `fast_steps=False`
    always takes Lightning's `manual_backward` and optimizer wrapper instead.
    """

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
        micro_batch_size: int | None = None,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
        fast_steps: bool = True,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.micro_batch_size = micro_batch_size
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self._epoch_complete = False
        self.fast_steps = fast_steps
        self._silent_hooks = False
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
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        # the last test pass's softmax probabilities and labels (10k x 10 floats): PR curves, test_predictions.npz
        self.last_test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            return self.net(x)
        # A CUDA-graph replay (model.compile=reduce-overhead) writes its output into the same buffer every
        # time: each call starts a new step, and its output is copied so that a second call (the mirrored
        # images of test-time augmentation) cannot overwrite the first. The copy is (batch, 10) floats.
        torch.compiler.cudagraph_mark_step_begin()
        return self.net(x).clone()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimizer step per `micro_batch_size` images of the batch; returns their mean loss (NaN if any is)."""
        x, y = batch
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_spec and self.scheduler_spec.interval == "step" else None
        size = self.micro_batch_size or len(y)
        max_steps = self.trainer.max_steps
        losses = []
        for x_step, y_step in zip(x.split(size), y.split(size), strict=True):
            logits = self.forward(x_step)
            loss = F.cross_entropy(logits, y_step, label_smoothing=self.label_smoothing)
            self.train_tally.update(logits, y_step, loss)
            optimizer.zero_grad(set_to_none=True)
            if self._silent_hooks:  # the same step without dispatching hooks nobody listens to (stepping.py)
                loss.backward()
                self.on_before_optimizer_step(optimizer)
                optimizer._on_before_step()  # Lightning's own step counting: trainer.global_step
                optimizer.optimizer.step()
                optimizer._on_after_step()
            else:
                self.manual_backward(loss)
                optimizer.step()  # clipping happens in on_before_optimizer_step, after AMP unscaling
            if scheduler is not None:
                self.lr_scheduler_step(scheduler, None)  # type: ignore[arg-type]
            if self.max_norm:
                apply_max_norm(self.net, self.max_norm)
            losses.append(loss.detach())
            if max_steps != -1 and self.trainer.global_step >= max_steps:
                break  # trainer.max_steps counts optimizer steps, and may fall inside a batch group
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()

    def on_train_start(self) -> None:
        self._silent_hooks = self.fast_steps and hooks_are_silent(self.trainer, self, ClassifierModule)

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val,
                                gradient_clip_algorithm=self.gradient_clip_algorithm)

    def on_train_epoch_start(self) -> None:
        self.train_tally.reset()
        self._epoch_complete = False

    def on_train_epoch_end(self) -> None:
        if self.train_tally:  # not reached in practice: on_train_batch_end logs the epoch's last batch
            self._log_train_epoch()
        if self._epoch_complete:
            self._step_epoch_scheduler()

    def _step_epoch_scheduler(self) -> None:
        """An epoch-interval schedule steps once per completed epoch, after validation (for a monitored
        metric) and before the epoch-end checkpoint, which therefore holds the stepped schedule."""
        spec = self.scheduler_spec
        if spec is None or spec.interval != "epoch":
            return
        metric = None
        if spec.monitor:
            metric = self.trainer.callback_metrics.get(spec.monitor)
            if metric is None:
                raise MonitorMissingError(
                    f"the learning-rate schedule monitors {spec.monitor!r}, which this run did not log "
                    f"(logged: {sorted(self.trainer.callback_metrics) or 'nothing'}). Fix: keep validation on "
                    "(trainer.limit_val_batches > 0), or set scheduler.monitor to a logged metric.")
        self.lr_scheduler_step(self.lr_schedulers(), metric)  # type: ignore[arg-type]

    def _log_train_epoch(self) -> None:
        """train/loss, acc, precision, recall, f1 of the epoch: logged once, not on every step."""
        self.log_dict(self.train_tally.compute("train"), on_step=False, on_epoch=True)
        self.train_tally.reset()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._epoch_complete = batch_idx + 1 == self.trainer.num_training_batches
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
        self._test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        logits = self._evaluate("test", batch)
        self._test_outputs.append((logits.detach().float().softmax(dim=1), batch[1]))

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
        if self._test_outputs:
            self.last_test_outputs = (torch.cat([output[0] for output in self._test_outputs]).cpu(),
                                      torch.cat([output[1] for output in self._test_outputs]).cpu())
        self._test_outputs = []
        self._log_pr_curves()

    def _log_pr_curves(self) -> None:
        """One-vs-rest precision-recall curve per class on the test set (TensorBoard's PR Curves tab).

        Under DDP only rank 0 writes, from its own shard of the test set (curves, not reported figures).
        """
        experiment = getattr(self.logger, "experiment", None)
        if self.last_test_outputs is None or not hasattr(experiment, "add_pr_curve"):
            return
        probabilities, labels = self.last_test_outputs
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
            kwargs[spec.total_steps_kwarg] = self._planned_optimizer_steps()
        # the module steps the schedule itself (training_step, _step_epoch_scheduler); "interval" is for
        # LearningRateMonitor, and the monitored metric is read from spec.monitor
        scheduler = {"scheduler": spec.factory(optimizer, **kwargs), "interval": spec.interval}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _planned_optimizer_steps(self) -> int:
        """Optimizer steps of the whole run, for schedules that need it (one-cycle, cosine)."""
        trainer = self.trainer
        training_steps = trainer.estimated_stepping_batches  # Lightning steps; sets the train data up
        if math.isinf(training_steps):
            raise FmnistError("this learning-rate schedule needs the run's length. Fix: set trainer.max_epochs "
                              "or trainer.max_steps.")
        loader = trainer.train_dataloader
        if not hasattr(loader, "batches_in"):  # a loader without batch groups: one optimizer step per batch
            return int(training_steps)
        per_epoch = loader.batches_in(int(trainer.num_training_batches))
        epochs = trainer.max_epochs
        total = per_epoch * epochs if epochs not in (None, -1) else math.inf
        return int(min(total, trainer.max_steps) if trainer.max_steps != -1 else total)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the resolved run config (plain types only) so eval can rebuild the model from the file alone."""
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.run_config
