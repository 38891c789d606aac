"""Bench: the nightly A/B report read every night, with and without the group-sequential design.

    .venv/bin/python bench/sequential_aa.py [--experiments 20000] [--nights 14] [--users 500]
                                            [--power-users 800] [--effect 0.05] [--distribution lognormal]

No Spark: each simulated experiment adds ``--users`` users per arm per night
with a skewed session time (testkit/ab_simulation.py), and each night's look
sees the cumulative per-arm n, mean and variance, as the job's report does.
30% of the experiments skip one night's report. Three readers of the same
nights: the sequential design of common/sequential_ab.py (Lan–DeMets
O'Brien–Fleming spending over ``--nights`` planned days), a reader who takes
the fixed-horizon 95% interval every night and stops at the first
significant one, and one who reads it once at the end.

The A/A run gives each reader's false-positive rate; the power run (treatment
mean +``--effect``, ``--power-users`` users per arm per night: 800 puts the
fixed-horizon power near 80% on this lognormal, about 1.05 x 1.31 x sqrt(2 / 11200)
of relative se at the end) gives the power the sequential design gives up for
being allowed to stop early. Prints one line.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from testkit.ab_simulation import rejections, simulate_nightly, skipped_nights  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=20_000)
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument("--users", type=int, default=500, help="users per arm per night in the A/A run")
    parser.add_argument("--power-users", type=int, default=800, help="users per arm per night in the power run")
    parser.add_argument("--effect", type=float, default=0.05, help="relative effect on the mean in the power run")
    parser.add_argument("--distribution", default="lognormal", choices=("lognormal", "exponential"))
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    skipped = skipped_nights(args.experiments, args.nights, seed=args.seed + 1)
    aa = rejections(simulate_nightly(args.experiments, args.nights, args.users, 0.0, args.distribution, args.seed),
                    skipped)
    power = rejections(simulate_nightly(args.experiments, args.nights, args.power_users, args.effect,
                                        args.distribution, args.seed + 2), skipped)
    false_positives = int(aa["sequential"].sum())
    upper = proportion_confint(false_positives, args.experiments, alpha=0.01, method="beta")[1]
    sequential, peeking = aa["sequential"].mean(), aa["fixed_nightly"].mean()
    print(f"sequential_aa: {args.experiments} A/A x {args.nights} looks ({args.distribution}, "
          f"{args.users} users/arm/night, {np.mean(skipped > 0):.0%} skip a night): sequential FPR {sequential:.2%} (99% CP upper {upper:.2%}), "
          f"fixed-horizon read nightly FPR {peeking:.2%} (x{peeking / sequential:.1f}), "
          f"fixed-horizon at end {aa['fixed_end'].mean():.2%}; power on {args.effect:+.0%} "
          f"({args.power_users} users/arm/night): sequential {power['sequential'].mean():.1%}, "
          f"fixed-horizon-at-end {power['fixed_end'].mean():.1%}; {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
