"""`phenomjax report FIT [--run RUN]`: one self-contained HTML page of a fit (FIT/report.html).

FIT is the folder `phenomjax fit` wrote; RUN (default: the run or seed group report.json
names) is what it was fitted to, drawn under the fit in the overlay.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("fit", metavar="FIT", help="a fit folder (with report.json)")
    p.add_argument("--run", default=None, help="the fitted run or group (default: report.json's)")


def run(args: argparse.Namespace) -> int:
    from ..fitting.html import write_html

    print(write_html(args.fit, args.run))
    return 0
