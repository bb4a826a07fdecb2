"""ACIQ: the paper's constants, one-sided = two-sided at one more bit, the MSE model against simulation, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import erf

from analysis.cli import main
from quant.aciq import aciq_mse, aciq_table, alpha_multiplier, alpha_multipliers, gauss_mse, laplace_mse
from quant.errors import QuantError

# published constants: paper (Laplace 2-4 bits, Gauss 2-4 bits) and the reference code's full tables
LAPLACE = {0: 1.05, 1: 1.86, 2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89}
GAUSS = {1: 1.24, 2: 1.71, 3: 2.15, 4: 2.55, 5: 2.93, 6: 3.28, 7: 3.61, 8: 3.92}


@pytest.mark.parametrize("bits", sorted(LAPLACE))
def test_laplace_constants(bits):
    assert abs(alpha_multiplier(2**bits, "laplace") - LAPLACE[bits]) <= 0.01


@pytest.mark.parametrize("bits", sorted(GAUSS))
def test_gauss_constants(bits):
    assert abs(alpha_multiplier(2**bits, "gauss") - GAUSS[bits]) <= 0.01


def test_one_sided_tables_of_reference_code():
    # alpha_laplace_positive[8] = 11.16, alpha_gaus_positive[8] = 4.2 in the reference code
    assert abs(alpha_multiplier(256, "laplace", one_sided=True) - 11.16) <= 0.01
    assert abs(alpha_multiplier(256, "gauss", one_sided=True) - 4.2) <= 0.02


@pytest.mark.parametrize("dist", ["laplace", "gauss"])
@pytest.mark.parametrize("bits", [0, 1, 2, 3, 4, 5.3, 6, 7, 8, 12])
def test_one_sided_equals_two_sided_one_more_bit(dist, bits):
    one = alpha_multiplier(2.0**bits, dist, one_sided=True)
    two = alpha_multiplier(2.0 ** (bits + 1), dist)
    assert math.isclose(one, two, rel_tol=1e-9)


@pytest.mark.parametrize("dist", ["laplace", "gauss"])
@pytest.mark.parametrize("levels", [1, 3, 16, 39.4, 256])
@pytest.mark.parametrize("one_sided", [False, True])
def test_solution_is_the_minimum(dist, levels, one_sided):
    a = alpha_multiplier(levels, dist, one_sided)
    e0 = aciq_mse(a, 1.0, levels, dist, one_sided=one_sided)
    for d in (1e-3, 1e-2, 0.1):
        assert aciq_mse(a + d, 1.0, levels, dist, one_sided=one_sided) > e0
        assert aciq_mse(a - d, 1.0, levels, dist, one_sided=one_sided) > e0


def test_mse_formulas_match_paper_expressions():
    for a, s, M in [(3.0, 1.0, 2), (10.0, 2.0, 4), (1.5, 0.7, 3)]:
        lap = 2 * s**2 * math.exp(-a / s) + a**2 / (3 * 4**M)  # eq. 5
        assert math.isclose(float(laplace_mse(a, s, 2**M)), lap, rel_tol=1e-12)
        gau = ((s**2 + a**2) * (1 - erf(a / (s * math.sqrt(2))))
               - math.sqrt(2 / math.pi) * a * s * math.exp(-a**2 / (2 * s**2)) + a**2 / (3 * 4**M))
        assert math.isclose(float(gauss_mse(a, s, 2**M)), gau, rel_tol=1e-12)


def test_clipping_tails_against_numerical_integration():
    a, b, sig = 2.5, 1.3, 0.9
    lap_tail = quad(lambda x: (x - a) ** 2 * math.exp(-abs(x) / b) / (2 * b), a, np.inf)[0]
    gau_tail = quad(lambda x: (x - a) ** 2 * math.exp(-x * x / (2 * sig**2)) / (sig * math.sqrt(2 * math.pi)), a, np.inf)[0]
    huge = 1e12  # rounding noise vanishes
    assert math.isclose(float(laplace_mse(a, b, huge, one_sided=True)), lap_tail, rel_tol=1e-7)
    assert math.isclose(float(gauss_mse(a, sig, huge)), 2 * gau_tail, rel_tol=1e-7)


def test_mse_curve_matches_simulation():
    """Laplace(b=2), 4 bits: simulated MSE vs α (clip to ±α, round with step 2α/2^M, like mse_analysis.py)."""
    rng = np.random.default_rng(0)
    x = rng.laplace(0.0, 2.0, 400_000)
    alphas = np.arange(5.0, 20.01, 0.5)
    sim = np.array([np.mean((x - np.round(np.clip(x, -a, a) / (a / 8)) * (a / 8)) ** 2) for a in alphas])
    model = laplace_mse(alphas, 2.0, 16)
    assert np.max(np.abs(model - sim) / sim) < 0.06
    assert abs(alphas[np.argmin(sim)] - 2.0 * alpha_multiplier(16)) <= 1.0
    assert abs(2.0 * alpha_multiplier(16) - 10.06) < 0.01


def test_vector_and_bad_input():
    v = alpha_multipliers(np.array([[16, 4], [16, 256]]), "laplace")
    assert v.shape == (2, 2) and v[0, 0] == v[1, 0] == alpha_multiplier(16)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(QuantError):
            alpha_multiplier(bad)
    with pytest.raises(QuantError):
        alpha_multiplier(16, "cauchy")


def test_table_and_cli_json(capsys):
    rows = aciq_table(bits=[4], levels=[39])
    assert rows[0]["bits"] == 4 and rows[0]["levels"] == 16 and rows[0]["laplace"] == round(alpha_multiplier(16), 4)
    assert rows[1]["levels"] == 39
    assert main(["aciq", "--bits", "2", "3", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    lap = [r["laplace"] for r in doc["rows"]]
    assert [abs(a - b) <= 0.01 for a, b in zip(lap, (2.83, 3.89, 5.03))] == [True] * 3
    assert doc["rows"][0]["laplace_one_sided"] == doc["rows"][1]["laplace"]
    assert set(doc["rows"][0]) == {"bits", "levels", "laplace", "gauss", "laplace_one_sided", "gauss_one_sided"}
    assert main(["aciq"]) == 0
    out = capsys.readouterr().out
    assert "5.0286" in out and "2.5591" in out


def test_cli_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["aciq", "--bits", "-2"])
    assert exc.value.code == 2
