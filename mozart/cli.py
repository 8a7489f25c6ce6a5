"""The `mozart` console script.

Each subcommand is a module of mozart/commands/ (argparse and printing only; no stage imports them) that exposes
`add_arguments(parser)` and `main(args) -> int | None`. Only the chosen subcommand's module is imported, so
`mozart evaluate` does not pay for importing torch and `mozart --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from mozart.errors import MozartError

# name -> (module, add_arguments function, main function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "generate": ("mozart.commands.generate", "add_arguments", "main",
                 "write a new piece in a composer's style, or continue a MIDI prompt"),
    "composers": ("mozart.commands.composers", "add_arguments", "main",
                  "list the composers a trained model knows, with their piece counts"),
    "evaluate": ("mozart.commands.evaluate", "add_arguments", "main",
                 "H1/H4 pitch-class entropy, GS grooving similarity and more for MIDI files"),
    "serve": ("mozart.commands.serve", "add_arguments", "main",
              "a local web page to generate, listen to and download pieces (Ctrl-C stops it)"),
}

EPILOG = """The pipeline itself (organize -> tokenize -> prepare -> train -> sample -> evaluate -> render) runs with
`dvc repro`; see README.md. Run `mozart COMMAND --help` for a command's options."""


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    import mozart

    parser = argparse.ArgumentParser(prog="mozart", description=mozart.__doc__.strip(), epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mozart {mozart.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add_fn, _main_fn, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == only:
            getattr(importlib.import_module(module), add_fn)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module, _add_fn, main_fn, _help = COMMANDS[args.command]
    try:
        return int(getattr(importlib.import_module(module), main_fn)(args) or 0)
    except MozartError as exc:
        print(f"mozart {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
