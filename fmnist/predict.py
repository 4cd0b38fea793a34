"""`python -m fmnist.predict ckpt_path=<ckpt> input=<test|folder|image|idx> output=<csv>`: see conf/predict.yaml.
Class and probabilities for the test set, a folder of images, one image or an IDX file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import refuse_special_target, write_csv_atomic
from fmnist.core.command import hydra_command
from fmnist.core.constants import CLASS_NAMES, NUM_CLASSES
from fmnist.core.limits import run_limits
from fmnist.inference.checkpoint import load_model
from fmnist.inference.images import Conversion, read_inputs
from fmnist.inference.predictor import (
    classifier,
    image_loader,
    inference_trainer,
    resolve_precision,
    resolve_tta,
)
from fmnist.inference.testset import official_test_batches, test_transform

log = logging.getLogger("fmnist.predict")  # not __name__: run as __main__ by python -m
TEST_INPUT = "test"
COLUMNS = ("index", "pred", "label", *(f"prob_{k}" for k in range(NUM_CLASSES)))


def conversion_from(cfg: DictConfig) -> Conversion:
    settings = OmegaConf.to_container(cfg.images, resolve=True)
    assert isinstance(settings, dict)
    settings["extensions"] = tuple(str(suffix).lower() for suffix in settings.get("extensions", ()))
    return Conversion(**settings)  # type: ignore[arg-type]


def prediction_rows(names: list[str], probabilities: torch.Tensor, decimals: int) -> list[dict[str, Any]]:
    predicted = probabilities.argmax(dim=1).tolist()
    return [{"index": name, "pred": pred, "label": CLASS_NAMES[pred],
             **{f"prob_{k}": f"{p:.{decimals}f}" for k, p in enumerate(row)}}
            for name, pred, row in zip(names, predicted, probabilities.tolist(), strict=True)]


def run_predict(cfg: DictConfig) -> dict[str, Any]:
    output = Path(str(cfg.output))
    refuse_special_target(output)  # before any work: a symlink or device node is never replaced
    model = load_model(cfg.ckpt_path, run_limits(cfg))
    trainer = inference_trainer(str(cfg.device), resolve_precision(str(cfg.precision), model.config))
    module = classifier(model, resolve_tta(str(cfg.tta), model.config))
    source = str(cfg.input)
    labels, skipped = None, []
    if source == TEST_INPUT:
        loader = official_test_batches(model.config, cfg.data)
        names, labels = [str(i) for i in range(len(loader.labels))], loader.labels.cpu()
    else:
        inputs = read_inputs(Path(source), conversion_from(cfg), run_limits(cfg))
        names, skipped = inputs.names, [name for name, _ in inputs.skipped]
        loader = image_loader(inputs.images, test_transform(model, cfg.data), int(cfg.batch_size))
    logits = torch.cat([batch.float().cpu() for batch in trainer.predict(module, dataloaders=loader) or []])
    probabilities = logits.softmax(dim=1)
    write_csv_atomic(output, prediction_rows(names, probabilities, int(cfg.decimals)))

    summary: dict[str, Any] = {"input": source, "output": str(output), "predicted": len(names), "skipped": skipped}
    if labels is not None:
        summary["acc"] = float((probabilities.argmax(dim=1) == labels).float().mean())
        log.info("accuracy on the official test set: %.4f", summary["acc"])
    if skipped:
        log.warning("skipped %d unreadable file(s): %s", len(skipped), ", ".join(skipped))
    log.info("%s: predicted %d image(s) from %s -> %s", model.name, len(names), source, output)
    return summary


cli = hydra_command("predict", lambda cfg, run_dir: run_predict(cfg))  # the `fmnist-predict` console script


if __name__ == "__main__":
    cli()
