"""``qrewrite``'s parser and ``main``: the step groups' commands, and errors as exit codes.

Each subcommand builds its step's config (defaults < ``--config`` preset section < ``--set``
overrides < explicit flags), calls the library, and reports in one line per fact. Errors in the
input become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from qrewrite import __version__
from qrewrite.cli import data, evaluation, labeling, pipeline, registry, training
from qrewrite.errors import DataError, EnvironmentProblem, QrewriteError

log = logging.getLogger("qrewrite")

# in the order ``qrewrite --help`` lists their commands: the pipeline's order
GROUPS = (data, labeling, training, evaluation, registry, pipeline)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qrewrite",
        description="Mine search logs, train and evaluate an LLM query rewriter for e-commerce "
        "search. Each subcommand is one pipeline step; see docs/architecture.md.",
    )
    parser.add_argument("--version", action="version", version=f"qrewrite {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity on stderr (default WARNING)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except QrewriteError as e:
        print(f"qrewrite {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"qrewrite {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path that is not there is the input's fault; the rest the machine's
        if args.debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            print(f"qrewrite {args.command}: error: {e.strerror}{where}", file=sys.stderr)
            return DataError.exit_code
        print(
            f"qrewrite {args.command}: environment error: {e.strerror or e}{where}",
            file=sys.stderr,
        )
        return EnvironmentProblem.exit_code
    except Exception as e:  # a bug, not bad input: say so in one line, traceback on request
        if args.debug:
            raise
        print(
            f"qrewrite {args.command}: internal error: {type(e).__name__}: {e} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
