"""The ``descend`` command. Parses, calls the library, maps errors to exit codes; no logic of its own."""

from descend.cli.main import main

__all__ = ["main"]
