"""Contracts and helpers every sub-package shares: run-dir files, metric names, errors, atomic writes,
the config dir and the command-line guard. No Lightning here, so the report and checks stay light."""
