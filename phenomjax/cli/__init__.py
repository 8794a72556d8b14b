"""The `phenomjax` command: a thin dispatcher over the library modules.

Each command lives in a module exposing `add_arguments(parser)` and `run(args) -> int`; only
the chosen command's module is imported, so `phenomjax --help` starts instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import PhenomjaxError
from ..version import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("phenomjax.cli.train", "train a GPT-style transformer on Zipf-sampled bit sequences"),
    "train-phenom": (
        "phenomjax.cli.train_phenom",
        "train one phenomenological model from a config",
    ),
    "fit-phenom": ("phenomjax.cli.fit_phenom", "alias of train-phenom (its older name)"),
    "sweep": ("phenomjax.cli.sweep", "vmapped sweep of the phenomenological model's knobs"),
    "experiments": ("phenomjax.cli.experiments", "train the four experiments where analyze looks"),
    "analyze": ("phenomjax.cli.analyze", "tables, caches and figures (the historical CLI)"),
    "fit": ("phenomjax.cli.fit", "fit the phenomenological model to a run's curves"),
    "compare": ("phenomjax.cli.compare", "overlay fitted curves on the empirical ones"),
    "report": ("phenomjax.cli.report", "one self-contained HTML page of a fit"),
    "plan": ("phenomjax.cli.plan", "parameters, FLOPs, memory and time of a config before it runs"),
    "capacity": ("phenomjax.cli.capacity", "memorized bits per parameter over model sizes and K"),
    "regime": ("phenomjax.cli.regime", "the regime map: transformer and fitted lags by size and K"),
    "demo": ("phenomjax.cli.demo", "train, analyse, fit and compare on the embedded default"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phenomjax",
        description="Memorization curves of transformers and of a phenomenological model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<13} {v[1]}" for k, v in COMMANDS.items()),
    )
    p.add_argument("--version", action="version", version=f"phenomjax {__version__}")
    p.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings reach a user as one line on stderr, without the source line."""
    print(f"phenomjax: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv or ["--help"])
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        top.error(f"unknown command {cmd!r}; expected one of {', '.join(COMMANDS)}")
    warnings.showwarning = _one_line_warning
    module = importlib.import_module(COMMANDS[cmd][0])
    parser = argparse.ArgumentParser(prog=f"phenomjax {cmd}", description=COMMANDS[cmd][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except PhenomjaxError as e:
        print(f"phenomjax {cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = cmd in ("train", "train-phenom", "fit-phenom")
        hint = "; --resume continues the run" if resumable else ""
        print(f"phenomjax {cmd}: interrupted; what was written is kept{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
