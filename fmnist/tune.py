"""`python -m fmnist.tune models=[conv_maxpool,lstm]`: compare tuned models fairly; see conf/tune.yaml.

Per model, in its own folder of the run dir: `search/` (an Optuna search with fmnist's sweeper, the budget the same
for every model), then `tuned/` and `default/` (fmnist.cv of the best configuration and of the model's default one
on a partition of the train set the search never validated on). `report/` ranks the tuned models on those folds
with the study reports' statistics and adds the tuning section (fmnist.report.tuning). Each step is an fmnist
command run as a process, so every run dir is an ordinary one; a step already done is skipped on a rerun.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from fmnist.core.atomic import write_json_atomic
from fmnist.core.cli import exit_unless_output_writable, run_guarded
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.limits import clip, model_name_problem
from fmnist.core.numbers import is_int, is_real
from fmnist.core.run_files import COMPARISON_FILE, SUMMARY_FILE, RunFileError, read_run_json
from fmnist.report.tuning import comparison_report
from fmnist.search.space import build_search_space, override_value

log = logging.getLogger("fmnist.tune")  # not __name__: run as __main__ by python -m
COMPARISON_ATTR = "fmnist:comparison"  # a study's user attribute: the comparison (run dir and settings) it serves


def _positive(key: str, value: Any) -> int:
    if not is_int(value) or value < 1:
        raise ConfigError(key, f"{clip(value, 80)} is not a positive integer", f"set {key}=N")
    return value


def check_settings(cfg: DictConfig) -> dict[str, Any]:
    """The comparison's settings as plain data, each checked; a model without a search space is refused here."""
    models = list(cfg.models or [])
    if not models:
        raise ConfigError("models", "no model to compare", "pass models=[conv_maxpool,lstm]")
    for model in models:
        problem = model_name_problem(model)
        if problem:
            raise ConfigError("models", problem, "pass models=[conv_maxpool,lstm]")
        if not (Path(CONF_DIR) / "search_space" / f"{model}.yaml").is_file():
            raise ConfigError("models", f"{model} has no search space (conf/search_space/{model}.yaml)",
                              f"add one that starts from conf/search_space/default.yaml, or leave {model} out")
    pruner = cfg.budget.pruner
    if pruner is not None and not (Path(CONF_DIR) / "hydra" / "sweeper" / "pruner" / f"{pruner}.yaml").is_file():
        raise ConfigError("budget.pruner", f"{clip(pruner, 80)!r} is not a pruner option",
                          "use median, successive_halving, hyperband or null")
    for key in ("budget.n_trials", "budget.max_epochs", "search.num_folds", "evaluation.num_folds"):
        _positive(key, OmegaConf.select(cfg, key))
    if cfg.search.split_seed == cfg.evaluation.split_seed:
        raise ConfigError("evaluation.split_seed", "it is the search's split seed, so the held-out folds would be "
                          "the ones the search validated on", "use another seed, e.g. evaluation.split_seed=1")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return {key: plain[key] for key in ("budget", "search", "evaluation", "overrides")}


def record_comparison(run_dir: Path, settings: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """comparison.json: the settings every model shares. A rerun with other settings is refused, so one comparison
    never mixes budgets; a rerun may add models, which get the same budget."""
    path = run_dir / COMPARISON_FILE
    record: dict[str, Any] = {"settings": settings, "models": {}}
    if path.exists():
        try:
            record = read_run_json(path)
        except RunFileError as exc:
            raise FmnistError(f"{clip(path)} {exc}. Fix: start the comparison in a new run dir.") from None
        if not isinstance(record.get("models"), dict):
            raise FmnistError(f"{clip(path)} has no models mapping. Fix: start the comparison in a new run dir.")
        if record.get("settings") != settings:
            raise ConfigError("budget", f"{run_dir} holds a comparison with other settings "
                              f"({clip(record.get('settings'), 200)})", "rerun with the same settings, or start a new "
                              "comparison in another hydra.run.dir")
    for model in models:  # the folders come from the (checked) model name, never from the file
        entry = record["models"].get(model)
        record["models"][model] = {**(entry if isinstance(entry, dict) else {}), "model": model,
                                   "tuned_dir": f"{model}/tuned", "default_dir": f"{model}/default"}
    write_json_atomic(path, record)
    return record


def run_step(module: str, arguments: list[str], what: str) -> None:
    """One fmnist command as its own process; its errors are its own lines, this adds which step failed."""
    command = [sys.executable, "-m", module, *arguments]
    log.info("%s: %s", what, " ".join(command[1:]))
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise FmnistError(f"{what} ended with exit {done.returncode} (its own message is above). Fix: mend that, "
                          "then rerun the same command: finished trials and folds are kept.")


def open_comparison_study(storage: str, name: str, key: str) -> Any:
    """The model's study, created for this comparison; one made by another comparison (or by hand) is refused."""
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    owner = study.user_attrs.get(COMPARISON_ATTR)
    if owner is None and study.trials:
        owner = "another search"
    if owner is None:
        study.set_user_attr(COMPARISON_ATTR, key)
    elif owner != key:
        raise ConfigError("storage", f"study {name} in {storage} belongs to {clip(owner, 120)}, not to this "
                          "comparison", "use this comparison's own storage (storage=null), or another run dir")
    return study


def search_model(cfg: DictConfig, model: str, run_dir: Path, storage: str, key: str) -> dict[str, Any]:
    """Run (or continue) the model's search to its budget; return its trial counts, best value and parameters."""
    from optuna.trial import TrialState

    name = f"tune_{model}"
    open_comparison_study(storage, name, key)
    budget, search = cfg.budget, cfg.search
    run_step("fmnist.train", [
        "-m", "hparams_search=equal_budget", f"+search_space={model}", f"model={model}",
        f"hydra.sweeper.study_name={name}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={budget.n_trials}", f"hydra.sweeper.sampler.seed={budget.sampler_seed}",
        *([f"hydra/sweeper/pruner={budget.pruner}"] if budget.pruner else []),
        f"data.split_seed={search.split_seed}", f"data.num_folds={search.num_folds}", f"data.fold={search.fold}",
        f"trainer.max_epochs={budget.max_epochs}", *cfg.overrides, *cfg.search_overrides,
        f"hydra.sweep.dir={run_dir / model / 'search'}"], f"the search of {model}")
    study = open_comparison_study(storage, name, key)
    states = [trial.state for trial in study.trials]
    complete = [trial for trial in study.trials if trial.state == TrialState.COMPLETE]
    seconds = sum((trial.datetime_complete - trial.datetime_start).total_seconds() for trial in study.trials
                if trial.datetime_complete is not None and trial.datetime_start is not None)
    best = study.best_trial if complete else None
    trials = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
              "failed": states.count(TrialState.FAIL)}
    return {"study": name, "trials": trials,
            "search_seconds": seconds, "search_best": best.value if best else None,
            "best_params": dict(best.params) if best else {}}


def checked_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial's parameters, each a key of the model's own search space (conf/search_space, trusted) with a
    value inside its distribution: a study file is data, and its keys become command-line overrides."""
    from optuna.distributions import CategoricalDistribution

    overrides = ["hparams_search=equal_budget", f"+search_space={model}"]
    if GlobalHydra.instance().is_initialized():  # inside the tune command's own Hydra app: its config path
        composed = compose("train", overrides=overrides, return_hydra_config=True)
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            composed = compose("train", overrides=overrides, return_hydra_config=True)
    space = build_search_space(OmegaConf.to_container(composed.hydra.sweeper.params), []).distributions
    for key, value in params.items():
        distribution = space.get(key)
        if isinstance(distribution, CategoricalDistribution):
            inside = value in distribution.choices
        else:
            inside = (distribution is not None and is_real(value)
                      and distribution.low <= value <= distribution.high)
        if not inside:
            raise FmnistError(f"the study of {model} holds a best trial with {clip(key, 80)}={clip(value, 80)}, "
                              f"outside conf/search_space/{model}.yaml. Fix: start the comparison in a new run dir "
                              "(or with storage=null).")
    return params


def cross_validate_model(cfg: DictConfig, model: str, folder: Path, params: dict[str, Any]) -> float:
    """fmnist.cv of the model with `params` on the evaluation partition; return its training seconds."""
    evaluation = cfg.evaluation
    run_step("fmnist.cv", [
        f"model={model}", *(f"{key}={override_value(value)}" for key, value in params.items()),
        f"data.split_seed={evaluation.split_seed}", f"data.num_folds={evaluation.num_folds}",
        *([f"cv.folds=[{','.join(str(fold) for fold in evaluation.folds)}]"] if evaluation.folds else []),
        f"trainer.max_epochs={cfg.budget.max_epochs}", *cfg.overrides, f"hydra.run.dir={folder}"],
        f"the cross-validation of {model} ({folder.name})")
    summary = read_run_json(folder / SUMMARY_FILE)
    return float(sum(value for value in summary.get("per_fold", {}).get("train_seconds", []) or []
                     if isinstance(value, (int, float))))


def run_comparison(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    settings = check_settings(cfg)
    models = list(cfg.models)
    storage = cfg.storage or f"sqlite:///{(run_dir / 'studies.db').resolve()}"
    key = json.dumps({"run_dir": str(run_dir.resolve()), **settings}, sort_keys=True)
    record = record_comparison(run_dir, settings, models)
    for model in models:  # every model's study is checked before any model trains
        open_comparison_study(storage, f"tune_{model}", key)
    for model in models:
        entry = record["models"][model]
        entry.update(search_model(cfg, model, run_dir, storage, key))
        best = checked_params(model, entry["best_params"])
        tuned = cross_validate_model(cfg, model, run_dir / entry["tuned_dir"], best)
        default = cross_validate_model(cfg, model, run_dir / entry["default_dir"], {})
        entry["cpu_seconds"] = entry["search_seconds"] + tuned + default
        write_json_atomic(run_dir / COMPARISON_FILE, record)
    comparison_report(run_dir)
    log.info("report: %s", run_dir / "report" / "report.md")
    return record


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="tune")
def main(cfg: DictConfig) -> None:
    run_guarded(lambda: run_comparison(cfg, Path(HydraConfig.get().runtime.output_dir)))


def cli() -> None:
    """The `fmnist-tune` console script: `python -m fmnist.tune`."""
    exit_unless_output_writable(sys.argv[1:])
    main()


if __name__ == "__main__":
    cli()
