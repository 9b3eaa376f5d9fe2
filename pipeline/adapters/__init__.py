"""Adapters to the institutions outside the chain: banks and the land registry.

An adapter knows nothing of the chain; the oracles are where the two meet.
"""
