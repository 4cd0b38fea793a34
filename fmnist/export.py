"""`python -m fmnist.export ckpt_path=<ckpt> format=onnx|torchscript`: a verified model file; see conf/export.yaml.
ONNX or TorchScript files are checked against PyTorch before they are kept."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from fmnist.core.atomic import refuse_special_target, write_bytes_atomic, write_json_atomic
from fmnist.core.command import hydra_command
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.limits import first_line, run_limits
from fmnist.inference.checkpoint import load_model
from fmnist.inference.testset import official_test_batches

log = logging.getLogger("fmnist.export")  # not __name__: run as __main__ by python -m
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
REPORT_FILE = "export.json"
QUIET_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "torch._dynamo")
EXTRA_HINT = "Fix: pip install -e '.[export]' (installs onnx, onnxscript and onnxruntime)"

Runner = Callable[[torch.Tensor], torch.Tensor]


class ExportError(FmnistError):
    """The exporter failed, or the exported file does not compute what the PyTorch model computes."""


def _export_onnx(net: nn.Module, example: torch.Tensor, opset: int | None) -> tuple[bytes, Runner]:
    try:
        import onnx  # noqa: F401  (torch's exporter needs onnx and onnxscript: fail here, with the fix)
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"format=onnx needs onnx, onnxscript and onnxruntime, which are not all installed. "
                          f"{EXTRA_HINT}") from None
    for name in QUIET_LOGGERS:  # the exporter's graph passes log every step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch")
    # its progress and warnings about internals are noise: the comparison with PyTorch decides whether it is right
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=["x"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), opset_version=opset, verbose=False)
    data = program.model_proto.SerializeToString()  # one self-contained file: the weights inside
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, lambda x: torch.from_numpy(np.asarray(session.run(None, {"x": x.numpy()})[0]))


def _export_torchscript(net: nn.Module, example: torch.Tensor, opset: int | None) -> tuple[bytes, Runner]:
    with warnings.catch_warnings():
        # deprecation and tracing warnings: the check runs other batch sizes than the traced one
        warnings.simplefilter("ignore")
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.trace(net, example), buffer)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    return buffer.getvalue(), loaded


EXPORTERS = {"onnx": _export_onnx, "torchscript": _export_torchscript}


def compare(reference: Runner, exported: Runner, x: torch.Tensor, batch_sizes: list[int]) -> dict[str, Any]:
    """Max |logit difference| and argmax agreement, at several batch sizes (the batch axis is dynamic)."""
    expected = reference(x)
    worst, agree = 0.0, 1.0
    for size in batch_sizes:
        got = torch.cat([exported(x[start : start + size]) for start in range(0, len(x), size)])
        worst = max(worst, float((got - expected).abs().max()))
        agree = min(agree, float((got.argmax(1) == expected.argmax(1)).float().mean()))
    return {"max_abs_diff": worst, "argmax_agreement": agree, "images": len(x), "batch_sizes": batch_sizes}


def run_export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    kind = str(cfg.format)
    if kind not in EXPORTERS:
        raise ConfigError("format", f"'{kind}' is not an export format", f"use one of {sorted(EXPORTERS)}")
    model = load_model(cfg.ckpt_path, run_limits(cfg))
    # the name was checked to be a bare config name, so the default stays in the run dir
    output = Path(str(cfg.output)) if cfg.output else run_dir / f"{model.name}{SUFFIXES[kind]}"
    refuse_special_target(output)
    loader = official_test_batches(model.config, cfg.data)
    count = int(cfg.verify.images)
    x = torch.cat([batch for batch, _ in loader])[:count].cpu().contiguous()

    try:
        data, exported = EXPORTERS[kind](model.net, x[:2], cfg.get("opset"))
    except FmnistError:
        raise
    except Exception as exc:
        raise ExportError(f"{kind} export of {model.name} failed: {type(exc).__name__}: "
                          f"{first_line(exc)}") from exc
    with torch.inference_mode():
        check = compare(model.net, exported, x, [len(x), 1, 7])
    if not (check["max_abs_diff"] <= float(cfg.verify.atol)
            and check["argmax_agreement"] >= float(cfg.verify.min_agreement)):
        raise ExportError(f"the {kind} file does not match PyTorch on {check['images']} test images: max |diff| "
                          f"{check['max_abs_diff']:.3g} (allowed {cfg.verify.atol}), argmax agreement "
                          f"{check['argmax_agreement']:.4f} (required {cfg.verify.min_agreement}); no file kept")
    write_bytes_atomic(output, data)  # only a verified model is written, and whole

    layout = "(B, 1, 28, 28)" if model.input_kind == "image" else "(B, 28, 28)"
    mean, std = loader.transform.mean, loader.transform.std  # the datamodule's, from the train images
    report = {"task": "export", "format": kind, "file": str(output), "bytes": output.stat().st_size,
              "ckpt_path": str(model.path), "model": model.name, "input": f"normalised float32 {layout}, "
              f"dynamic batch B: (pixels / 255 - {mean:.4f}) / {std:.4f}", "input_name": "x",
              "output": "logits (B, 10)",
              # The file holds the backbone alone; a run tested with model.tta_flip averaged it over mirror images.
              "model_tta_flip_not_included": bool(model.config.model.get("tta_flip", False)),
              **check, "status": "verified"}
    write_json_atomic(run_dir / REPORT_FILE, report)
    log.info("%s: wrote %s; on %d test images max |logit diff| %.2e, argmax agreement %.4f", model.name, output,
             check["images"], check["max_abs_diff"], check["argmax_agreement"])
    return report


cli = hydra_command("export", run_export)  # the `fmnist-export` console script


if __name__ == "__main__":
    cli()
