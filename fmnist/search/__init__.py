"""Hyperparameter search on Optuna (`hydra/sweeper=optuna`, the `sweep` extra), imported only inside functions."""
