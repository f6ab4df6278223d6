"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class EliverecError(Exception):
    """Base of the platform's expected failures; the message says what and where, and the fix."""

    exit_code: int = 1


class DataError(EliverecError):
    """Input data is missing or unusable (names the file and, where known, the line)."""


class ValidationFailed(EliverecError):
    """A data-quality or evaluation gate failed (a verdict, not a crash)."""

    exit_code = 3
