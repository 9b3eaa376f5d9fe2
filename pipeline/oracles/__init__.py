"""Oracles: the only place where the chain and the institutions' adapters meet."""
