"""analyze_ab: botify event logs -> per-user metrics per treatment -> effects with CIs and a report.

The seed's ``analyze_results`` notebook as a job, in Spark SQL/DataFrame only
(no Python UDFs). Output, under ``<root>/ab/<experiment>/<run>/``:

- ``effects.csv``, ``effects.json``  every treatment vs control on every metric
- ``report.md``  the seminar table plus SRM and MDE lines (also printed to stdout)
- ``ab_results.png``  relative effects with CIs; session-time distribution per treatment
- ``user_metrics/``  Parquet, one row per analysed user (for re-analysis)
- ``_MANIFEST.json``, ``_SUCCESS``

and ``<root>/ab/<experiment>/LATEST`` names the run. Malformed lines go to
``<root>/quarantine/analyze_ab/<experiment>/<run>/``.

Sessions: per user, events ordered by (timestamp, next before last, track,
time); a session ends at (and includes) a ``last`` event. Events after a
user's final ``last`` form a *trailing* session: with ``ab.trailing_session:
drop`` (default) it is left out, because the log was cut while the user was
still listening and the partial session would bias length and time
downwards; with ``keep`` it counts as a session. Either way the count is
reported.

Treatment: ``experiments[<experiment>]`` of the user's events. Users whose
events carry no treatment, or more than one, are left out and counted.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import ab_stats, event_log
from common.config import ConfigError, load_config
from common.experiments import treatment_names
from common.manifest import write_manifest
from common.paths import resolve
from common.spark import add_job_arguments, get_session
from common.storage import HadoopStorage, atomic_output, join, write_pointer

log = logging.getLogger(__name__)

METRICS = ab_stats.METRICS
TRAILING_RULES = ("drop", "keep")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---- pure transforms (tested on tiny DataFrames) -------------------------------------------


def narrow_events(parsed: DataFrame, experiment: str) -> DataFrame:
    """Keep what the analysis needs from ``event_log.parse_lines`` output.

    The raw line and its file are kept only for malformed lines (quarantine),
    so caching the result costs a few numbers per event, not the JSON text.
    """
    bad = F.col("reason").isNotNull()
    return parsed.select(
        "reason",
        F.when(bad, F.col("line")).alias("line"),
        F.when(bad, F.col("source")).alias("source"),
        (F.col("message") == F.lit("last")).cast("int").alias("is_last"),
        "timestamp",
        "user",
        "track",
        "time",
        "latency",
        F.col("experiments").getItem(experiment).alias("treatment"),
    )


def sessionize(events: DataFrame, dedupe: bool = True) -> DataFrame:
    """One row per (user, session) from events with is_last, timestamp, user, track, time, latency, treatment.

    Columns: user, session (0, 1, ... in time order), treatment (the user's
    single treatment, else null), status (``ok`` / ``no_treatment`` /
    ``conflicting_treatment``), complete (ended by ``last``), length (events),
    time (sum of listening time), latency_sum, latency_n (events with a latency),
    start (timestamp of the first event).

    One shuffle: every window shares the partitioning by user, and exact
    duplicates (a log uploaded twice) are adjacent in the window's order, so
    they are dropped by comparing with the previous row.
    """
    order = ["timestamp", "is_last", "track", "time"]
    by_user = Window.partitionBy("user")
    ordered = by_user.orderBy(*order)
    if dedupe:
        same_as_previous = F.lit(True)
        for column in order:
            same_as_previous = same_as_previous & (F.lag(column).over(ordered) == F.col(column))
        events = (
            events.withColumn("_dup", F.coalesce(same_as_previous, F.lit(False)))
            .where(~F.col("_dup"))
            .drop("_dup")
        )
    before = ordered.rowsBetween(Window.unboundedPreceding, -1)
    with_session = (
        events.withColumn("session", F.coalesce(F.sum("is_last").over(before), F.lit(0)).cast("int"))
        .withColumn("_lasts", F.sum("is_last").over(by_user).cast("int"))
        .withColumn("_t_min", F.min("treatment").over(by_user))
        .withColumn("_t_max", F.max("treatment").over(by_user))
    )
    status = (
        F.when(F.col("_t_min").isNull(), F.lit("no_treatment"))
        .when(F.col("_t_min") != F.col("_t_max"), F.lit("conflicting_treatment"))
        .otherwise(F.lit("ok"))
    )
    return (
        with_session.groupBy("user", "session")
        .agg(
            F.first("_t_min").alias("_t_min"),
            F.first("_t_max").alias("_t_max"),
            F.first("_lasts").alias("_lasts"),
            F.count(F.lit(1)).alias("length"),
            F.sum("time").alias("time"),
            F.sum("latency").alias("latency_sum"),
            F.count("latency").alias("latency_n"),
            F.min("timestamp").alias("start"),
        )
        .select(
            "user",
            "session",
            F.when(status == "ok", F.col("_t_min")).alias("treatment"),
            status.alias("status"),
            (F.col("session") < F.col("_lasts")).alias("complete"),
            "length",
            "time",
            "latency_sum",
            "latency_n",
            "start",
        )
    )


def analysed_sessions(sessions: DataFrame, trailing: str) -> DataFrame:
    if trailing not in TRAILING_RULES:
        raise ConfigError(f"ab.trailing_session must be one of {TRAILING_RULES}, got {trailing!r}")
    kept = sessions.where(F.col("status") == "ok")
    return kept if trailing == "keep" else kept.where(F.col("complete"))


def user_metrics(sessions: DataFrame) -> DataFrame:
    """The seed notebook's user-level metrics (one row per user).

    sessions: number of sessions; mean_session_length: mean events per session;
    mean_session_time: mean of the summed listening time per session;
    mean_request_time: mean latency over the user's requests that logged one
    (null when none did, so the user drops out of that metric only).
    """
    return sessions.groupBy("user", "treatment").agg(
        F.count(F.lit(1)).alias("sessions"),
        F.avg("length").alias("mean_session_length"),
        F.avg("time").alias("mean_session_time"),
        (F.sum("latency_sum") / F.sum("latency_n")).alias("mean_request_time"),
    )


def summarize(users: DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """n, mean and sample variance per (treatment, metric): all the statistics need."""
    aggs = [F.count(F.lit(1)).alias("users")]
    for m in metrics:
        aggs += [F.count(m).alias(f"{m}__n"), F.avg(m).alias(f"{m}__mean"), F.var_samp(m).alias(f"{m}__var")]
    rows = users.groupBy("treatment").agg(*aggs).collect()
    out = []
    for row in rows:
        for m in metrics:
            out.append({
                "treatment": row["treatment"],
                "metric": m,
                "users": int(row["users"]),
                "n": int(row[f"{m}__n"]),
                "mean": float(row[f"{m}__mean"]) if row[f"{m}__mean"] is not None else float("nan"),
                "var": float(row[f"{m}__var"]) if row[f"{m}__var"] is not None else float("nan"),
            })
    return pd.DataFrame(out, columns=["treatment", "metric", "users", "n", "mean", "var"]).sort_values(
        ["treatment", "metric"], kind="stable", ignore_index=True
    )


def session_time_histogram(sessions: DataFrame, bins: int, top: Optional[float] = None) -> pd.DataFrame:
    """Counts of session time per treatment on ``bins`` equal bins up to ``top`` (default: the 99th
    percentile); the last bin is open-ended."""
    if top is None:
        top = sessions.agg(F.percentile_approx("time", 0.99).alias("p99")).first()["p99"]
    width = max(float(top or 0.0), 1e-9) / bins
    b = F.least(F.floor(F.col("time") / F.lit(width)).cast("int"), F.lit(bins - 1))
    rows = sessions.groupBy("treatment", b.alias("bin")).count().collect()
    frame = pd.DataFrame([r.asDict() for r in rows], columns=["treatment", "bin", "count"])
    frame["left"] = frame["bin"] * width
    frame["width"] = width
    return frame.sort_values(["treatment", "bin"], ignore_index=True)


# ---- report ---------------------------------------------------------------------------------


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


REPORT_COLUMNS = ["treatment", "metric", "effect", "lower", "upper", "control_mean", "treatment_mean", "significant"]


def render_report(experiment: str, control: str, run_id: str, effects: pd.DataFrame, srm: dict,
                  facts: dict, alpha: float, power: float) -> str:
    n_tests = int(effects["p_value"].notna().sum())
    srm_state = "**SAMPLE RATIO MISMATCH: the split is not what was planned; do not trust the effects**" if srm["mismatch"] else "OK"
    observed = ", ".join(f"{k} {v}" for k, v in srm["observed"].items())
    unexpected = "".join(f", unexpected {k} {v}" for k, v in srm["unexpected_treatments"].items())
    lines = [
        f"# A/B experiment {experiment}: run {run_id}",
        "",
        f"Control {control}. {facts['events']} events, {facts['analysed_sessions']} sessions, "
        f"{facts['analysed_users']} users analysed; {facts['lines']} lines read, {facts['malformed_lines']} malformed "
        f"(quarantined), {facts['duplicates_dropped']} duplicates dropped, {facts['trailing_sessions']} trailing "
        f"sessions without `last` ({facts['trailing_rule']}), {facts['excluded_users']} users without a single treatment left out.",
        "",
        markdown_table(effects, REPORT_COLUMNS),
        "",
        f"effect, lower, upper: relative effect in % of the control mean with its {1 - alpha:.0%} CI (delta method, "
        f"not adjusted); significant: Welch t-test p-value after Holm's correction over {n_tests} tests < {alpha}.",
        "",
        f"SRM: users {observed}{unexpected}; chi2 = {srm['chi2']:.3f}, p = {srm['p_value']:.4g} "
        f"(flag below {srm['alpha']}): {srm_state}",
        "",
    ]
    for treatment, group in effects.groupby("treatment", sort=True):
        parts = ", ".join(f"{r.metric} ±{_fmt(r.mde_rel, 3)}% ({_fmt(r.mde_abs, 3)})" for r in group.itertuples())
        lines.append(f"MDE ({power:.0%} power, alpha {alpha}) {treatment} vs {control}: {parts}")
    return "\n".join(lines) + "\n"


def render_plot(effects: pd.DataFrame, histogram: pd.DataFrame, experiment: str, control: str) -> bytes:
    # Figure without pyplot: no global backend state, safe on a headless driver.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.8), dpi=100)
    ax_eff, ax_hist = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    treatments = sorted(effects["treatment"].unique())
    metrics = list(dict.fromkeys(effects["metric"]))
    height = 0.8 / max(len(treatments), 1)
    for i, treatment in enumerate(treatments):
        rows = effects[effects["treatment"] == treatment].set_index("metric").reindex(metrics)
        y = np.arange(len(metrics)) + (i - (len(treatments) - 1) / 2) * height
        colors = ["tab:red" if s else "tab:blue" for s in rows["significant"].fillna(False)]
        ax_eff.hlines(y, rows["lower"], rows["upper"], colors=colors, lw=2)
        ax_eff.scatter(rows["effect"], y, c=colors, zorder=3)
        for yi, x in zip(y, rows["upper"]):
            ax_eff.annotate(str(treatment), (x, yi), xytext=(4, -3), textcoords="offset points", fontsize=8)
    ax_eff.axvline(0, color="grey", lw=1)
    ax_eff.set_yticks(np.arange(len(metrics)), metrics)
    ax_eff.set_xlabel("relative effect, % (red: significant after Holm)")
    ax_eff.set_title(f"{experiment}: effects with CIs")
    for treatment, group in histogram.groupby("treatment", sort=True):
        density = (group["count"] / group["count"].sum() / group["width"]).to_list()
        edges = group["left"].to_list() + [group["left"].iloc[-1] + group["width"].iloc[-1]]
        ax_hist.step(edges, density + density[-1:], where="post", label=str(treatment))
    ax_hist.set_xlabel("session time (sum of track time shares; last bin open-ended)")
    ax_hist.set_ylabel("density")
    ax_hist.set_title("session time by treatment")
    ax_hist.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ---- I/O --------------------------------------------------------------------------------------


def _jsonable(value):
    """Strict JSON: numpy scalars to Python, NaN (an undefined statistic) to null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def expected_shares(settings: dict) -> Dict[str, float]:
    weights = settings.get("weights")
    if weights:
        if isinstance(weights, dict):
            return {str(k): float(v) for k, v in weights.items()}
        return dict(zip(treatment_names(len(weights)), map(float, weights)))
    return {name: 1.0 for name in treatment_names(int(settings["split"]))}


def run(spark: SparkSession, config: dict, input_uri: str, experiment: str, control: str, run_id: str) -> dict:
    settings = config["ab"]
    if not _NAME.match(experiment):
        raise ConfigError(f"experiment name {experiment!r}: letters, digits, '.', '_', '-' only (it names the output directory)")
    alpha, power = float(settings["alpha"]), float(settings["power"])
    trailing = str(settings["trailing_session"])
    if trailing not in TRAILING_RULES:
        raise ConfigError(f"ab.trailing_session must be one of {TRAILING_RULES}, got {trailing!r}")
    root = resolve(config, "")
    storage = HadoopStorage(spark)

    events = narrow_events(event_log.parse_lines(event_log.read_lines(spark, input_uri)), experiment).persist()
    total, malformed = event_log.count_reasons(events)
    log.info("read %d lines from %s, %d malformed", total, input_uri, sum(malformed.values()))
    quarantine_uri = join(root, "quarantine", "analyze_ab", experiment, run_id)
    if malformed:
        with atomic_output(storage, quarantine_uri) as tmp:
            events.where(F.col("reason").isNotNull()).select("reason", "source", "line").write.mode("overwrite").json(join(tmp, "lines"))
        log.warning("quarantined %s -> %s", malformed, quarantine_uri)
    event_log.check_error_ratio(total, malformed, float(settings["max_error_ratio"]), input_uri)

    valid = events.where(F.col("reason").isNull()).drop("reason", "line", "source")
    sessions = sessionize(valid, bool(settings.get("dedupe", True))).persist()
    counts = {
        (r["status"], r["complete"]): r
        for r in sessions.groupBy("status", "complete")
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum("length").alias("events"), F.countDistinct("user").alias("users"),
             F.percentile_approx("time", 0.99).alias("p99"))
        .collect()
    }
    kept = analysed_sessions(sessions, trailing)
    users = user_metrics(kept).persist()
    summary = summarize(users)
    if summary.empty:
        raise ConfigError(f"{input_uri}: no users with a treatment in experiment {experiment!r} and a complete session "
                          f"(is the experiment name right?)")
    per_treatment = summary.drop_duplicates("treatment").set_index("treatment")["users"].to_dict()
    if control not in per_treatment:
        raise ConfigError(f"control {control!r} has no users in experiment {experiment!r}; treatments seen: {sorted(per_treatment)}")
    effects = ab_stats.compare(summary, control, alpha=alpha, power=power, metrics=METRICS)
    srm = ab_stats.srm(per_treatment, expected_shares(settings), float(settings["srm_alpha"]))
    # The histogram's range from the same pass that counted sessions (p99 of the analysed groups).
    top = max((float(r["p99"]) for (status, complete), r in counts.items()
               if status == "ok" and (complete or trailing == "keep") and r["p99"] is not None), default=None)
    histogram = session_time_histogram(kept, int(settings["histogram_bins"]), top)

    valid_events = total - sum(malformed.values())
    all_events = sum(int(r["events"]) for r in counts.values())
    ok_sessions = [r for (status, _), r in counts.items() if status == "ok"]
    facts = {
        "lines": total,
        "malformed_lines": sum(malformed.values()),
        "duplicates_dropped": valid_events - all_events,
        "events": int(sum(int(r["events"]) for r in ok_sessions if r["complete"] or trailing == "keep")),
        "analysed_sessions": int(sum(int(r["sessions"]) for r in ok_sessions if r["complete"] or trailing == "keep")),
        "analysed_users": int(sum(per_treatment.values())),
        "trailing_sessions": int(sum(int(r["sessions"]) for (s, c), r in counts.items() if not c)),
        "trailing_rule": trailing,
        "excluded_users": {
            status: int(sum(int(r["users"]) for (s, _), r in counts.items() if s == status))
            for status in ("no_treatment", "conflicting_treatment")
        },
    }
    facts_for_report = dict(facts, excluded_users=sum(facts["excluded_users"].values()))
    report = render_report(experiment, control, run_id, effects, srm, facts_for_report, alpha, power)
    png = render_plot(effects, histogram, experiment, control)
    effects_json = json.dumps(
        _jsonable({"experiment": experiment, "control": control, "run": run_id, "alpha": alpha, "power": power,
                   "srm": srm, "facts": facts, "summary": summary.to_dict(orient="records"),
                   "effects": effects.to_dict(orient="records")}),
        indent=2, allow_nan=False,
    )

    final = join(root, "ab", experiment, run_id)
    with atomic_output(storage, final) as tmp:
        storage.write_text(join(tmp, "effects.csv"), effects.to_csv(index=False))
        storage.write_text(join(tmp, "effects.json"), effects_json)
        storage.write_text(join(tmp, "report.md"), report)
        storage.write_bytes(join(tmp, "ab_results.png"), png)
        users.write.mode("overwrite").parquet(join(tmp, "user_metrics"))
        manifest = write_manifest(storage, tmp, {
            "job": "analyze_ab",
            "experiment": experiment,
            "control": control,
            "run": run_id,
            "input": input_uri,
            "malformed": malformed,
            "quarantine": quarantine_uri if malformed else None,
            **facts,
            "users_per_treatment": per_treatment,
            "srm_mismatch": srm["mismatch"],
            "significant": [f"{r.treatment}:{r.metric}" for r in effects.itertuples() if r.significant],
            "files": ["effects.csv", "effects.json", "report.md", "ab_results.png", "user_metrics"],
        })
    write_pointer(storage, join(root, "ab", experiment, "LATEST"), run_id)
    for df in (events, sessions, users):
        df.unpersist()
    log.info("A/B %s: %s", final, {k: manifest[k] for k in ("events", "analysed_users", "srm_mismatch")})
    return {"uri": final, "manifest": manifest, "effects": effects, "summary": summary, "srm": srm, "report": report}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="analyze_ab", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--experiment", help="experiment name in the events' experiments map (default: ab.experiment)")
    parser.add_argument("--control", help="control treatment (default: ab.control)")
    parser.add_argument("--input", help="event logs URI, directory or glob (default: datasets.ab_events)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    experiment = args.experiment or str(config["ab"]["experiment"])
    control = args.control or str(config["ab"]["control"])
    input_uri = resolve(config, args.input or config["datasets"]["ab_events"])
    spark = get_session("analyze_ab", args.profile)
    result = run(spark, config, input_uri, experiment, control, args.run)
    print(result["report"])
    print(json.dumps({"output": result["uri"], "srm_mismatch": result["srm"]["mismatch"],
                      "significant": result["manifest"]["significant"]}))
    return 0
