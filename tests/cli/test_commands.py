"""What every command shares: each flag has a help text; the sweep's progress titles name its
mode."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["fit", "sweep", "analyze", "compare", "experiments"])
def test_every_flag_has_help(command):
    import argparse
    import importlib

    from phenomjax.cli import COMMANDS

    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    missing = [a.option_strings or a.dest for a in parser._actions if not a.help]
    assert missing == [], missing


def test_sweep_progress_title_names_the_mode(monkeypatch):
    """The expected and stochastic sweeps of a fit show different progress titles."""
    import phenomjax.phenom.sweep as sw
    from phenomjax.data import DataConfig
    from phenomjax.phenom.train import ModelSection, PhenomConfig, PhenomOptimConfig, TrainSection

    titles = []
    real = sw.drive

    def spy(*args, **kwargs):
        titles.append(args[1].desc)  # drive(state, schedule, ...)
        return real(*args, **{**kwargs, "progress": False})

    monkeypatch.setattr(sw, "drive", spy)
    for mode in ("expected", "stochastic"):
        cfg = PhenomConfig(
            data=DataConfig(K=12, L=4, alpha=1.0, seed=0),
            model=ModelSection(w=1, d=2, init_scale=0.1),
            optimizer=PhenomOptimConfig(name="adam", lr=1e-2),
            train=TrainSection(mode=mode, steps=4, batch=4, num_evals=2, max_chunk=4),
        )
        sw.sweep(cfg, {"lr": [1e-2]}, out=None, progress=True)
    assert len(titles) == 2 and titles[0] != titles[1]
    assert "expected" in titles[0] and "stochastic" in titles[1]
