#!/usr/bin/env python
"""The historical entry point, kept: every flag means what it meant.

    python scripts/analysis.py --experiment all --rank-selection low --comparative \
        [--force-reprocess] [--no-show-plots] [--no-save-plots] [--config PATH] [--export PATH]

A thin wrapper over `phenomjax analyze` (phenomjax.cli.analyze).
"""

from __future__ import annotations

import sys

from phenomjax.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["analyze", *sys.argv[1:]]))
