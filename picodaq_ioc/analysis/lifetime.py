"""Unbinned maximum-likelihood lifetime fit: exponential plus flat background.

The model over a window ``[a, b]`` (the picoCosmo ``fit_dpData.py`` likelihood)::

    p(t) = (1 - f) * exp(-t/tau) / (tau * (exp(-a/tau) - exp(-b/tau)))  +  f / (b - a)

``tau`` and the background fraction ``f`` are fitted together. ``f`` may become
slightly negative (as long as the density stays positive over the window): bounding it at
0 would make the quoted error too small whenever the fit sits on the bound, which
happens often for long lifetimes where signal and background look alike. The quoted error of ``tau`` is the square root of the ``tau`` element of the
inverse Hessian of the negative log-likelihood (so it includes the correlation with
``f``). Internally the fit works in the scaled variable ``x = (t - a)/(b - a)`` and the
rate ``u = (b - a)/tau`` with analytic gradient and Hessian, so it is fast enough to
refit a few thousand decays many times per second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["LifetimeFit", "fit_lifetime"]


@dataclass(frozen=True)
class LifetimeFit:
    """Result of :func:`fit_lifetime` (times in the units of the input)."""

    tau: float  # NaN when no fit was possible
    tau_err: float
    background_fraction: float
    background_fraction_err: float
    n: int  # number of delays inside the window
    t_min: float
    t_max: float
    converged: bool
    message: str = ""

    def as_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}


def _g_terms(x: np.ndarray, u: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Scaled truncated-exponential density g(x;u) on [0,1], h = d ln g/du, dh/du."""
    em1 = -math.expm1(-u)  # 1 - exp(-u), accurate for small u
    g = u * np.exp(-u * x) / em1
    inv = 1.0 / math.expm1(u) if u < 700 else 0.0  # 1/(e^u - 1)
    h = 1.0 / u - x - inv
    dh = -1.0 / u**2 + (inv + inv * inv)  # e^u/(e^u-1)^2 = inv + inv^2
    return g, h, dh


def _nll_grad_hess(theta: np.ndarray, x: np.ndarray, background: bool):
    u, f = float(theta[0]), (float(theta[1]) if background else 0.0)
    g, h, dh = _g_terms(x, u)
    p = (1.0 - f) * g + f
    # the density must stay positive over the whole window (g is largest at x=0, smallest at x=1)
    g_end = u * math.exp(-u) / -math.expm1(-u)
    if (1.0 - f) * g_end + f <= 0 or np.any(p <= 0):
        return np.inf, np.zeros(2), np.eye(2)
    pu = (1.0 - f) * g * h
    pf = 1.0 - g
    puu = (1.0 - f) * g * (h * h + dh)
    puf = -g * h
    ip = 1.0 / p
    nll = -float(np.sum(np.log(p)))
    gu = -float(np.sum(pu * ip))
    gf = -float(np.sum(pf * ip))
    huu = float(np.sum(pu * pu * ip * ip - puu * ip))
    hff = float(np.sum(pf * pf * ip * ip))
    huf = float(np.sum(pu * pf * ip * ip - puf * ip))
    return nll, np.array([gu, gf]), np.array([[huu, huf], [huf, hff]])


def fit_lifetime(t: np.ndarray, t_min: float, t_max: float, *, background: bool = True,
                 tau_start: float | None = None) -> LifetimeFit:
    """Fit a lifetime to the delays ``t`` that fall inside ``[t_min, t_max]``.

    Parameters
    ----------
    t : array of float
        Delays (e.g. seconds between the muon and the decay pulse); values outside the
        window are ignored.
    t_min, t_max : float
        Fit window; the exponential is normalised to it (truncated likelihood).
    background : bool
        Fit a flat background fraction as well (default); otherwise ``f = 0``.
    tau_start : float, optional
        Start value; default from the mean delay in the window.

    Returns
    -------
    LifetimeFit
        ``tau`` and ``tau_err`` are NaN when fewer than 2 (3 with background) delays lie
        in the window or the fit fails; ``message`` then says why.
    """
    if not (t_max > t_min):
        raise ValueError(f"fit window must have t_max > t_min, got [{t_min}, {t_max}]")
    t = np.asarray(t, dtype=np.float64)
    sel = t[(t >= t_min) & (t <= t_max)]
    n = int(sel.size)
    width = float(t_max - t_min)
    nan = float("nan")
    need = 3 if background else 2
    if n < need:
        return LifetimeFit(nan, nan, nan, nan, n, t_min, t_max, False, f"only {n} delays in the window")
    x = (sel - t_min) / width
    xm = float(x.mean())
    if tau_start is not None and tau_start > 0:
        u0 = width / tau_start
    else:  # invert the mean of a truncated exponential approximately: mean ~ 1/u for large u
        u0 = 1.0 / max(xm, 1e-3) if xm < 0.45 else 0.5
    u0 = min(max(u0, 1e-3), 1e4)
    u, f = u0, (0.05 if background else 0.0)
    nll, grad, hess = _nll_grad_hess(np.array([u, f]), x, background)
    converged = False
    for _ in range(200):  # damped Newton with the bound 0 <= f <= 1 handled as an active set
        free = [0]
        if background and not (f >= 1.0 and grad[1] < 0):
            free.append(1)
        hf = hess[np.ix_(free, free)]
        gf_ = grad[free]
        try:
            step = -np.linalg.solve(hf, gf_)
            if float(step @ gf_) >= 0:  # not a descent direction: fall back to scaled gradient
                raise np.linalg.LinAlgError
        except np.linalg.LinAlgError:
            step = -gf_ / np.maximum(np.abs(np.diag(hf)), 1e-12)
        full = np.zeros(2)
        full[free] = step
        s = 1.0
        improved = False
        for _ls in range(60):
            un = u + s * full[0]
            fn = min(f + s * full[1], 1.0)
            if un > 0:
                cand = _nll_grad_hess(np.array([un, fn]), x, background)
                if cand[0] <= nll + 1e-4 * s * float(full @ grad):
                    improved = True
                    break
            s *= 0.5
        if not improved:
            converged = bool(np.all(np.abs(gf_) < 1e-6 * max(1.0, n)))
            break
        du, dfb = abs(un - u), abs(fn - f)
        u, f = un, fn
        nll, grad, hess = cand
        if du < 1e-10 * u and dfb < 1e-10:
            converged = True
            break
    at_bound = (not background) or f >= 1.0
    try:
        if at_bound:
            var_u = 1.0 / hess[0, 0]
            var_f = nan if background else 0.0
        else:
            cov = np.linalg.inv(hess)
            var_u, var_f = float(cov[0, 0]), float(cov[1, 1])
    except (np.linalg.LinAlgError, ZeroDivisionError):
        var_u, var_f = nan, nan
    ok = converged and bool(np.isfinite(var_u)) and var_u > 0
    tau = width / u
    tau_err = width * math.sqrt(var_u) / u**2 if ok else nan
    f_err = math.sqrt(var_f) if (ok and np.isfinite(var_f) and var_f >= 0) else nan
    return LifetimeFit(float(tau), float(tau_err), float(f), float(f_err), n, float(t_min), float(t_max), bool(ok),
                       "" if ok else "fit did not converge")
