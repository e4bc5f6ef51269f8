"""``qrewrite``: one entry point, one subcommand per pipeline step.

One module per step group (``data``, ``labeling``, ``training``, ``evaluation``, ``registry``,
``pipeline``), each command's parser beside what it runs; ``main`` assembles them and turns
errors into one line and an exit code.
"""

from qrewrite.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
