"""Errors a person can act on: one line naming the file, column or row, and what was expected."""

from __future__ import annotations


class QrewriteError(Exception):
    """Base class for errors the CLI reports as a single line with a non-zero exit code."""

    exit_code = 1


class DataError(QrewriteError):
    """Input data is missing, malformed or violates its schema."""

    exit_code = 2


class ConfigError(QrewriteError):
    """A configuration file or override is invalid."""

    exit_code = 3


class ContractViolation(QrewriteError):
    """A dataset failed its data contract."""

    exit_code = 4


class EnvironmentProblem(QrewriteError):
    """Neither the data nor the config: the machine or a service (a full disk, a permission, a
    tracking server that does not answer). The message names the path or the URL."""

    exit_code = 5
