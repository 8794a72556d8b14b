"""V1's capacity on uniform data and the D_eff matched to a target (capacity/match.py)."""

import math

import numpy as np
import pytest

from phenomjax.capacity.match import match_d_eff, v1_capacity, v1_memorized, v1_params
from phenomjax.data import make_bits
from phenomjax.errors import PhenomjaxError
from phenomjax.phenom.variants import deflation


def test_loss_matches_numpy_features_and_bce():
    """The reported loss is the BCE of the returned readout over features recomputed in NumPy
    from the fixed map (tanh of the causal sums of the spins); the map is causal."""
    D, K, L = 8, 5, 6
    r = v1_memorized(D, K, L, steps=200)
    bits = make_bits(0, K, L)
    G = np.asarray(v1_params(D, L, 0)["G"], np.float64)
    s = 2.0 * bits[:, :-1] - 1.0
    ref = np.tanh(np.einsum("mi,nid->mnd", s, G))
    assert np.all(np.triu(G[:, :, 0], 1) == 0)
    phi = np.asarray(deflation.features(v1_params(D, L, 0)["G"], bits), np.float64)
    np.testing.assert_allclose(phi, ref, rtol=1e-5, atol=1e-5)
    z = ref @ r["b"].astype(np.float64)
    t = bits[:, 1:]
    bce = np.mean(np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - t * z)
    assert r["loss"] == pytest.approx(bce, rel=1e-5)


def test_few_associations_are_memorized_to_the_ceiling():
    """K (L - 1) well under D_eff: a linear readout fits every label, so memorized bits reach
    the Bayes ceiling (address bits excluded)."""
    r = v1_memorized(64, 2, 16, steps=2000)
    assert r["memorized_bits"] == pytest.approx(r["bits_ceiling"], rel=0.02)


def test_capacity_grows_with_d_eff_and_saturates_in_k():
    small, large = v1_capacity(16, 16), v1_capacity(64, 16)
    assert large["capacity"] > 2.5 * small["capacity"]
    # past the peak, more sequences memorize fewer bits: the capacity binds
    assert large["by_K"][max(large["by_K"])] < large["capacity"]


def test_match_hits_the_target_within_tolerance():
    m = match_d_eff(300.0, 16)
    assert m["measured_bits"] == pytest.approx(300.0, rel=0.05)
    assert m["D_eff"] == min(m["tried"], key=lambda d: abs(m["tried"][d] - 300.0))


def test_a_target_past_verify_max_is_placed_from_the_largest_measured_d_eff():
    """Above verify_max, D_eff = target / (bits per feature measured at verify_max): V1's bits
    per feature fall with D_eff, so the probe's rate would place it lower."""
    m = match_d_eff(2000.0, 16, verify_max=32)
    top = m["tried"][32] / 32
    assert m["how"] == "linear from D_eff 32" and math.isnan(m["measured_bits"])
    assert m["D_eff"] == max(32, round(2000.0 / top))
    assert match_d_eff(300.0, 16)["how"] == "measured"


def test_bad_target_and_oversized_features_are_one_line_errors():
    with pytest.raises(PhenomjaxError, match="target_bits"):
        match_d_eff(float("nan"), 16)
    with pytest.raises(PhenomjaxError, match="MiB"):
        v1_memorized(1 << 16, 4096, 64)
