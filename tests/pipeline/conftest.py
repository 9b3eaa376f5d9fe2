"""Pipeline tests reuse the contract driver (`world`); those on chain need anvil's cheat codes."""

from tests.contracts.conftest import world

__all__ = ["world"]
