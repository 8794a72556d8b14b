"""Historical training logs (DESIGN 4): a restricted unpickler and the legacy -> tidy tables.

The layout: {"args": dict or argparse.Namespace, "logs": [{"num_apppearances": (K,) counts
before the epoch (sic, three p's), "test_metrics": {} or {sequence_rank, length,
logsoftmaxloss, accuracy}, "train_loss", "epoch", "lr"}]}. test_metrics holds (K, L-1) arrays
(per position; `length` j = the predicted position 1..L-1) when K < 10000, and per-sequence
(K,) means with `length` = 50 otherwise. `logsoftmaxloss` is torch's nll_loss of log_softmax,
i.e. a loss in nats (>= 0); a log that stores log-probabilities instead (all values <= 0) is
negated, and one with both signs is refused.

Steps. The historical trainer evaluates at the start of epoch e, after e epochs, so
step = e x steps_per_epoch, where steps_per_epoch is, in this order:
  1. `[legacy] steps_per_epoch` of the analysis config when > 0;
  2. derived from the log: the presentations added per epoch (sum of num_apppearances grows by
     exactly the samples drawn) over args.batch_size, rounded up (the last batch may be short).
     This is exact for the historical trainer, whose args.num_iter_per_epoch is NOT its steps
     per epoch (an epoch there is 1000 x num_iter_per_epoch samples);
  3. args.num_iter_per_epoch (or num_iters_per_epoch) when the log has one epoch only;
  4. 1 (step = epoch), with a warning.

Safety. Unpickling runs code named in the file. `load_pickle` admits only numpy arrays,
dtypes and scalars, plain containers (dict, list, tuple, set, defaultdict/OrderedDict of plain
factories) and argparse.Namespace, which the historical trainer pickles as its `args`: a plain
attribute bag whose construction runs no user code (object.__new__ then __dict__.update).
Anything else raises UnsafePickleError naming the file and the global, before it is called.

Checks. Every value read from the record is checked before numpy or pandas sees it (numeric,
integer where it must be, ranks in [0, K), counts >= 0, no infinities, accuracy in [0, 1],
one K, one layout and one L across evaluations, args consistent with the arrays): a bad one is
a one-line DataError naming the file and the field ("x.pkl: logs[3].test_metrics.accuracy:
..."), never an IndexError from inside numpy. tests/test_hostile.py generates such records.

Modules: `unpickle` (the restricted unpickler, load_pickle), `fields` (the field checks and
steps per epoch), `convert` (legacy_tables: the checked record as tables).
"""

from .convert import legacy_tables
from .fields import legacy_args, steps_per_epoch
from .unpickle import load_pickle

__all__ = ["legacy_args", "legacy_tables", "load_pickle", "steps_per_epoch"]
