"""One report (report.md, leaderboard.csv, figures/) of a collection of runs, the same for `python -m fmnist.report`
and `make results`; nothing is re-run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fmnist.core.atomic import write_csv_atomic, write_text_atomic
from fmnist.core.limits import clip
from fmnist.core.output_dirs import check_output_dir
from fmnist.report import figures, tables
from fmnist.report.collect import Collection, Group, collect
from fmnist.report.compare import model_stats, pairwise
from fmnist.report.protocols import protocol_section
from fmnist.report.search import search_section
from fmnist.report.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED


def statistics_section(groups: list[Group], out: Path, figure_dir: Path) -> list[str]:
    """Intervals per model, the study's figure beside ours, and pairwise tests with Holm's correction."""
    models = [model_stats(group) for group in groups]
    pairs = pairwise(models)
    lines = ["## How sure we are", "",
             "### Each model against its study", "", tables.uncertainty_table(models), "",
             "Val: mean and sample std over the model's folds (or seeds, on a fixed holdout) with a 95% t-interval"
             " (t distribution, k − 1 degrees of freedom), of the checkpoint picked on validation; \"last epoch\" "
             "is the final epoch's validation accuracy, without that selection. Test: the fold models' mean ± std,"
             " and the fold ensemble (mean of the fold models' probabilities) with a 95% percentile bootstrap "
             "interval over the 10,000 test images "
             f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}). The study's figure is its validation"
             " figure where it published one, else its test figure; ours − study compares like with like (our CV "
             "mean for a validation figure, our fold models' mean test accuracy for a test figure); where the "
             "study published a test figure as well, \"ours − study, test\" compares our fold models' mean test "
             "accuracy with it, which shows how much of a validation gap is the study's selection on a small "
             "validation fold rather than a weaker model. The study's own figure has a sampling error too: its "
             "exact binomial 95% interval on the images it was measured on (study A: one 6,000-image fold); "
             "\"intervals meet\" says whether ours (val: the t-interval; test: the t-interval over the fold "
             "models) overlaps it. Time is the mean training time of one run (fold) on the machine that ran it.", ""]
    notes = sorted({model.published.protocol for model in models if model.published and model.published.protocol})
    notes += [f"{model.group.label}: {model.published.note}" for model in models
              if model.published and model.published.note]
    if notes:
        lines += ["Where the studies' protocols differ from ours:", ""] + [f"- {note}" for note in notes] + [""]
    checks = [note for model in models for note in model.notes]
    if checks:
        lines += ["Predictions that disagree with metrics.json:", ""] + [f"- {note}" for note in checks] + [""]
    lines += ["### Every run's test accuracy", "", tables.runs_table(models), ""]
    spread = tables.spread_table(models)
    if spread:
        lines += ["### Seed variance and fold variance", "", spread, "",
                  "Seed std: the spread over seeds on the same fold, pooled over folds. Fold std: the spread over "
                  "folds of the seed-averaged accuracy.", ""]
    lines += ["### Which differences are real", "", tables.pairs_table(pairs), "",
              "Val diff: first minus second CV validation accuracy, paired by fold, with the corrected "
              "resampled t-test of Nadeau and Bengio (2003): the training sets of k folds overlap, so the "
              "variance of the mean difference is taken as (1/k + n_val/n_train) s² instead of s²/k. Pairs "
              "repeated over seeds on one fixed holdout use the plain paired t-test over seeds (no resampling "
              "of the data, so no correction). Test: McNemar's exact test (binomial on the discordant images) "
              "on the fold ensembles' test predictions. Holm's step-down correction runs over all tested pairs, "
              "for each test separately. Models trained on different splits are not comparable and are not "
              "tested.", ""]
    if any(model.repeated for model in models):
        lines += ["Repeated k-fold (a model whose folds come from r split seeds, shown as split seed/fold): its pairs "
                  "are matched by (split seed, fold), and the t-test is the corrected repeated k-fold t-test of "
                  "Bouckaert and Frank (2004), t = mean(d) / sqrt((1/(k·r) + n_val/n_train) · var(d)) with k·r − 1 "
                  "degrees of freedom over all k·r paired differences; its own validation interval takes the same "
                  "correction; its ensemble averages all k·r fold models.", ""]
    lines += tables.image("forest plot", figures.forest(models, figure_dir / "forest.png"), out)
    differences = figures.difference_matrix(models, pairs, figure_dir / "differences.png")
    return lines + tables.image("difference matrix", differences, out)


def _header(collection: Collection, rows: list[dict], directories: Sequence[Path], out: Path, title: str,
            intro: str) -> list[str]:
    """Title, what was collected, and the leaderboard with how to read it."""
    return [f"# {title}", "", *([intro, ""] if intro else []),
            "Runs below: " + ", ".join(tables.run_link(directory, out) for directory in directories), "",
            f"{len(collection.groups)} model configuration(s) from "
            f"{sum(len(group.runs) for group in collection.groups)} completed run(s); "
            f"{len(collection.failures) - len(collection.broken)} failed run(s)"
            + (f"; {len(collection.pruned)} run(s) pruned by a search" if collection.pruned else "")
            + (f"; {len(collection.broken)} run(s) with broken files, left out of every figure."
               if collection.broken else "."), "",
            "## Leaderboard (ranked by cross-validated accuracy)", "",
            tables.main_table(rows), "",
            "Accuracies and macro precision / recall / F1 are means over a model's folds ± sample std (ddof=1); "
            "validation is each fold's held-out part of the train set, test is the official 10k test set "
            "(never used to choose anything). The ensemble averages the fold models' softmax probabilities. "
            "Train accuracy is the running accuracy of the best epoch (as Keras reports it); train − val is in "
            "percentage points. ms/step and images/s are the median training epoch's, without validation.", ""]


def _figures_section(rows: list[dict], out: Path, figure_dir: Path) -> list[str]:
    lines = ["## Figures", "", "### Accuracy against size and training cost", ""]
    lines += tables.image("accuracy vs params", figures.accuracy_against(
        rows, "params_mean", "parameters", figure_dir / "accuracy_vs_params.png"), out)
    lines += tables.image("accuracy vs training time", figures.accuracy_against(
        rows, "train_seconds_mean", "training time per fold (s)", figure_dir / "accuracy_vs_train_time.png",
        plain_ticks=True), out)
    lines += ["### Per-class F1", ""]
    return lines + tables.image("per-class F1", figures.per_class_f1(rows, figure_dir / "per_class_f1.png"), out)


def _per_model_section(groups: list[Group], rows: list[dict], out: Path, figure_dir: Path) -> list[str]:
    """Each model's overrides, runs, per-class test table, learning curves and confusion matrix."""
    lines = ["## Per model", ""]
    for group, row in zip(groups, rows, strict=True):
        name = figures.slug(group.label)
        lines += [f"### {group.label}", ""]
        if group.overrides:
            lines += ["Overrides: `" + clip(" ".join(group.overrides)).replace("`", "'") + "`", ""]
        lines += ["Runs: " + ", ".join(tables.run_link(run.path, out) for run in group.runs), ""]
        lines += ["Test set, per class (mean over fold models; recall = per-class accuracy):", "",
                  tables.per_class_table(row), ""]
        lines += tables.image(f"{group.label} learning curves",
                              figures.learning_curves(group, figure_dir / f"curves_{name}.png"), out)
        lines += tables.image(f"{group.label} test confusion",
                              figures.confusion(group, figure_dir / f"confusion_{name}.png"), out)
    return lines


def _unfinished_section(collection: Collection, out: Path) -> list[str]:
    lines = []
    if collection.pruned:
        lines += ["## Pruned runs", "", "Stopped early by the search's pruner (neither completed nor failed; left "
                  "out of every figure above):", "", tables.failures_table(collection.pruned, out, why="why"), ""]
    lines += ["## Failed runs", ""]
    return lines + [tables.failures_table(collection.failures, out, collection.ignored)
                    if collection.failures or collection.ignored else "None.", ""]


def build_report(directories: Sequence[Path], out: Path, collection: Collection | None = None,
                 title: str = "Fashion-MNIST model comparison", intro: str = "", protocols: bool = False,
                 sections: Sequence[str] = ()) -> Collection:
    """Write the report into `out` (refused, nothing written, where it is or holds a link); `protocols` adds each
    model's training protocol, which a comparison across studies needs; `sections` follow the statistics."""
    check_output_dir(out)
    collection = collection or collect(directories)
    rows = tables.leaderboard(collection)
    by_label = {group.label: group for group in collection.groups}
    groups = [by_label[row["model"]] for row in rows]
    write_csv_atomic(out / "leaderboard.csv", rows or [{"model": None}])
    figure_dir = out / "figures"
    lines = _header(collection, rows, directories, out, title, intro)
    if protocols:
        lines += protocol_section(groups)
    lines += statistics_section(groups, out, figure_dir)
    lines += sections
    lines += _figures_section(rows, out, figure_dir)
    lines += _per_model_section(groups, rows, out, figure_dir)
    lines += search_section(directories, out, figure_dir)
    lines += _unfinished_section(collection, out)
    write_text_atomic(out / "report.md", "\n".join(lines))
    return collection


def nothing_valid(collection: Collection, directories: Sequence[Path]) -> str | None:
    """The one-line error when there is nothing to report: no run at all, or only runs with broken files."""
    if collection.groups or collection.pruned or len(collection.failures) > len(collection.broken):
        return None
    where = clip(", ".join(map(str, directories)))
    if not collection.broken:
        return (f"no metrics.json below {where}. Fix: pass the dir of a finished run or sweep (python -m "
                "fmnist.train / fmnist.cv write one per run).")
    first = collection.broken[0]
    reason = clip(first.error, 200).replace("\n", " ")
    return (f"no valid run below {where}: {len(collection.broken)} run(s) with broken files, e.g. {clip(first.path)}: "
            f"{reason}. Fix: pass the dirs of runs fmnist wrote, or repair or remove those files.")
