"""The `aahr` command: one subcommand per pipeline stage (rules, DVC stages and tests call these).

Each subcommand lives in ``aahr/commands/<name>.py`` with ``HELP`` (one line), ``configure(parser)``
and ``run(args)``; heavy imports stay inside ``run`` so ``aahr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from aahr import __version__
from aahr.errors import AahrError

# Subcommands: the pipeline's stages in order, then using a trained model, then locating and
# validating the real datasets.
COMMANDS = ["generate", "regions", "global-branch", "evaluate", "train", "tables", "health", "figures", "summary",
            "search", "compare", "download", "check-data"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aahr",
        description="AAHR image-text matching as a reproducible workflow. "
                    "Every number comes from params.yaml; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"aahr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"aahr.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def pin_numerics(args: argparse.Namespace) -> None:
    """Threads and CPU kernels from the params file's ``numerics`` section (aahr.numerics), before
    the command computes anything. A missing params file is left to the command to report."""
    from pathlib import Path

    from aahr.config import load_params
    from aahr.numerics import pin

    if getattr(args, "params", None) and Path(args.params).is_file():
        pin(load_params(args.params)["numerics"])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pin_numerics(args)
        return args._run(args) or 0
    except AahrError as exc:
        print(f"aahr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aahr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
