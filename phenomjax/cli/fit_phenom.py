"""`phenomjax fit-phenom CONFIG`: an alias of `phenomjax train-phenom` (the older name).

"fit" now names fitting the model to a run (`phenomjax fit RUN`); training one model from a
config is `train-phenom`. The alias takes the same arguments and says what it is in its output
(stdout, after the run: an error stays the one line on stderr).
"""

from __future__ import annotations

import argparse

from . import train_phenom

add_arguments = train_phenom.add_arguments


def run(args: argparse.Namespace) -> int:
    code = train_phenom.run(args)
    print("(phenomjax fit-phenom is an alias of `phenomjax train-phenom`)")
    return code
