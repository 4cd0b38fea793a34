"""`python -m fmnist.tune models=[conv_maxpool,lstm]` (docs/tuning.md): per model a search on one budget, then the
best and default configurations judged on folds the search never validated on, each step an fmnist command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from fmnist.core.atomic import write_json_atomic
from fmnist.core.command import hydra_command
from fmnist.core.config_dir import CONF_DIR
from fmnist.core.errors import ConfigError, FmnistError
from fmnist.core.limits import clip, model_name_problem
from fmnist.core.numbers import is_finite_number, is_int, is_real
from fmnist.core.run_files import COMPARISON_FILE, SUMMARY_FILE, RunFileError, read_run_json
from fmnist.data.folds import check_fold
from fmnist.report.tuning import comparison_report
from fmnist.search.space import build_search_space, override_value

log = logging.getLogger("fmnist.tune")  # not __name__: run as __main__ by python -m
COMPARISON_ATTR = "fmnist:comparison"  # a study's user attribute: the comparison (run dir and settings) it serves
MODES = ("held_out", "nested")  # one search per model judged on another partition, or one per outer fold


def outer_folds(cfg: DictConfig) -> list[int]:
    """The evaluation's folds (evaluation.folds, or all evaluation.num_folds), checked before anything trains."""
    keys = ("evaluation.num_folds", "evaluation.folds")
    evaluation = cfg.evaluation
    check_fold(evaluation.num_folds, 0, keys)
    folds = list(range(evaluation.num_folds)) if evaluation.folds is None else evaluation.folds
    if isinstance(folds, (list, ListConfig)):
        for fold in folds:
            check_fold(evaluation.num_folds, fold, keys)
    if not isinstance(folds, (list, ListConfig)) or not folds or len(set(folds)) != len(folds):
        raise ConfigError(keys[1], f"{clip(folds, 80)} is not a list of distinct folds",
                          "use null for all, or e.g. evaluation.folds=[0,1]")
    return list(folds)


def check_settings(cfg: DictConfig) -> dict[str, Any]:
    """The comparison's settings as plain data, each checked; a model without a search space is refused here.
    A held-out comparison's settings have no `mode` key, as before nested mode existed, so its run dirs go on."""
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
    mode = cfg.get("mode", "held_out")
    if mode not in MODES:
        raise ConfigError("mode", f"{clip(mode, 80)!r} is not a mode", "use mode=held_out (the default) or nested")
    pruner = cfg.budget.pruner
    if pruner is not None and not (Path(CONF_DIR) / "hydra" / "sweeper" / "pruner" / f"{pruner}.yaml").is_file():
        raise ConfigError("budget.pruner", f"{clip(pruner, 80)!r} is not a pruner option",
                          "use median, successive_halving, hyperband or null")
    for key in ("budget.n_trials", "budget.max_epochs"):
        value = OmegaConf.select(cfg, key)
        if not is_int(value) or value < 1:
            raise ConfigError(key, f"{clip(value, 80)} is not a positive integer", f"set {key}=N")
    check_fold(cfg.search.num_folds, cfg.search.fold, ("search.num_folds", "search.fold"))
    outer_folds(cfg)
    if mode == "held_out" and cfg.search.split_seed == cfg.evaluation.split_seed:
        raise ConfigError("evaluation.split_seed", "it is the search's split seed, so the held-out folds would be "
                          "the ones the search validated on", "use another seed, e.g. evaluation.split_seed=1")
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    settings = {key: plain[key] for key in ("budget", "search", "evaluation", "overrides")}
    if mode == "nested":  # the inner folds split each outer training part with the evaluation's seed
        del settings["search"]["split_seed"]
        settings = {"mode": mode, **settings}
    return settings


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
    nested = settings.get("mode") == "nested"  # whose folders are per outer fold (nested_fold)
    for model in models:  # the folders come from the (checked) model name, never from the file
        entry = record["models"].get(model)
        folders = {} if nested else {"tuned_dir": f"{model}/tuned", "default_dir": f"{model}/default"}
        record["models"][model] = {**(entry if isinstance(entry, dict) else {}), "model": model, **folders}
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


@dataclass(frozen=True)
class Search:
    """One study of a comparison: its name, the data split its trials train and validate on, its sweep folder."""

    study: str
    split: tuple[str, ...]
    folder: Path
    what: str


def model_search(cfg: DictConfig, model: str, run_dir: Path, fold: int | None = None) -> Search:
    """The model's one study, validated on fold `search.fold` of the partition `search.split_seed`; or outer fold
    `fold`'s, whose trials train and validate on inner folds of its training part, never on the fold itself."""
    evaluation, search = cfg.evaluation, cfg.search
    if fold is None:
        split = (f"data.split_seed={search.split_seed}", f"data.num_folds={search.num_folds}",
                 f"data.fold={search.fold}")
        return Search(f"tune_{model}", split, run_dir / model / "search", f"the search of {model}")
    split = (f"data.split_seed={evaluation.split_seed}", f"data.num_folds={evaluation.num_folds}",
             f"data.fold={fold}", f"data.inner_folds={search.num_folds}", f"data.inner_fold={search.fold}")
    return Search(f"tune_{model}_outer_{fold}", split, run_dir / model / f"outer_{fold}" / "search",
                  f"the search of {model} in outer fold {fold}")


def study_results(study: Any) -> dict[str, Any]:
    """A study's trial counts, trials' wall time, best value and best parameters, for comparison.json."""
    from optuna.trial import TrialState

    states = [trial.state for trial in study.trials]
    seconds = sum(trial.duration.total_seconds() for trial in study.trials if trial.duration is not None)
    trials = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
              "failed": states.count(TrialState.FAIL)}
    best = study.best_trial if trials["complete"] else None
    return {"study": study.study_name, "trials": trials, "search_seconds": seconds,
            "search_best": best.value if best else None, "best_params": dict(best.params) if best else {}}


def search_model(cfg: DictConfig, model: str, search: Search, storage: str, key: str) -> dict[str, Any]:
    """Run (or continue) one study of the model (checked by the caller) to the comparison's budget; its results."""
    budget = cfg.budget
    run_step("fmnist.train", [
        "-m", "hparams_search=equal_budget", f"+search_space={model}", f"model={model}",
        f"hydra.sweeper.study_name={search.study}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={budget.n_trials}", f"hydra.sweeper.sampler.seed={budget.sampler_seed}",
        *([f"hydra/sweeper/pruner={budget.pruner}"] if budget.pruner else []), *search.split,
        f"trainer.max_epochs={budget.max_epochs}", *cfg.overrides, *cfg.search_overrides,
        f"hydra.sweep.dir={search.folder}"], search.what)
    return study_results(open_comparison_study(storage, search.study, key))


def checked_params(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial's parameters, each a key of the model's own search space (conf/search_space, trusted) with a
    value inside its distribution: a study file is data, and its keys become command-line overrides."""
    from optuna.distributions import CategoricalDistribution

    overrides = ["hparams_search=equal_budget", f"+search_space={model}"]
    initialized = GlobalHydra.instance().is_initialized()  # inside the tune command's own Hydra app: its config path
    with nullcontext() if initialized else initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
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


def cross_validate_model(cfg: DictConfig, model: str, folder: Path, params: dict[str, Any],
                         folds: list[int] | None) -> float:
    """fmnist.cv of the model with `params` on `folds` (None: all) of the evaluation; its training seconds."""
    evaluation = cfg.evaluation
    run_step("fmnist.cv", [
        f"model={model}", *(f"{key}={override_value(value)}" for key, value in params.items()),
        f"data.split_seed={evaluation.split_seed}", f"data.num_folds={evaluation.num_folds}",
        *([f"cv.folds=[{','.join(str(fold) for fold in folds)}]"] if folds else []),
        f"trainer.max_epochs={cfg.budget.max_epochs}", *cfg.overrides, f"hydra.run.dir={folder}"],
        f"the cross-validation of {model} ({folder.parent.name}/{folder.name})")
    summary = read_run_json(folder / SUMMARY_FILE)
    return float(sum(value for value in summary.get("per_fold", {}).get("train_seconds", []) or []
                     if isinstance(value, (int, float))))


def run_comparison(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Per model (nested: and outer fold) a search, then its best configuration (held out: and its default one)
    cross-validated on folds that search never validated on; comparison.json after each, then the report."""
    settings = check_settings(cfg)
    storage = cfg.storage or f"sqlite:///{(run_dir / 'studies.db').resolve()}"
    key = json.dumps({"run_dir": str(run_dir.resolve()), **settings}, sort_keys=True)
    record = record_comparison(run_dir, settings, list(cfg.models))
    folds = outer_folds(cfg) if settings.get("mode") == "nested" else [None]
    searches = {(model, fold): model_search(cfg, model, run_dir, fold) for model in cfg.models for fold in folds}
    for search in searches.values():  # every study is checked before any model trains
        open_comparison_study(storage, search.study, key)
    for (model, fold), search in searches.items():
        result = search_model(cfg, model, search, storage, key)
        best = checked_params(model, result["best_params"])
        entry = record["models"][model]
        if fold is None:
            entry.update(result)
            held_out = list(cfg.evaluation.folds) if cfg.evaluation.folds else None
            tuned = cross_validate_model(cfg, model, run_dir / entry["tuned_dir"], best, held_out)
            default = cross_validate_model(cfg, model, run_dir / entry["default_dir"], {}, held_out)
            entry["cpu_seconds"] = result["search_seconds"] + tuned + default
        else:  # trained on the whole training part of the outer fold, validated on the fold
            seconds = cross_validate_model(cfg, model, run_dir / model / f"outer_{fold}" / "tuned", best, [fold])
            outer = entry["outer"] = entry["outer"] if isinstance(entry.get("outer"), dict) else {}
            outer[str(fold)] = {**result, "dir": f"{model}/outer_{fold}",
                                "cpu_seconds": result["search_seconds"] + seconds}
            entry["cpu_seconds"] = sum(item["cpu_seconds"] for item in outer.values()
                                       if isinstance(item, dict) and is_finite_number(item.get("cpu_seconds")))
        write_json_atomic(run_dir / COMPARISON_FILE, record)
    comparison_report(run_dir)
    log.info("report: %s", run_dir / "report" / "report.md")
    return record


cli = hydra_command("tune", run_comparison)  # the `fmnist-tune` console script


if __name__ == "__main__":
    cli()
