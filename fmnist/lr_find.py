"""`python -m fmnist.lr_find [overrides]`: Lightning's learning-rate range test on a training recipe; conf/lr_find.yaml.
Only training batches are seen; writes lr_find.png and lr_find.json, and prints the override to train with."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_json_atomic, write_text_atomic
from fmnist.core.command import hydra_command
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.figures import save_figure
from fmnist.core.run_files import RESOLVED_CONFIG_FILE
from fmnist.training.builders import build_datamodule, build_module, build_trainer
from fmnist.training.config_checks import check_train_config, require_int, require_number
from fmnist.training.grouped import GroupedStepsModule

log = logging.getLogger("fmnist.lr_find")  # not __name__: run as __main__ by python -m
PLOT_FILE = "lr_find.png"
RESULT_FILE = "lr_find.json"
SUGGESTIONS = ("log_slope", "lightning")


def lr_override(lr: float) -> str:
    """`optimizer.lr=3.2e-3`: two significant digits, in the notation the configs use."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"optimizer.lr={mantissa}e{int(exponent)}"


def steepest_descent_lr(lrs: list[float], losses: list[float], skip_begin: int = 10, skip_end: int = 1) -> float | None:
    """The rate where the loss falls fastest against log(lr), as the plot shows it: Lightning's slope against lr
    favours the closely spaced small rates (Lightning issues #21141, #14167)."""
    pairs = [(lr, loss) for lr, loss in zip(lrs[skip_begin:-skip_end], losses[skip_begin:-skip_end], strict=True)
             if math.isfinite(loss)]
    if len(pairs) < 3:
        return None
    log_lrs = torch.tensor([math.log(lr) for lr, _ in pairs], dtype=torch.float64)
    slopes = torch.gradient(torch.tensor([loss for _, loss in pairs], dtype=torch.float64), spacing=[log_lrs])[0]
    return pairs[int(torch.argmin(slopes))][0]


def check_lr_find_config(options: DictConfig) -> None:
    require_number("lr_find.min_lr", options.min_lr, 0.0, None, "use a small positive rate, e.g. 1e-6",
                   low_inclusive=False)
    if not isinstance(options.max_lr, (int, float)) or options.max_lr <= options.min_lr:
        raise ConfigError("lr_find.max_lr", f"{options.max_lr!r} is not above lr_find.min_lr ({options.min_lr})",
                          "use a larger rate, e.g. 1.0")
    require_int("lr_find.num_training", options.num_training, 20, "test at least 20 rates, e.g. 100")
    if options.mode not in ("exponential", "linear"):
        raise ConfigError("lr_find.mode", f"{options.mode!r} is not a search mode", "use exponential or linear")
    if options.suggestion not in SUGGESTIONS:
        raise ConfigError("lr_find.suggestion", f"{options.suggestion!r} is not a suggestion rule",
                          f"use one of {', '.join(SUGGESTIONS)}")


def _plot(finder: Any, title: str, configured_lr: float, suggestions: dict[str, float | None], chosen_rule: str,
          path: Path) -> None:
    """Lightning's loss curve with the configured rate and each rule's suggestion marked."""
    figure = finder.plot(suggest=False)
    axes = figure.axes[0]
    axes.axvline(configured_lr, color="grey", linestyle="--", linewidth=1, label=f"configured {configured_lr:.2g}")
    for rule, value in suggestions.items():
        chosen = rule == chosen_rule
        if value is not None:
            axes.axvline(value, color="red" if chosen else "orange", linestyle="-" if chosen else ":", linewidth=1,
                         label=f"{rule} {value:.2g}{' (suggested)' if chosen else ''}")
    axes.set_title(title)
    axes.legend()
    save_figure(figure, path)


def find_lr(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run Lightning's range test on the recipe `cfg` describes; write the plot and the result."""
    check_train_config(cfg)
    options = cfg.lr_find
    check_lr_find_config(options)
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    write_text_atomic(run_dir / RESOLVED_CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    if isinstance(module, GroupedStepsModule):
        raise ConfigError("module", "the learning-rate finder steps the rate through Lightning's automatic "
                          "optimization, which grouped steps replace with their own loop",
                          "add module=default data.steps_per_execution=1 (the same optimizer steps, one per batch)")
    if module.lr is None:
        raise ConfigError("optimizer.lr", "the optimizer config has no lr for the finder to vary",
                          "use an optimizer config with an lr (conf/optimizer/)")
    from lightning.pytorch.tuner import Tuner  # after the config checks: a bad override fails fast

    configured_lr = float(module.lr)
    finder = Tuner(build_trainer(cfg, run_dir)).lr_find(
        module, datamodule=datamodule, min_lr=options.min_lr, max_lr=options.max_lr,
        num_training=options.num_training, mode=options.mode, early_stop_threshold=options.early_stop_threshold,
        attr_name="lr")
    if finder is None:  # Lightning skips the search under trainer.fast_dev_run
        raise ConfigError("trainer.fast_dev_run", "Lightning skips the learning-rate finder in a fast dev run",
                          "drop trainer.fast_dev_run")
    lrs = [float(value) for value in finder.results["lr"]]
    losses = [float(value) for value in finder.results["loss"]]
    lightning_lr = finder.suggestion()
    suggestions = {"log_slope": steepest_descent_lr(lrs, losses),
                   "lightning": None if lightning_lr is None else float(lightning_lr)}
    suggestion = suggestions[options.suggestion]
    if suggestion is None or not math.isfinite(suggestion):
        raise FmnistError(f"the learning-rate finder tested {len(lrs)} rates, too few for a suggestion (the loss "
                          f"diverged early, or the training split is too small). Fix: raise lr_find.num_training, "
                          f"lower lr_find.max_lr, or set lr_find.early_stop_threshold=null")
    suggestion = float(suggestion)
    _plot(finder, f"{cfg.model.name}: smoothed training loss over {len(lrs)} steps", configured_lr, suggestions,
          options.suggestion, run_dir / PLOT_FILE)
    result = {
        "model": cfg.model.name, "optimizer": cfg.optimizer._target_, "configured_lr": configured_lr,
        "suggested_lr": suggestion, "suggestion": options.suggestion, "log_slope_lr": suggestions["log_slope"],
        "lightning_lr": suggestions["lightning"], "override": lr_override(suggestion),
        "min_lr": float(options.min_lr), "max_lr": float(options.max_lr), "num_training": int(options.num_training),
        "mode": options.mode, "steps_run": len(lrs), "lr": lrs, "loss": losses, "plot": PLOT_FILE,
    }
    write_json_atomic(run_dir / RESULT_FILE, result)
    log.info("%s: suggested learning rate %.3g (configured %.3g) after %d steps; plot in %s", cfg.model.name,
             suggestion, configured_lr, len(lrs), run_dir / PLOT_FILE)
    return result


# python -m fmnist.lr_find prints the override to train with (stdout's last line, for scripts)
cli = hydra_command("lr_find", lambda cfg, run_dir: print(find_lr(cfg, run_dir)["override"]))


if __name__ == "__main__":
    cli()
