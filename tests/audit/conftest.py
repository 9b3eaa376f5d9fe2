"""Audit tests run real closings on the session's anvil (the `world` contract driver)."""

from tests.contracts.conftest import world

__all__ = ["world"]
