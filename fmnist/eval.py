"""`python -m fmnist.eval ckpt_path=<checkpoint or run dir>`: test a trained model; see conf/eval.yaml. Writes what a
person needs to judge it: figures, per-class tables, calibration and metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fmnist.core.checkpoints import recorded_checkpoint
from fmnist.core.command import hydra_command
from fmnist.core.constants import CLASS_NAMES
from fmnist.core.figures import confusion_heatmap, save_figure
from fmnist.core.limits import run_limits
from fmnist.core.metrics_file import COMPLETED, completed_metrics, write_metrics
from fmnist.inference.checkpoint import LoadedModel, load_model
from fmnist.inference.predictor import classifier, inference_trainer, resolve_precision, resolve_tta
from fmnist.inference.reports import (
    expected_calibration_error,
    mistakes_gallery,
    per_class_rows,
    reliability_diagram,
    write_per_class,
)
from fmnist.inference.testset import run_datamodule

log = logging.getLogger("fmnist.eval")  # not __name__: run as __main__ by python -m
FILES = {"confusion": "confusion.png", "per_class_csv": "per_class.csv", "per_class_md": "per_class.md",
         "mistakes": "mistakes.png", "reliability": "reliability.png"}


def training_test_acc(model: LoadedModel) -> float | None:
    """What the training run reported for this very checkpoint, when its metrics.json sits beside it."""
    run_dir = model.path.parent.parent
    metrics = completed_metrics(run_dir)  # checked: test/acc is a share or null
    recorded = recorded_checkpoint(run_dir)
    if metrics is None or metrics.get("test/acc") is None or recorded is None:
        return None
    return float(metrics["test/acc"]) if recorded.resolve() == model.path.resolve() else None


def run_eval(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """`trainer.test` of the checkpoint's ClassifierModule on its run's test set; every figure is the test stage's."""
    started = time.perf_counter()
    model = load_model(cfg.ckpt_path, run_limits(cfg))
    trainer = inference_trainer(str(cfg.device), resolve_precision(str(cfg.precision), model.config))
    tta = resolve_tta(str(cfg.eval.tta), model.config)
    if tta == "flip" and not (model.config.augmentation.flip or model.config.model.tta_flip):
        log.warning("%s was trained without augmentation.flip: mirrored images are new to it, so flip TTA may "
                    "lower its accuracy", model.name)
    module = classifier(model, tta)
    datamodule = run_datamodule(model.config, cfg.data)
    results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    scalars = {key: float(value) for key, value in results.items()}
    confusion = module.last_confusion["test"]
    assert module.last_test_outputs is not None  # set by every test epoch that saw a batch
    probabilities, targets = module.last_test_outputs
    images = datamodule.test_dataloader().images.cpu()

    title = f"{model.name} ({model.path.name}{', flip TTA' if tta == 'flip' else ''})"
    save_figure(confusion_heatmap(confusion, CLASS_NAMES, f"test confusion, {title}"), run_dir / FILES["confusion"])
    write_per_class(per_class_rows(scalars, confusion, CLASS_NAMES), run_dir / FILES["per_class_csv"],
                    run_dir / FILES["per_class_md"])
    count = int(cfg.eval.gallery_size)
    save_figure(mistakes_gallery(images, probabilities, targets, CLASS_NAMES, count,
                                 f"{count} most confident mistakes, {title}"), run_dir / FILES["mistakes"])
    if cfg.eval.calibration:
        bins = int(cfg.eval.bins)
        scalars["test/ece"] = expected_calibration_error(probabilities, targets, bins)
        save_figure(reliability_diagram(probabilities, targets, bins, f"reliability, {title}"),
                    run_dir / FILES["reliability"])
    files = {key: name for key, name in FILES.items() if key != "reliability" or cfg.eval.calibration}

    metrics = write_metrics(run_dir, {
        "task": "eval",
        "ckpt_path": str(model.path),
        "model": model.name,
        "family": model.config.model.family,
        "input": model.input_kind,
        "epoch": model.epoch,
        "tta": tta,
        "calibration_bins": int(cfg.eval.bins) if cfg.eval.calibration else None,
        "num_images": len(targets),
        **scalars,
        "test/confusion": confusion.tolist(),
        "files": files,
        "eval_seconds": time.perf_counter() - started,
        "status": COMPLETED,
    })
    reported = training_test_acc(model)
    if reported is not None and tta == "none":
        log.info("training reported test/acc %.4f for this checkpoint; eval gives %.4f (%s)", reported,
                 scalars["test/acc"], "identical" if reported == scalars["test/acc"] else "DIFFERENT")
    log.info("%s: test/acc %.4f, f1 %.4f%s on %d images; results in %s", model.name, scalars["test/acc"],
             scalars["test/f1"], f", ECE {scalars['test/ece']:.4f}" if "test/ece" in scalars else "",
             len(targets), run_dir)
    return metrics


# the `fmnist-eval` console script; its value is the test accuracy (eval selects nothing, so reporting test is safe)
cli = hydra_command("eval", lambda cfg, run_dir: float(run_eval(cfg, run_dir)["test/acc"]))


if __name__ == "__main__":
    cli()
