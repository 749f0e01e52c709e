"""The harness's version, in a module of its own so that anything may import it (tier 0)."""

__version__ = "0.1.0"
