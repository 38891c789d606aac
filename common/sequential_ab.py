"""Group-sequential A/B analysis that stays valid when the report is read every night.

The nightly report recomputes a fixed-horizon interval on the data so far; a
reader who stops at the first "significant" night tests 14 times at 5% and
gets a false-positive rate near 20%. Here each night is a *look* of a
group-sequential design (Lan & DeMets 1983): an alpha-spending function
``spending(t)`` says how much of the type I error may have been spent by
information fraction ``t``, and the two-sided boundary ``c_k`` of look ``k`` is
set so that, under H0, the probability of having crossed by look ``k`` is
exactly ``spending(t_k)``. Looks need not be planned in advance or equally
spaced: a skipped night just makes the next step bigger.

- ``spending``: Lan–DeMets O'Brien–Fleming-type (spends almost nothing early)
  or Pocock-type spending;
- ``boundaries``: z boundaries ``c_1..c_K`` for looks at given fractions;
- ``information_fraction``: the look's fraction, from users or from days;
- ``new_history`` / ``record_look``: the append-only, JSON-serialisable look
  history of one experiment, which the nightly job loads, extends and saves.

How the boundaries are computed: the recursive numerical integration of
Armitage, McPherson & Rowe (1969), as in Jennison & Turnbull (2000, ch. 19) and
in ld98/ldbounds, rather than ``scipy.stats.multivariate_normal.cdf``. The
recursion carries the sub-density of the not-yet-stopped score statistic
from look to look on a grid (Simpson's rule), so each new look costs one
one-dimensional root search (milliseconds). It is deterministic, so a night
re-run gives the same boundary, and its boundaries agree with an 8x finer
grid to 1e-7. The multivariate normal CDF is a randomised quasi-Monte Carlo
integral in K dimensions: its error (1e-6 at best, and seconds per call at 14
looks) dwarfs the early O'Brien–Fleming spends it would have to resolve
(1e-16 at the first of 14 nightly looks) and varies from run to run. The
tests use it once, as an independent check of the recursion.

The test statistic is the relative effect ``mean_t / mean_c - 1`` divided by
its delta-method standard error (``common.ab_stats.relative_delta``); the
interval printed at each look is the repeated confidence interval
``effect ± c_k · se`` (Jennison & Turnbull ch. 9), which covers the true
effect at all looks simultaneously with probability ``1 - alpha``.
"""
from __future__ import annotations

import copy
import datetime as dt
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, special, stats

from common.ab_stats import relative_delta

KINDS = ("obrien_fleming", "pocock")
SCHEMA_VERSION = 1

# Grid step in units of the standard deviation of the increment between two looks: Simpson's error then
# scales as (1/16)^4, well below the 1e-3 in c that matters.
_STEP = 1.0 / 16
# Grid cap per look (the convolution is a points x points matrix, 32 MB here): looks closer than about
# 2e-3 of the plan apart (40 users of a 20,000-user plan) are integrated more coarsely instead.
_MAX_INTERVALS = 2000
# |Z| beyond this has probability < 1e-32: an infinite (or huge) boundary is integrated only up to here.
_TAIL = 12.0


def spending(t, alpha: float = 0.05, kind: str = "obrien_fleming"):
    """Cumulative two-sided alpha spent at information fraction ``t`` (clipped to [0, 1], so ``spending(1) == alpha``).

    Each side of the symmetric test spends the one-sided Lan–DeMets function at ``alpha / 2``, as
    gsDesign (``test.type=2`` with ``sfLDOF``/``sfLDPocock``, whose alpha is "always one-sided") and
    ld98/ldbounds do, which is what their published boundary tables use:

    - ``obrien_fleming``: per side ``f(t; a) = 2 - 2 Phi(z_{1-a/2} / sqrt(t))`` with ``a = alpha / 2``,
      so the total is ``2 f(t; alpha / 2) = 4 Phi(-z_{1-alpha/4} / sqrt(t))``; computed from the lower
      tail so the tiny early spends (1e-16 at t = 1/14) do not cancel to 0. (The same formula applied
      once to the total, ``2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``, is another valid spending function, but
      gives 4.38, 3.10, 2.55, 2.25, 2.06 at five equal looks rather than the published 4.88 ... 2.03.)
    - ``pocock``: ``alpha ln(1 + (e - 1) t)`` (linear in alpha, so per side or in total is the same).
    """
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if kind == "obrien_fleming":
        with np.errstate(divide="ignore"):
            spent = 4 * special.ndtr(-stats.norm.isf(alpha / 4) / np.sqrt(t))
    elif kind == "pocock":
        spent = alpha * np.log1p((math.e - 1) * t)
    else:
        raise ValueError(f"unknown spending function {kind!r}: use one of {KINDS}")
    spent = np.where(t >= 1, alpha, spent)  # exactly alpha at the end, not alpha up to rounding
    return float(spent) if spent.ndim == 0 else spent


def _simpson_grid(half_width: float, step_sd: float) -> Tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights on [-half_width, half_width] with a step of about ``_STEP * step_sd``."""
    intervals = int(min(_MAX_INTERVALS, max(16, math.ceil(2 * half_width / (_STEP * step_sd)))))
    intervals += intervals % 2  # Simpson needs an even number of intervals
    points = np.linspace(-half_width, half_width, intervals + 1)
    weights = np.ones(intervals + 1)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return points, weights * (points[1] - points[0]) / 3


def _exit_probability(mass: np.ndarray, s: np.ndarray, sd: float, bound: float) -> float:
    """P(still running at the previous look, and |S_k| >= bound now), S_k = s + N(0, sd^2) from each grid point."""
    return float(mass @ (special.ndtr((-bound - s) / sd) + special.ndtr((s - bound) / sd)))


def _solve_boundary(mass: np.ndarray, s: np.ndarray, sd: float, sqrt_t: float, target: float) -> float:
    """The z boundary whose exit probability at this look is ``target`` (the alpha this look may spend)."""
    # no alpha left, or so little that the boundary lies beyond |Z| = _TAIL: the look can never reject
    if target <= _exit_probability(mass, s, sd, _TAIL * sqrt_t):
        return np.inf
    return optimize.brentq(lambda c: _exit_probability(mass, s, sd, c * sqrt_t) - target, 0.0, _TAIL,
                           xtol=1e-10, rtol=1e-12)


def boundaries(fractions: Sequence[float], alpha: float = 0.05, kind: str = "obrien_fleming",
               published: Sequence[float] = ()) -> np.ndarray:
    """Two-sided z boundaries ``c_1..c_K`` for looks at increasing information fractions ``t_1 < ... < t_K``.

    ``c_k`` solves P(|Z_j| >= c_j for some j <= k | H0) = spending(min(t_k, 1)) for the canonical process
    (Cov(Z_i, Z_j) = sqrt(t_i / t_j)); it depends only on looks 1..k, so adding a look never moves an
    earlier boundary. A look with no alpha left to spend (an earlier look already reached t >= 1) gets
    ``inf``: it can never reject. ``published``: boundaries already announced for the first looks, used as
    they are (so a history's later looks are computed against what was actually published).

    Works on the score scale S_k = Z_k sqrt(t_k), a Brownian motion in t: the sub-density of S_k over the
    paths still running is the previous one convolved with the N(0, t_k - t_{k-1}) increment.
    """
    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or t.size == 0 or t[0] <= 0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"information fractions must be positive and strictly increasing, got {list(t)}")
    spent = spending(t, alpha, kind)
    c = np.empty(t.size)
    # look 1 in closed form: Z_1 is standard normal
    c[0] = published[0] if len(published) else stats.norm.isf(spent[0] / 2)
    half = min(c[0], _TAIL) * math.sqrt(t[0])
    s, w = _simpson_grid(half, math.sqrt(t[0]))
    density = stats.norm.pdf(s, scale=math.sqrt(t[0]))
    for k in range(1, t.size):
        sd = math.sqrt(t[k] - t[k - 1])
        mass = w * density  # probability weight of each grid point of the paths still running
        if k < len(published):
            c[k] = published[k]
        else:
            c[k] = _solve_boundary(mass, s, sd, math.sqrt(t[k]), spent[k] - spent[k - 1])
        half = min(c[k], _TAIL) * math.sqrt(t[k])
        nxt, w_next = _simpson_grid(half, sd)
        density = stats.norm.pdf((nxt[:, None] - s[None, :]) / sd) @ mass / sd
        s, w = nxt, w_next
    return c


def information_fraction(night: Optional[int] = None, users: Optional[float] = None,
                         planned_days: Optional[int] = None, planned_users: Optional[float] = None) -> float:
    """Information fraction of a look: ``users / planned_users`` with a user plan, else ``night / planned_days``.

    ``night`` is the 1-based count of days of data (the start date is night 1) and ``users`` the users so
    far in both arms. The user plan wins when both are given: the variance of the estimate shrinks with
    users, not with days, so a slow week gives less information than the calendar says. May exceed 1
    (the experiment runs past its plan); ``spending`` clips it.
    """
    if planned_users is not None:
        if users is None or planned_users <= 0:
            raise ValueError("information by users needs users so far and a positive planned_users")
        return float(users) / float(planned_users)
    if planned_days is not None:
        if night is None or planned_days <= 0:
            raise ValueError("information by days needs the night index and a positive planned_days")
        return float(night) / float(planned_days)
    raise ValueError("the design needs planned_days or planned_users to measure information")


def new_history(metric: str, start, planned_days: Optional[int] = None, planned_users: Optional[float] = None,
                alpha: float = 0.05, kind: str = "obrien_fleming", experiment: Optional[str] = None,
                treatment: Optional[str] = None, higher_is_better: bool = True) -> dict:
    """An empty look history; the design is fixed here and never changes afterwards.

    Schema (plain JSON types; a number that is not finite is stored as null)::

        {"schema": 1,
         "design": {"experiment": str|null, "treatment": str|null, "metric": str,
                    "alpha": float, "kind": "obrien_fleming"|"pocock",
                    "planned_days": int|null, "planned_users": float|null,
                    "information": "users"|"days",          # which plan measures information
                    "start": "YYYY-MM-DD",                 # night 1
                    "higher_is_better": bool},             # what "treatment better" means
         "looks": [{"date": "YYYY-MM-DD", "night": int, "users": int,
                    "fraction": float,                     # information fraction t_k
                    "alpha_spent": float,                  # spending(min(t_k, 1))
                    "boundary": float|null,                # c_k; null = no alpha left
                    "effect": float|null, "se": float|null, "z": float|null,  # relative effect
                    "lower": float|null, "upper": float|null,  # effect -/+ c_k se
                    "decision": str}, ...]}                # ordered by date, append-only

    ``decision`` is "continue", "reject H0: treatment better|worse" (kept at every later look) or
    "stopped: planned information reached, H0 not rejected" (the look at t >= 1, and every later one).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown spending function {kind!r}: use one of {KINDS}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if planned_days is None and planned_users is None:
        raise ValueError("the design needs planned_days or planned_users to measure information")
    return {
        "schema": SCHEMA_VERSION,
        "design": {
            "experiment": experiment, "treatment": treatment, "metric": metric, "alpha": float(alpha),
            "kind": kind, "planned_days": None if planned_days is None else int(planned_days),
            "planned_users": None if planned_users is None else float(planned_users),
            "information": "users" if planned_users is not None else "days",
            "start": _iso(start), "higher_is_better": bool(higher_is_better),
        },
        "looks": [],
    }


def _iso(day) -> str:
    """A date as YYYY-MM-DD, from a date or a string (rejecting anything else, e.g. a timestamp)."""
    if isinstance(day, dt.datetime):
        day = day.date()
    if isinstance(day, dt.date):
        return day.isoformat()
    return dt.date.fromisoformat(str(day)).isoformat()


def _number(x) -> Optional[float]:
    """A JSON-safe float: null instead of NaN or infinity (json would write non-standard tokens)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _decision(previous: Optional[str], z: Optional[float], c: float, fraction: float, higher_is_better: bool) -> str:
    # A rejection or a final analysis is a published outcome: later looks cannot take it back.
    if previous is not None and previous != "continue":
        return previous
    if z is not None and abs(z) >= c:
        return "reject H0: treatment better" if (z > 0) == higher_is_better else "reject H0: treatment worse"
    if fraction >= 1:
        return "stopped: planned information reached, H0 not rejected"
    return "continue"


def record_look(history: dict, date, n_c, mean_c, var_c, n_t, mean_t, var_t) -> Tuple[dict, dict]:
    """Add the look for ``date`` (the cumulative per-arm n, mean, sample variance up to that night).

    Returns ``(new_history, look)``; ``history`` itself is not modified. A date already recorded returns
    the recorded look and the history unchanged: a backfill re-running an old night must not rewrite a
    published decision. A date before the last look that is not recorded is refused (ValueError):
    inserting a look into the past would change boundaries already published. A skipped night needs
    nothing: the next look's fraction is simply further on.
    """
    design, looks = history["design"], history["looks"]
    day = _iso(date)
    for look in looks:
        if look["date"] == day:
            return history, look
    if looks and day < looks[-1]["date"]:
        raise ValueError(f"look for {day} is before the last recorded look ({looks[-1]['date']}) and was "
                         "never recorded: adding it would change boundaries already published")
    night = (dt.date.fromisoformat(day) - dt.date.fromisoformat(design["start"])).days + 1
    if night < 1:
        raise ValueError(f"look for {day} is before the experiment's start ({design['start']})")
    users = int(n_c) + int(n_t)
    fraction = information_fraction(night, users, design["planned_days"], design["planned_users"])
    if looks and fraction <= looks[-1]["fraction"]:
        raise ValueError(f"look for {day} has information fraction {fraction:.4g}, not above the last look's "
                         f"{looks[-1]['fraction']:.4g}: no new information to test")

    published = [np.inf if look["boundary"] is None else look["boundary"] for look in looks]
    c = float(boundaries([look["fraction"] for look in looks] + [fraction], design["alpha"], design["kind"],
                         published=published)[-1])
    rel = relative_delta(n_c, mean_c, var_c, n_t, mean_t, var_t)
    effect, se = _number(rel["effect"]), _number(rel["se"])
    z = effect / se if effect is not None and se else None
    half = c * se if se is not None and math.isfinite(c) else None
    look = {
        "date": day, "night": night, "users": users, "fraction": fraction,
        "alpha_spent": spending(fraction, design["alpha"], design["kind"]),
        "boundary": _number(c), "effect": effect, "se": se, "z": z,
        "lower": effect - half if half is not None and effect is not None else None,
        "upper": effect + half if half is not None and effect is not None else None,
        "decision": _decision(looks[-1]["decision"] if looks else None, z, c, fraction, design["higher_is_better"]),
    }
    new = copy.deepcopy(history)
    new["looks"].append(look)
    return new, copy.deepcopy(look)
