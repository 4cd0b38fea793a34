"""One exception type for every mistake a user can fix, so entry points can print it without a traceback."""

from __future__ import annotations


class FmnistError(Exception):
    """A problem the user can fix: the message names what is wrong and how to fix it."""


class ConfigError(FmnistError):
    """A config value that is out of range or of the wrong kind."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem}. Fix: {fix}")
        self.key = key
        self.problem = problem
        self.fix = fix

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        """Pickle from all three parts: a sweep job in another process (joblib) sends its error back pickled."""
        return type(self), (self.key, self.problem, self.fix)


class DataError(FmnistError):
    """The data set is missing, truncated or not Fashion-MNIST."""
