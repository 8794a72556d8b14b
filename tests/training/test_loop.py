"""phenomjax.training.loop: the Schedule, and the host loop's dispatches, evaluations and
non-finite losses, with a toy advance (no device work)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phenomjax.data import log_spaced_steps
from phenomjax.errors import NonFiniteLossError
from phenomjax.training import Schedule, chunk_length, drive


def test_log_spaced_schedule_and_its_chunk():
    s = Schedule.log_spaced(60, 5, max_chunk=2**31 - 1, batch=8, desc="x")
    assert s.total_steps == s.final_step == 60 and s.eval_steps[0] == 0 and s.eval_steps[-1] == 60
    assert s.eval_steps == tuple(int(t) for t in log_spaced_steps(60, 5))
    assert s.chunk == 60  # the buffer is never longer than the run
    early = Schedule.log_spaced(60, 5, max_chunk=16, batch=8, desc="x", stop_at=25)
    assert (early.total_steps, early.final_step, early.chunk) == (25, 60, 16)
    assert chunk_length(16, 0) == 1


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(1, 400),
    n=st.integers(1, 12),
    max_chunk=st.integers(1, 90),
    start=st.integers(0, 400),
    done=st.integers(0, 3),
)
def test_drive_visits_every_evaluation_once_within_its_chunks(total, n, max_chunk, start, done):
    """Chunks never exceed max_chunk nor cross an evaluation, sum to the distance travelled,
    and every evaluation step in [start, total] not already evaluated is evaluated once."""
    start = min(start, total)
    grid = tuple(int(t) for t in log_spaced_steps(total, n))
    evaluated = [t for t in grid if t >= start][:done]
    schedule = Schedule(total, total, grid, max_chunk)
    chunks, evals, checkpoints = [], [], []

    def advance(state, k):
        chunks.append((state, k))
        return state + k, np.full(max_chunk, 0.5, np.float32)

    end = drive(start, schedule, step=start, advance=advance,
                evaluate=lambda s, t: evals.append((s, t)),
                checkpoint=lambda s, t: checkpoints.append(t), progress=False,
                evaluated=evaluated)  # fmt: skip
    assert end == total and sum(k for _, k in chunks) == total - start
    assert all(1 <= k <= max_chunk for _, k in chunks)
    want = sorted({t for t in grid if start <= t <= total} - set(evaluated))
    assert [t for _, t in evals] == want == checkpoints
    assert all(s == t for s, t in evals)  # evaluated at its own step
    for s, k in chunks:  # no chunk crosses an evaluation step
        assert not any(s < t < s + k for t in want)


def test_a_non_finite_train_loss_names_its_step_and_the_chunks_hook_sees_every_loss():
    seen = []

    def advance(state, k):
        losses = np.arange(state, state + k, dtype=np.float32)
        losses[losses == 13] = np.nan
        return state + k, losses

    schedule = Schedule(20, 20, (0, 20), max_chunk=5)
    with pytest.raises(NonFiniteLossError, match="train loss became nan at step 14"):
        drive(0, schedule, step=0, advance=advance, evaluate=lambda s, t: None,
              on_chunk=lambda first, losses: seen.append((first, list(losses))),
              progress=False)  # fmt: skip
    assert seen == [(0, [0, 1, 2, 3, 4]), (5, [5, 6, 7, 8, 9])]  # the bad chunk is not logged
