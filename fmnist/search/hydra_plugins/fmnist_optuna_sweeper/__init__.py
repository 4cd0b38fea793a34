"""Installed as `hydra_plugins.fmnist_optuna_sweeper` (pyproject's package-dir), the namespace Hydra scans for plugins;
the search itself is fmnist.search.sweeper."""
