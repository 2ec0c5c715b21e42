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
from dataclasses import asdict, dataclass, replace

import numpy as np

__all__ = ["TAU_FREE", "LifetimeFit", "capture_weight", "fit_lifetime", "fit_lifetime_capture", "profile_interval"]


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
    #: profile-likelihood interval (``-2 ln L`` rises by 1 with ``f`` re-fitted at each ``tau``):
    #: ``tau - tau_err_low .. tau + tau_err_high``; NaN when not computed or not bracketed
    tau_err_low: float = float("nan")
    tau_err_high: float = float("nan")

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


def _profile_f(x: np.ndarray, u: float, f0: float) -> tuple[float, float]:
    """Minimise the NLL over the background fraction ``f`` at fixed rate ``u``: ``(nll, f)``.

    The NLL is convex in ``f``; Newton steps are halved until the density stays positive
    over the window and the NLL does not rise. ``f <= 1``.
    """
    g, _, _ = _g_terms(x, u)
    g_end = u * math.exp(-u) / -math.expm1(-u) if u < 700 else 0.0
    g_lo, g_hi = min(g_end, float(g.min())), float(g.max())

    def nll(f: float) -> float:
        if (1.0 - f) * g_lo + f <= 0 or (1.0 - f) * g_hi + f <= 0 or f > 1.0:
            return math.inf
        return -float(np.sum(np.log((1.0 - f) * g + f)))

    f = min(max(f0, 0.0), 1.0)
    cur = nll(f)
    if not math.isfinite(cur):
        f, cur = 0.5, nll(0.5)
    for _ in range(60):
        p = (1.0 - f) * g + f
        d = (1.0 - g) / p
        grad, hess = -float(d.sum()), float(np.dot(d, d))
        if hess <= 0:
            break
        step = -grad / hess
        if f >= 1.0 and step > 0:
            break
        s = 1.0
        while s > 1e-6:
            fn = min(f + s * step, 1.0)
            new = nll(fn)
            if new <= cur:
                break
            s *= 0.5
        else:
            break
        done = abs(fn - f) < 1e-10
        f, cur = fn, new
        if done:
            break
    return cur, f


def profile_interval(t: np.ndarray, fit: LifetimeFit, *, background: bool = True,
                     up: float = 0.5) -> tuple[float, float, float, float]:
    """Asymmetric errors of ``fit.tau`` from the profile likelihood.

    The interval is where the negative log-likelihood, minimised over the background
    fraction at each fixed ``tau``, stays within ``up`` (0.5: one standard deviation) of its
    minimum (MINOS-style). The profile's own minimum is located first: when the Newton fit
    stopped where the density touches zero (``f`` slightly negative with almost no
    background) it is the better estimate. Returns ``(tau, f, err_low, err_high)``; NaN for
    a side that is not bracketed.
    """
    from scipy.optimize import brentq, minimize_scalar

    nan = float("nan")
    if not (fit.converged and math.isfinite(fit.tau)):
        return fit.tau, fit.background_fraction, nan, nan
    a, b = fit.t_min, fit.t_max
    t = np.asarray(t, dtype=np.float64)
    x = (t[(t >= a) & (t <= b)] - a) / (b - a)
    width = b - a
    u_hat = width / fit.tau
    f_hat = fit.background_fraction if background else 0.0

    def prof(u: float) -> float:
        if background:
            return _profile_f(x, u, f_hat)[0]
        g, _, _ = _g_terms(x, u)
        return -float(np.sum(np.log(g)))

    sig_u = fit.tau_err * u_hat**2 / width if math.isfinite(fit.tau_err) and fit.tau_err > 0 else 0.1 * u_hat
    nll0 = prof(u_hat)
    if background and f_hat <= 0:  # the Newton fit may have stopped at the positivity bound
        m = minimize_scalar(prof, bounds=(max(u_hat - 3 * sig_u, 1e-6), u_hat + 3 * sig_u), method="bounded",
                            options={"xatol": 1e-6 * sig_u})
        if m.fun < nll0:
            u_hat, nll0 = float(m.x), float(m.fun)
            f_hat = _profile_f(x, u_hat, f_hat)[1]
    tau = width / u_hat

    def excess(u: float) -> float:
        return prof(u) - nll0 - up

    out = []
    for sign in (+1.0, -1.0):  # u up = tau down (low side), u down = tau up (high side)
        lo, step, hi_u = u_hat, sig_u, None
        for _ in range(40):
            cand = u_hat + sign * step
            if cand <= 1e-6:
                cand = 1e-6
            if excess(cand) > 0:
                hi_u = cand
                break
            lo = cand
            if cand == 1e-6:
                break
            step *= 1.6
        if hi_u is None:
            out.append(nan)
            continue
        root = brentq(excess, min(lo, hi_u), max(lo, hi_u), xtol=1e-7 * u_hat)
        out.append(abs(width / root - tau))
    return tau, f_hat, out[0], out[1]


def fit_lifetime(t: np.ndarray, t_min: float, t_max: float, *, background: bool = True,
                 tau_start: float | None = None, profile: bool = True) -> LifetimeFit:
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
    profile : bool
        Also compute the asymmetric profile-likelihood errors (:func:`profile_interval`).

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
    fit = LifetimeFit(float(tau), float(tau_err), float(f), float(f_err), n, float(t_min), float(t_max), bool(ok),
                      "" if ok else "fit did not converge")
    if profile and ok:
        tau_p, f_p, lo, hi = profile_interval(sel, fit, background=background)
        fit = replace(fit, tau=tau_p, background_fraction=f_p, tau_err_low=lo, tau_err_high=hi)
    return fit


#: free muon lifetime (PDG), s: the mu- decay-electron yield per stop is tau_minus / TAU_FREE
TAU_FREE = 2.1969811e-6


def capture_weight(ratio: float, tau_minus: float) -> float:
    """Share of decay electrons from mu+ among all decay electrons: ``R / (R + tau-/tau_free)``
    (a stopped mu- decays with probability ``tau- / tau_free``, otherwise it is captured)."""
    return ratio / (ratio + tau_minus / TAU_FREE)


def _capture_nll(theta: np.ndarray, t: np.ndarray, a: float, b: float, w: float, tau2: float,
                 background: bool) -> float:
    tau1, f = float(theta[0]), (float(theta[1]) if background else 0.0)
    if tau1 <= 0 or f > 1.0:
        return math.inf
    e1 = np.exp(-t / tau1) / tau1
    e2 = np.exp(-t / tau2) / tau2
    norm = w * (math.exp(-a / tau1) - math.exp(-b / tau1)) + (1 - w) * (math.exp(-a / tau2) - math.exp(-b / tau2))
    p = (1.0 - f) * (w * e1 + (1 - w) * e2) / norm + f / (b - a)
    if np.any(p <= 0):
        return math.inf
    return -float(np.sum(np.log(p)))


def fit_lifetime_capture(t: np.ndarray, t_min: float, t_max: float, *, ratio: float = 1.25,
                         tau_minus: float = 1.795e-6, background: bool = True) -> LifetimeFit:
    """Two-component fit: mu+ free decay (``tau`` fitted) plus mu- decay in the target
    (``tau_minus`` fixed, 1.795 us in oxygen/water) with the mu+/mu- charge ``ratio``
    (1.25 at sea level) fixing the weights, plus a flat background.

    ``tau`` is the mu+ (free) lifetime. Errors: the symmetric one from a numerical Hessian,
    the asymmetric ones from the profile likelihood (``f`` re-minimised at each ``tau``).
    Slower than :func:`fit_lifetime` (scipy minimisation): meant for end-of-run and offline fits.
    """
    from scipy.optimize import brentq, minimize, minimize_scalar

    if not (t_max > t_min):
        raise ValueError(f"fit window must have t_max > t_min, got [{t_min}, {t_max}]")
    t = np.asarray(t, dtype=np.float64)
    sel = t[(t >= t_min) & (t <= t_max)]
    n = int(sel.size)
    nan = float("nan")
    if n < (3 if background else 2):
        return LifetimeFit(nan, nan, nan, nan, n, t_min, t_max, False, f"only {n} delays in the window")
    w = capture_weight(ratio, tau_minus)
    start = fit_lifetime(sel, t_min, t_max, background=background, profile=False)
    scale = TAU_FREE
    x0 = [(start.tau if start.converged else TAU_FREE) / scale, min(max(start.background_fraction, 0.0), 0.9)
          if background else 0.0]

    def nll(th):
        return _capture_nll(np.array([th[0] * scale, th[1] if background else 0.0]), sel, t_min, t_max, w,
                            tau_minus, background)

    res = minimize(nll, x0 if background else x0[:1], method="Nelder-Mead",
                   options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 4000})
    th = np.atleast_1d(res.x)
    tau1 = float(th[0]) * scale
    f = float(th[1]) if background else 0.0
    nll0 = float(res.fun)

    def prof(tau: float) -> float:
        if not background:
            return nll([tau / scale])
        r = minimize_scalar(lambda ff: nll([tau / scale, ff]), bounds=(-0.5, 1.0), method="bounded",
                            options={"xatol": 1e-7})
        return float(r.fun)

    def excess(tau: float) -> float:
        return prof(tau) - nll0 - 0.5

    # symmetric error from the curvature of the profile (3-point, step 2 % of tau)
    h = 0.02 * tau1
    curv = (prof(tau1 + h) - 2 * nll0 + prof(tau1 - h)) / h**2
    tau_err = 1.0 / math.sqrt(curv) if curv > 0 else nan
    errs = []
    for sign in (-1.0, 1.0):
        step, lo, hi = (tau_err if math.isfinite(tau_err) else 0.1 * tau1), tau1, None
        for _ in range(40):
            cand = max(tau1 + sign * step, 1e-3 * tau1)
            if excess(cand) > 0:
                hi = cand
                break
            lo = cand
            step *= 1.6
        errs.append(abs(brentq(excess, min(lo, hi), max(lo, hi), xtol=1e-6 * tau1) - tau1) if hi else nan)
    ok = bool(res.success) and math.isfinite(tau_err)
    return LifetimeFit(tau1, tau_err, f, nan, n, float(t_min), float(t_max), ok,
                       "" if ok else "fit did not converge", tau_err_low=errs[0], tau_err_high=errs[1])
