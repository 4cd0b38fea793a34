"""Installed as `hydra_plugins.fmnist_optuna_sweeper` (pyproject's package-dir), the namespace Hydra scans for plugins.

Only the plugin class lives here, because Hydra instantiates plugins from `hydra_plugins.*` alone; the search itself
is fmnist.search.sweeper.
"""
