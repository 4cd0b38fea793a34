"""Contracts and helpers every sub-package shares: run-dir files, metric names, errors, atomic writes, the CLI guard."""
