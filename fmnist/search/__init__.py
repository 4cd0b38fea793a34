"""Hyperparameter search on Optuna: fmnist's Hydra sweeper (`hydra/sweeper=optuna`), the trial a job reports to, and
the study's report section. Optuna is imported only inside these modules (the `sweep` extra), never by training."""
