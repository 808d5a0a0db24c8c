"""Buy-till-you-die statistics: BG/NBD, Gamma-Gamma and shifted-beta-geometric, by maximum likelihood.

Pure numpy/scipy, no warehouse and no pandas in the model code (the summary helper takes a
DataFrame). Every likelihood is written in logs with ``gammaln``/``betaln``/``logaddexp`` and
fitted by minimising the negative log-likelihood over the logs of the parameters (L-BFGS-B
from several starts; the best converged optimum wins).

Models and references
---------------------
* BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a
  customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; after each *repeat*
  purchase they drop out with probability ``p ~ Beta(a, b)``. Data per customer: ``x`` repeat
  purchases, ``t_x`` the time of the last one and ``T`` the age, both measured from the first
  purchase in one time unit.
* Gamma-Gamma (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"): a customer's
  transaction values are ``Gamma(p, nu)`` with ``nu ~ Gamma(q, gamma)``; fitted on the mean value
  ``m`` of each repeat customer's ``x`` repeat transactions, independent of the purchase process.
* sBG (Fader & Hardie 2007, "How to project customer retention"): each subscriber renews at the end
  of every period with probability ``1 - theta``, ``theta ~ Beta(alpha, beta)``.

Conventions for the summary (the BTYD conventions, as in the ``lifetimes`` package): purchases on
the same calendar day are one transaction (amounts summed); ``frequency`` is the number of repeat
transaction days; ``recency`` and ``T`` are fractional numbers of time units from the first
purchase to the last purchase and to the calibration end; ``monetary_value`` is the mean value of
the repeat transactions (0 for customers without repeats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

ArrayLike = np.ndarray | Sequence[float] | float

#: length of a time unit in days
TIME_UNITS: dict[str, float] = {"days": 1.0, "weeks": 7.0}
#: bounds on the log of every parameter: exp(+-15) ~ 3e6 / 3e-7
LOG_BOUND = 15.0
#: above this many distinct rows the multi-start search runs on a subsample of this size first
SUBSAMPLE_ROWS = 50_000


class BTYDError(ValueError):
    """Data a BTYD model cannot be fitted on (empty, no repeat customers, bad values)."""


# =============================================================================================
# Fit results
# =============================================================================================


@dataclass(frozen=True)
class FitInfo:
    """How an optimisation ended."""

    converged: bool
    iterations: int
    message: str
    starts: int


@dataclass(frozen=True)
class BGNBDParams:
    """Fitted BG/NBD parameters (``alpha`` in the time unit of the data)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")
    customers: int = 0
    info: FitInfo | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "info"}
        if self.info is not None:
            out.update(converged=self.info.converged, iterations=self.info.iterations)
        return out


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters (``gamma`` in money units)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float = float("nan")
    customers: int = 0
    info: FitInfo | None = field(default=None, compare=False)

    @property
    def population_mean(self) -> float:
        """E[M] = p gamma / (q - 1); infinite when q <= 1."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "info"}
        if self.info is not None:
            out.update(converged=self.info.converged, iterations=self.info.iterations)
        return out


@dataclass(frozen=True)
class SBGParams:
    """Fitted shifted-beta-geometric parameters (per billing period)."""

    alpha: float
    beta: float
    log_likelihood: float = float("nan")
    subscriptions: int = 0
    info: FitInfo | None = field(default=None, compare=False)

    @property
    def mean_churn(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "info"}
        if self.info is not None:
            out.update(converged=self.info.converged, iterations=self.info.iterations)
        return out


def _as_arrays(*values: ArrayLike) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def _minimise(objective: Any, starts: Sequence[Any], bounds: float = LOG_BOUND,
              jac: bool = False) -> tuple[np.ndarray, float, FitInfo]:
    """Minimise ``objective`` over log-parameters with L-BFGS-B from several starts; keep the best.

    With ``jac=True`` the objective returns ``(value, gradient)``. A run that stops without
    convergence is polished with Nelder-Mead from its end point.
    """
    best = None
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, dtype=float), -bounds + 1, bounds - 1)
        with np.errstate(all="ignore"):
            res = optimize.minimize(objective, x0, method="L-BFGS-B", jac=jac,
                                    bounds=[(-bounds, bounds)] * len(x0),
                                    options={"maxiter": 1000, "ftol": 1e-11, "gtol": 1e-7})
        if not np.isfinite(res.fun):
            continue
        if best is None or res.fun < best.fun - 1e-10:
            best = res
    if best is None:
        raise BTYDError("the likelihood is not finite at any starting point: check the data")
    x, fun, success = best.x, float(best.fun), bool(best.success)
    if not success:
        value = (lambda v: objective(v)[0]) if jac else objective
        with np.errstate(all="ignore"):
            polish = optimize.minimize(value, x, method="Nelder-Mead",
                                       options={"maxiter": 800, "xatol": 1e-7, "fatol": 1e-10})
        if np.isfinite(polish.fun) and polish.fun <= fun:
            x, fun, success = polish.x, float(polish.fun), bool(polish.success)
    at_bound = bool(np.any(np.abs(x) >= bounds - 1e-6))
    message = str(best.message) + ("; a parameter is at its bound (the data do not identify it)" if at_bound else "")
    return x, fun, FitInfo(success and not at_bound, int(best.nit), message, len(starts))


def _mean_objective(ll: np.ndarray, grad: np.ndarray, w: np.ndarray, n: float, params: np.ndarray,
                    penalizer: float) -> tuple[float, np.ndarray]:
    """What the optimiser minimises: the mean negative log-likelihood over ``n`` customers (row
    log-likelihoods ``ll`` weighted by ``w``), plus the optional L2 penalty as in ``lifetimes``,
    and its gradient with respect to the log-parameters (chain rule: x ``params``). Not finite
    -> 1e300 with a zero gradient, so L-BFGS-B backs off."""
    value = -(w @ ll) / n
    gradient = -(grad @ w) / n * params
    if penalizer:
        value += penalizer * float(np.sum(params**2)) / n
        gradient += 2 * penalizer * params**2 / n
    if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
        return 1e300, np.zeros(len(params))
    return float(value), gradient


# =============================================================================================
# BG/NBD
# =============================================================================================


def bgnbd_log_likelihood(params: Sequence[float], x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Log-likelihood of each customer under BG/NBD (FHL 2005, eq. 6).

    ``L = B(a, b+x)/B(a, b) * G(r+x) a^r / (G(r) (alpha+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))``

    Parameters
    ----------
    params : (r, alpha, a, b)
    x, t_x, T : repeat purchases, time of the last purchase and age (same time unit as alpha)

    Returns
    -------
    numpy.ndarray of per-customer log-likelihoods.
    """
    x, t_x, T = _as_arrays(x, t_x, T)
    terms = _BGNBDTerms(params, x, t_x, T)
    return terms.log_likelihood


class _BGNBDTerms:
    """The pieces of the BG/NBD log-likelihood, shared by the likelihood and its gradient.

    ``L = exp(lg + r log(alpha)) (exp(b1) + exp(b2))`` with ``lg = log G(r+x)/G(r)``,
    ``b1 = log B(a, b+x)/B(a, b) - (r+x) log(alpha+T)`` and, for ``x > 0``,
    ``b2 = log B(a+1, b+x-1)/B(a, b) - (r+x) log(alpha+t_x)`` (else ``-inf``). The special
    functions depend on x alone and are evaluated once per distinct frequency (``x_levels`` =
    distinct values and each row's index into them).
    """

    def __init__(self, params: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                 x_levels: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.r, self.alpha, self.a, self.b = r, alpha, a, b = tuple(float(v) for v in params)
        self.levels, self.index = levels, index = x_levels if x_levels is not None else np.unique(x, return_inverse=True)
        self.repeat = levels > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            self.bx1 = np.where(self.repeat, np.maximum(b + levels - 1, 1e-300), 1.0)
            lg = (special.gammaln(r + levels) - special.gammaln(r))[index]
            beta1 = (special.betaln(a, b + levels) - special.betaln(a, b))[index]
            beta2 = np.where(self.repeat, special.betaln(a + 1, self.bx1) - special.betaln(a, b), -np.inf)[index]
            self.rx = r + x
            self.log_alpha = np.log(alpha)
            self.l_T, self.l_tx = np.log(alpha + T), np.log(alpha + t_x)
            self.b1 = beta1 - self.rx * self.l_T
            self.b2 = beta2 - self.rx * self.l_tx
            self.lse = np.logaddexp(self.b1, self.b2)
            self.log_likelihood = lg + r * self.log_alpha + self.lse


def bgnbd_log_likelihood_gradient(params: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                                  x_levels: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood and its gradient with respect to (r, alpha, a, b).

    ``x_levels`` = (distinct frequencies, index of each row's frequency) lets the special
    functions, which depend on x only, be evaluated once per distinct frequency."""
    t = _BGNBDTerms(params, x, t_x, T, x_levels)
    r, alpha, a, b, xs, index = t.r, t.alpha, t.a, t.b, t.levels, t.index
    dg = special.digamma
    # derivatives of the functions of x alone, on the distinct values
    psi_r = (dg(r + xs) - dg(r))[index]
    psi_abx = dg(a + b + xs)
    psi_ab = dg(a + b)
    da1 = (psi_ab - psi_abx)[index]
    da2 = (dg(a + 1) - dg(a) + psi_ab - psi_abx)[index]
    db1 = (dg(b + xs) - dg(b) + psi_ab - psi_abx)[index]
    db2 = (np.where(t.repeat, dg(t.bx1), 0.0) - dg(b) + psi_ab - psi_abx)[index]
    w1, w2 = np.exp(t.b1 - t.lse), np.exp(t.b2 - t.lse)
    d_r = psi_r + t.log_alpha - w1 * t.l_T - w2 * t.l_tx
    d_alpha = r / alpha - w1 * t.rx / (alpha + T) - w2 * t.rx / (alpha + t_x)
    d_a = w1 * da1 + w2 * da2
    d_b = w1 * db1 + w2 * db2
    return t.log_likelihood, np.stack([d_r, d_alpha, d_a, d_b])


def _compress(*columns: np.ndarray, weights: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows and their counts (customers with the same summary share one term)."""
    frame = pd.DataFrame({f"c{i}": np.asarray(c, dtype=float) for i, c in enumerate(columns)})
    frame["w"] = 1.0 if weights is None else np.asarray(weights, dtype=float)
    grouped = frame.groupby([f"c{i}" for i in range(len(columns))], sort=True)["w"].sum().reset_index()
    return [grouped[f"c{i}"].to_numpy() for i in range(len(columns))], grouped["w"].to_numpy()


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None,
              penalizer: float = 0.0) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters.

    Parameters
    ----------
    x, t_x, T : per-customer repeat purchases, recency and age (one time unit)
    weights : optional number of customers each row stands for
    penalizer : L2 penalty on the parameters (0 = plain MLE), as in ``lifetimes``

    Returns
    -------
    BGNBDParams with the maximised log-likelihood and the optimiser's convergence information.
    """
    x, t_x, T = _as_arrays(x, t_x, T)
    if len(x) == 0:
        raise BTYDError("no customers to fit BG/NBD on")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x - 1e-9 > T):
        raise BTYDError("BG/NBD needs frequency >= 0 and 0 <= recency <= T for every customer")
    if not np.any(x > 0):
        raise BTYDError("no customer has a repeat purchase: BG/NBD cannot be fitted")
    w_all = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    (ux, ut, uT), w = _compress(x, t_x, T, weights=w_all)
    n = float(w.sum())

    levels = np.unique(ux, return_inverse=True)

    def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, grad = bgnbd_log_likelihood_gradient(params, ux, ut, uT, levels)
        return _mean_objective(ll, grad, w, n, params, penalizer)

    # starting points around the observed repeat rate (alpha is in the data's time unit)
    rate = max(float(w_all @ x) / max(float(w_all @ T), 1e-9), 1e-6)
    starts = [
        np.log([1.0, 1.0 / rate, 1.0, 3.0]),
        np.log([0.5, 0.5 / rate, 0.5, 5.0]),
        np.log([2.0, 2.0 / rate, 2.0, 10.0]),
        np.log([0.2, 0.2 / rate, 0.8, 2.0]),
    ]
    if len(w) > SUBSAMPLE_ROWS:
        # many distinct customers: search from every start on a fixed random subsample, then
        # refine the best point once on all the data (same optimum, a fraction of the time)
        pick = np.random.default_rng(0).choice(len(x), SUBSAMPLE_ROWS, replace=False)
        rough = fit_bgnbd(x[pick], t_x[pick], T[pick], w_all[pick], penalizer * SUBSAMPLE_ROWS / n)
        starts = [np.log([rough.r, rough.alpha, rough.a, rough.b])]
    best, fun, info = _minimise(nll, starts, jac=True)
    r, alpha, a, b = np.exp(best)
    ll = float(w @ bgnbd_log_likelihood((r, alpha, a, b), ux, ut, uT))
    return BGNBDParams(float(r), float(alpha), float(a), float(b), ll, int(round(n)), info)


def _params(params: BGNBDParams | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(params, BGNBDParams):
        return params.r, params.alpha, params.a, params.b
    r, alpha, a, b = (float(v) for v in params)
    return r, alpha, a, b


def bgnbd_expected_purchases(params: BGNBDParams | Sequence[float], t: ArrayLike) -> np.ndarray:
    """E[X(t)]: expected repeat purchases of a new customer in ``t`` units after the first.

    FHL eq. 7, ``(a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]``, evaluated
    through Euler's transformation, ``(1-z)^r 2F1(r, b; c; z) = (1-z)^(a-1) 2F1(c-r, a-1; c; z)``,
    which stays well conditioned for large ``t``.
    """
    return bgnbd_conditional_expected_purchases(params, t, 0.0, 0.0, 0.0)


def bgnbd_conditional_expected_purchases(params: BGNBDParams | Sequence[float], t: ArrayLike,
                                         x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` units of a customer with history
    (x, t_x, T) (FHL eq. 10).

    ``(a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
      / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``

    The bracket is computed as ``1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)`` (Euler's
    transformation), exact and stable for any ``x``. For ``a < 1`` both factors are negative and
    the product is still the (finite) expectation; ``a = 1`` is a removable singularity, evaluated
    as the mean of its two neighbours.
    """
    r, alpha, a, b = _params(params)
    t, x, t_x, T = np.broadcast_arrays(*_as_arrays(t, x, t_x, T))
    if abs(a - 1) < 1e-7:
        lo = bgnbd_conditional_expected_purchases((r, alpha, 1 - 1e-5, b), t, x, t_x, T)
        hi = bgnbd_conditional_expected_purchases((r, alpha, 1 + 1e-5, b), t, x, t_x, T)
        return (lo + hi) / 2
    z = t / (alpha + T + t)
    c = a + b + x - 1
    with np.errstate(all="ignore"):
        bracket = 1.0 - np.exp((a - 1) * np.log1p(-z)) * special.hyp2f1(a + b - 1 - r, a - 1, c, z)
        first = c / (a - 1) * bracket
    bad = ~np.isfinite(first)
    if bad.any():
        # hyp2f1 overflows when a and b are both very large (a nearly homogeneous dropout
        # probability); the expectation is then an integral over a concentrated Beta posterior
        first = np.where(bad, 0.0, first)
        first[bad] = _expected_given_alive_quadrature(r, alpha, a, b, t[bad], x[bad], T[bad])
    return first * bgnbd_probability_alive(params, x, t_x, T)


def _expected_given_alive_quadrature(r: float, alpha: float, a: float, b: float, t: np.ndarray,
                                     x: np.ndarray, T: np.ndarray, nodes: int = 64) -> np.ndarray:
    """E[Y(t) | alive, x, T] = E_p[(1 - ((alpha+T)/(alpha+T+p t))^(r+x)) / p] with p ~ Beta(a, b+x)
    (the posterior of the dropout probability of a customer alive after x repeats), by
    Gauss-Legendre quadrature over +-10 standard deviations of the posterior; for large a, b."""
    u, w = np.polynomial.legendre.leggauss(nodes)
    bx = b + x
    mean = a / (a + bx)
    sd = np.sqrt(a * bx / ((a + bx) ** 2 * (a + bx + 1)))
    lo = np.maximum(mean - 10 * sd, 1e-300)
    hi = np.minimum(mean + 10 * sd, 1.0)
    p = lo[:, None] + (hi - lo)[:, None] * (u[None, :] + 1) / 2
    log_pdf = ((a - 1) * np.log(p) + (bx[:, None] - 1) * np.log1p(-p) - special.betaln(a, bx)[:, None])
    weight = w[None, :] * np.exp(log_pdf) * (hi - lo)[:, None] / 2
    g = -np.expm1((r + x)[:, None] * (np.log(alpha + T)[:, None] - np.log(alpha + T[:, None] + p * t[:, None]))) / p
    return (weight * g).sum(axis=1) / weight.sum(axis=1)


def bgnbd_probability_alive(params: BGNBDParams | Sequence[float], x: ArrayLike, t_x: ArrayLike,
                            T: ArrayLike) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (FHL eq. 11)."""
    r, alpha, a, b = _params(params)
    x, t_x, T = np.broadcast_arrays(*_as_arrays(x, t_x, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    log_odds = np.where(x > 0, log_odds, -np.inf)
    return np.exp(-np.logaddexp(0.0, log_odds))


def bgnbd_simulate(params: BGNBDParams | Sequence[float], T: ArrayLike, rng: np.random.Generator,
                   future: float = 0.0) -> dict[str, np.ndarray]:
    """Simulate BG/NBD customers observed for ``T`` units after their first purchase.

    Death happens only right after a repeat purchase (as in the model). Returns ``x``, ``t_x``,
    ``T`` and, when ``future > 0``, ``future_purchases`` in (T, T + future].
    """
    r, alpha, a, b = _params(params)
    T = np.asarray(T, dtype=float)
    n = len(T)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    # repeat purchases before death: Geometric(p) on 1, 2, ...; a Poisson process meanwhile
    max_k = rng.geometric(np.clip(p, 1e-12, 1.0))
    horizon = T + future
    total = rng.poisson(lam * horizon)
    # purchase times in (0, horizon] of the Poisson process: uniform order statistics
    k = np.minimum(total, max_k)
    times = [np.sort(rng.uniform(0, h, m))[:kk] for h, m, kk in zip(horizon, total, k, strict=True)]
    x = np.array([int((tt <= t0).sum()) for tt, t0 in zip(times, T, strict=True)])
    t_x = np.array([tt[xx - 1] if xx > 0 else 0.0 for tt, xx in zip(times, x, strict=True)])
    out = {"x": x.astype(float), "t_x": t_x, "T": T.copy()}
    if future > 0:
        out["future_purchases"] = np.array([len(tt) - xx for tt, xx in zip(times, x, strict=True)], dtype=float)
    return out


# =============================================================================================
# Gamma-Gamma
# =============================================================================================


def gamma_gamma_log_likelihood(params: Sequence[float], x: ArrayLike, m: ArrayLike) -> np.ndarray:
    """Log-likelihood of each repeat customer's mean transaction value ``m`` over ``x`` repeat
    transactions (Fader & Hardie 2013, eq. 4):

    ``f(m | p, q, gamma, x) = G(px+q)/(G(px) G(q)) gamma^q m^(px-1) x^(px) / (gamma + m x)^(px+q)``
    """
    p, q, g = (float(v) for v in params)
    x, m = _as_arrays(x, m)
    px = p * x
    return (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(g)
            + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(g + m * x))


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None,
                    penalizer: float = 0.0) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers (``x > 0``, ``m > 0``).

    Customers without repeats, or with a non-positive mean value, are left out (the model is
    defined on repeat transactions only).
    """
    x, m = _as_arrays(x, m)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    w_all = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    x, m, w_all = x[keep], m[keep], w_all[keep]
    if len(x) < 3:
        raise BTYDError("Gamma-Gamma needs at least 3 customers with a repeat purchase of positive value")
    (ux, um), w = _compress(x, m, weights=w_all)
    n = float(w.sum())
    scale = float(np.average(m, weights=w_all))

    log_m, log_x = np.log(um), np.log(ux)

    def nll(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        p, q, g = params
        px = p * ux
        ll = gamma_gamma_log_likelihood(params, ux, um)
        dg = special.digamma(px + q)
        log_gm = np.log(g + um * ux)
        grad = np.stack([ux * (dg - special.digamma(px) + log_m + log_x - log_gm),
                         dg - special.digamma(q) + np.log(g) - log_gm,
                         q / g - (px + q) / (g + um * ux)])
        return _mean_objective(ll, grad, w, n, params, penalizer)

    # p gamma/(q-1) is the mean spend: start with that near the sample mean
    starts = [np.log([p0, q0, p0 * scale * (q0 - 1)]) for p0, q0 in ((1.0, 3.0), (4.0, 4.0), (10.0, 2.0), (0.5, 10.0))]
    if len(w) > SUBSAMPLE_ROWS:
        pick = np.random.default_rng(0).choice(len(x), SUBSAMPLE_ROWS, replace=False)
        rough = fit_gamma_gamma(x[pick], m[pick], w_all[pick], penalizer * SUBSAMPLE_ROWS / n)
        starts = [np.log([rough.p, rough.q, rough.gamma])]
    best, _, info = _minimise(nll, starts, jac=True)
    p, q, g = np.exp(best)
    ll = float(w @ gamma_gamma_log_likelihood((p, q, g), ux, um))
    return GammaGammaParams(float(p), float(q), float(g), ll, int(round(n)), info)


def gamma_gamma_expected_value(params: GammaGammaParams | Sequence[float], x: ArrayLike, m: ArrayLike) -> np.ndarray:
    """E[M | x, m]: a customer's expected mean transaction value (Fader & Hardie 2013, eq. 5):
    ``(q - 1)/(px + q - 1) * p gamma/(q - 1) + px/(px + q - 1) * m``; for ``x = 0`` the population
    mean ``p gamma / (q - 1)``."""
    p, q, g = (params.p, params.q, params.gamma) if isinstance(params, GammaGammaParams) else (float(v) for v in params)
    x, m = np.broadcast_arrays(*_as_arrays(x, m))
    m = np.where(x > 0, m, 0.0)
    return p * (g + m * x) / (p * x + q - 1)


def gamma_gamma_simulate(params: GammaGammaParams | Sequence[float], x: ArrayLike,
                         rng: np.random.Generator) -> np.ndarray:
    """Mean of ``x`` transaction values per customer (``nan`` where ``x = 0``)."""
    p, q, g = (params.p, params.q, params.gamma) if isinstance(params, GammaGammaParams) else (float(v) for v in params)
    x = np.asarray(x, dtype=float)
    nu = rng.gamma(q, 1.0 / g, len(x))
    total = rng.gamma(np.maximum(p * x, 1e-12), 1.0 / nu)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, total / np.maximum(x, 1), np.nan)


# =============================================================================================
# Customer value
# =============================================================================================


def customer_value(bgnbd: BGNBDParams, gamma_gamma: GammaGammaParams, x: ArrayLike, t_x: ArrayLike,
                   T: ArrayLike, m: ArrayLike, horizon: float, annual_discount_rate: float = 0.0,
                   unit_days: float = 1.0, steps: int = 12) -> np.ndarray:
    """Expected value of each customer's purchases in the next ``horizon`` units.

    Undiscounted (the default): ``E[Y(horizon) | history] x E[M | x, m]``. With an annual discount
    rate ``d``, the horizon is cut into ``steps`` equal slices and the purchases expected in slice
    k (difference of cumulative expectations) are discounted from the slice's end,
    ``1 / (1 + d)^(t_k / 365 days)`` (the ``lifetimes`` convention, with a continuous yearly rate).
    """
    value = gamma_gamma_expected_value(gamma_gamma, x, m)
    if annual_discount_rate == 0:
        return bgnbd_conditional_expected_purchases(bgnbd, horizon, x, t_x, T) * value
    if annual_discount_rate < 0:
        raise BTYDError("the discount rate cannot be negative")
    total = np.zeros(np.broadcast(np.asarray(x), np.asarray(T)).shape)
    previous = np.zeros_like(total)
    for k in range(1, steps + 1):
        t_k = horizon * k / steps
        cumulative = bgnbd_conditional_expected_purchases(bgnbd, t_k, x, t_x, T)
        years = t_k * unit_days / 365.0
        total += (cumulative - previous) / (1 + annual_discount_rate) ** years
        previous = cumulative
    return total * value


# =============================================================================================
# Shifted-beta-geometric (contractual)
# =============================================================================================


def sbg_survival(alpha: float, beta: float, t: ArrayLike) -> np.ndarray:
    """S(t) = P(still subscribed after t renewals) = B(alpha, beta + t) / B(alpha, beta)."""
    t = np.asarray(t, dtype=float)
    return np.exp(special.betaln(alpha, beta + t) - special.betaln(alpha, beta))


def sbg_churn_probability(alpha: float, beta: float, t: ArrayLike) -> np.ndarray:
    """P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta): lost at the t-th renewal (t >= 1)."""
    t = np.asarray(t, dtype=float)
    return np.exp(special.betaln(alpha + 1, beta + t - 1) - special.betaln(alpha, beta))


def sbg_log_likelihood(params: Sequence[float], renewals: ArrayLike, churned: ArrayLike) -> np.ndarray:
    """Per-subscription log-likelihood: a subscription that churned at its (n+1)-th renewal after
    ``n`` renewals contributes ``log P(T = n + 1)``; one still active after ``n`` renewals
    contributes ``log S(n)``."""
    alpha, beta = (float(v) for v in params)
    n, churned = _as_arrays(renewals, churned)
    lost = special.betaln(alpha + 1, beta + n) - special.betaln(alpha, beta)
    alive = special.betaln(alpha, beta + n) - special.betaln(alpha, beta)
    return np.where(churned > 0, lost, alive)


def fit_sbg(renewals: ArrayLike, churned: ArrayLike, weights: ArrayLike | None = None) -> SBGParams:
    """Maximum-likelihood sBG parameters from individual subscriptions (renewals, churned)."""
    n, c = _as_arrays(renewals, churned)
    if len(n) == 0:
        raise BTYDError("no subscriptions to fit the sBG model on")
    if np.any(n < 0):
        raise BTYDError("renewals cannot be negative")
    if not np.any(c > 0):
        raise BTYDError("no subscription has churned yet: the sBG model cannot be fitted")
    if not np.any((n > 0) | (c == 0)):
        raise BTYDError("every subscription churned at its first renewal: retention is zero")
    (un, uc), w = _compress(n, (c > 0).astype(float), weights=None if weights is None else np.asarray(weights))
    total = float(w.sum())

    def nll(log_params: np.ndarray) -> float:
        value = -(w @ sbg_log_likelihood(np.exp(log_params), un, uc)) / total
        return float(value) if np.isfinite(value) else 1e300

    starts = [np.log([1.0, 1.0]), np.log([0.5, 3.0]), np.log([2.0, 10.0])]
    best, _, info = _minimise(nll, starts, bounds=12.0)
    alpha, beta = np.exp(best)
    ll = float(w @ sbg_log_likelihood((alpha, beta), un, uc))
    return SBGParams(float(alpha), float(beta), ll, int(round(total)), info)


def fit_sbg_cohort(survivors: ArrayLike) -> SBGParams:
    """sBG from one cohort's survivor counts ``n_0, n_1, ..., n_k`` (n_t alive after t renewals),
    the form of Fader & Hardie's (2007) worked example."""
    s = np.asarray(survivors, dtype=float)
    if len(s) < 3 or s[0] <= 0 or np.any(np.diff(s) > 0):
        raise BTYDError("survivors must be a non-increasing series of at least 3 counts")
    lost = -np.diff(s)
    renewals = np.concatenate([np.arange(len(lost)), [len(lost)]])
    churned = np.concatenate([np.ones(len(lost)), [0.0]])
    weights = np.concatenate([lost, [s[-1]]])
    keep = weights > 0
    return fit_sbg(renewals[keep], churned[keep], weights[keep])


def sbg_expected_renewals(alpha: float, beta: float, renewals: ArrayLike, periods: int) -> np.ndarray:
    """Expected payments in the next ``periods`` periods of a subscriber alive after ``renewals``
    renewals: ``sum_{k=1..periods} S(n + k) / S(n)``."""
    n = np.asarray(renewals, dtype=float)
    k = np.arange(1, periods + 1, dtype=float)
    log_s = special.betaln(alpha, beta + n[..., None] + k) - special.betaln(alpha, beta + n[..., None])
    return np.exp(log_s).sum(axis=-1)


def sbg_discounted_residual_lifetime(alpha: float, beta: float, renewals: ArrayLike, discount: float) -> np.ndarray:
    """DERL (Fader & Hardie 2010): expected discounted number of future payments of a subscriber
    who has made ``n`` renewals and is about to decide on the next, per-period discount rate ``d``:

    ``DERL = B(alpha, beta + n + 1)/B(alpha, beta + n) * 2F1(1, beta + n + 1; alpha + beta + n + 1; 1/(1+d))``
    """
    if discount <= 0:
        raise BTYDError("the per-period discount rate must be positive (else the lifetime may be infinite)")
    n = np.asarray(renewals, dtype=float)
    ratio = np.exp(special.betaln(alpha, beta + n + 1) - special.betaln(alpha, beta + n))
    return ratio * special.hyp2f1(1.0, beta + n + 1, alpha + beta + n + 1, 1.0 / (1.0 + discount))


def sbg_simulate(alpha: float, beta: float, n: int, max_renewals: ArrayLike | int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Simulate subscriptions observed for at most ``max_renewals`` renewal opportunities;
    returns (renewals, churned)."""
    theta = rng.beta(alpha, beta, n)
    lifetime = rng.geometric(np.clip(theta, 1e-12, 1.0))  # period of loss: 1, 2, ...
    cap = np.broadcast_to(np.asarray(max_renewals), (n,))
    churned = lifetime <= cap
    renewals = np.where(churned, lifetime - 1, cap)
    return renewals.astype(float), churned.astype(float)


# =============================================================================================
# The BTYD summary of a transaction log
# =============================================================================================


def summarise(customer: ArrayLike, day: Any, amount: ArrayLike, calibration_end: Any,
              observation_end: Any = None, time_unit: str = "days") -> pd.DataFrame:
    """Per-customer BTYD summary of a transaction log.

    Parameters
    ----------
    customer : customer id of each transaction
    day : calendar day of each transaction (anything ``pandas.to_datetime`` reads; the time of day
        is ignored, so same-day purchases become one transaction)
    amount : value of each transaction (summed per customer and day)
    calibration_end : last day of the calibration period (inclusive)
    observation_end : last day of the holdout period (inclusive); ``None`` for no holdout
    time_unit : "days" or "weeks" (fractional weeks)

    Returns
    -------
    DataFrame indexed by customer (customers whose first purchase is in the calibration period),
    columns ``frequency, recency, T, monetary_value`` and, with a holdout, ``frequency_holdout``,
    ``monetary_value_holdout`` (mean value of holdout transactions) and ``duration_holdout``.
    Days whose summed amount is not positive (only returns or cancellations) are not purchases.
    """
    if time_unit not in TIME_UNITS:
        raise BTYDError(f"time unit must be one of {', '.join(TIME_UNITS)}, not {time_unit!r}")
    unit = TIME_UNITS[time_unit]
    cal_end = _naive_day(calibration_end)
    obs_end = None if observation_end is None else _naive_day(observation_end)
    if obs_end is not None and obs_end <= cal_end:
        raise BTYDError(f"observation end {obs_end.date()} must be after the calibration end {cal_end.date()}")
    days = pd.to_datetime(pd.Series(np.asarray(day)))
    if days.dt.tz is not None:  # keep the local calendar day the timestamps were written in
        days = days.dt.tz_localize(None)
    # integer customer codes and day numbers: grouping on them is much faster than on text
    codes, names = pd.factorize(pd.Series(np.asarray(customer)), sort=True)
    day_no = (days.dt.normalize() - cal_end).dt.days.to_numpy()  # 0 = the calibration end
    limit = (obs_end - cal_end).days if obs_end is not None else 0
    frame = pd.DataFrame({"c": codes, "d": day_no, "amount": np.asarray(amount, dtype=float)})
    frame = frame[(frame["d"] <= limit) & (frame["c"] >= 0)]
    daily = frame.groupby(["c", "d"], sort=True)["amount"].sum().reset_index()
    daily = daily[daily["amount"] > 0]
    cal = daily[daily["d"] <= 0]
    columns = ["frequency", "recency", "T", "monetary_value"]
    if cal.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="customer"))
    # rows are sorted by customer then day: the first row of each customer is the first purchase
    c = cal["c"].to_numpy()
    d = cal["d"].to_numpy()
    a = cal["amount"].to_numpy()
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    ends = np.r_[starts[1:], len(c)]
    first, last = d[starts], d[ends - 1]
    count = ends - starts
    total = np.add.reduceat(a, starts)
    frequency = (count - 1).astype(float)
    repeat_total = total - a[starts]
    monetary = np.divide(repeat_total, frequency, out=np.zeros(len(frequency)), where=frequency > 0)
    index = pd.Index(np.asarray(names)[c[starts]], name="customer")
    out = pd.DataFrame({"frequency": frequency, "recency": (last - first) / unit, "T": -first / unit,
                        "monetary_value": monetary}, index=index)
    if obs_end is not None:
        in_cal = np.zeros(len(names), dtype=bool)
        in_cal[c[starts]] = True
        hold = daily[(daily["d"] > 0) & in_cal[daily["c"].to_numpy()]]
        hg = hold.groupby("c")["amount"]
        position = pd.Series(np.arange(len(starts)), index=c[starts])
        freq_h = np.zeros(len(starts))
        mon_h = np.zeros(len(starts))
        sizes, means = hg.size(), hg.mean()
        freq_h[position[sizes.index].to_numpy()] = sizes.to_numpy()
        mon_h[position[means.index].to_numpy()] = means.to_numpy()
        out["frequency_holdout"] = freq_h
        out["monetary_value_holdout"] = mon_h
        out["duration_holdout"] = limit / unit
    return out


def _naive_day(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def frequency_groups(frequency: ArrayLike, predicted: ArrayLike, actual: ArrayLike,
                     max_group: int = 7) -> pd.DataFrame:
    """Predicted vs actual holdout purchases per calibration frequency (0, 1, ..., ``max_group``+).

    The classic BTYD validation table: customers, mean predicted and mean actual holdout purchases
    and their totals per group.
    """
    f = np.asarray(frequency, dtype=float)
    group = np.minimum(f, max_group).astype(int)
    frame = pd.DataFrame({"group": group, "predicted": np.asarray(predicted, float), "actual": np.asarray(actual, float)})
    table = frame.groupby("group").agg(customers=("actual", "size"), predicted_mean=("predicted", "mean"),
                                       actual_mean=("actual", "mean"), predicted_total=("predicted", "sum"),
                                       actual_total=("actual", "sum")).reset_index()
    table["frequency"] = [f"{g}+" if g == max_group else str(g) for g in table["group"]]
    return table[["frequency", "customers", "predicted_mean", "actual_mean", "predicted_total", "actual_total"]]


def count_metrics(predicted: ArrayLike, actual: ArrayLike) -> dict[str, float]:
    """Errors of per-customer predicted counts: MAE, RMSE, total error and its share."""
    p = np.asarray(predicted, dtype=float)
    a = np.asarray(actual, dtype=float)
    total_p, total_a = float(p.sum()), float(a.sum())
    return {
        "customers": int(len(a)),
        "mae": float(np.mean(np.abs(p - a))) if len(a) else math.nan,
        "rmse": float(np.sqrt(np.mean((p - a) ** 2))) if len(a) else math.nan,
        "predicted_total": total_p,
        "actual_total": total_a,
        "total_error": total_p - total_a,
        "total_abs_pct_error": abs(total_p - total_a) / total_a if total_a else math.nan,
    }
