"""memgen: a reproducible study of generalization through memorization."""

__version__ = "0.1.0"
