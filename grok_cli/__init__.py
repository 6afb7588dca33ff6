"""grok: a command-line experiment runner for grokking research."""

__version__ = "0.1.0"
