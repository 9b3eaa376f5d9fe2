"""The pipeline package's exceptions: one root, builtin mixins so callers can catch either."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised by deedchain's pipeline."""


class PipelineValueError(PipelineError, ValueError):
    """Input to the pipeline broke a rule; the message names the rule and the value."""
