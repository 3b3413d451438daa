"""The llmops CLI: validate, render, deploy and inspect llmops.dev resources."""

__version__ = "0.1.0"
