"""The ``cpq-guard`` command line; `main` is the console script's entry point."""

from cpq_guard.cli._app import main

__all__ = ["main"]
