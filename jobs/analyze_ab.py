"""analyze_ab: botify event logs -> per-user metrics per treatment -> effects with CIs and a report.

The original course's ``analyze_results`` notebook as a job, in Spark SQL/DataFrame only
(no Python UDFs). Output, under ``<root>/ab/<experiment>/<run>/``:

- ``effects.csv``, ``effects.json``  every treatment vs control on every metric
- ``report.md``  the seminar table plus SRM and MDE lines (also printed to stdout)
- ``ab_results.png``  relative effects with CIs; session-time distribution per treatment
- ``user_metrics/``  Parquet, one row per analysed user (for re-analysis)
- ``_MANIFEST.json``, ``_SUCCESS``

and ``<root>/ab/<experiment>/LATEST`` names the run. The input (and CUPED's
pre-period) is either staged events (``events/<dataset>`` from stage_events:
Parquet, validated and deduplicated once; the counts reported are staging's)
or raw JSON logs, whose malformed lines go to
``<root>/quarantine/analyze_ab/<experiment>/<run>/``.

Sessions (:mod:`common.sessions`, the rule extract_interactions uses too):
per user, events ordered by timestamp, a ``next`` before a ``last`` in the
same millisecond; a session ends at (and includes) a ``last`` event; exact
duplicate events (``ab.dedupe``) count once. Events after a
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
import datetime as dt
import io
import json
import logging
import re
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import ab_stats, event_log_reader, run_record, sequential_report
from common.config import ConfigError, load_config, load_yaml
from common.experiments import treatment_names
from common.manifest import write_manifest
from common.paths import resolve
from common.report import format_value, jsonable, markdown_table
from common.sessions import drop_duplicate_events, with_sessions
from common.spark import add_job_arguments, add_window_arguments, get_session, window_of
from common.storage import HadoopStorage, atomic_output, join, write_pointer

log = logging.getLogger(__name__)

METRICS = ab_stats.METRICS
TRAILING_RULES = ("drop", "keep")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---- pure transforms (tested on tiny DataFrames) -------------------------------------------


def with_treatment(events: DataFrame, experiment: str) -> DataFrame:
    """Add ``treatment``: the event's arm in ``experiment`` (null when it carries none)."""
    return events.withColumn("treatment", F.col("experiments").getItem(experiment))


def sessionize(events: DataFrame, dedupe: bool = True) -> DataFrame:
    """One row per (user, session) from events (the event log's fields plus ``treatment``).

    Columns: user, session (0, 1, ... in time order), treatment (the user's
    single treatment, else null), status (``ok`` / ``no_treatment`` /
    ``conflicting_treatment``), complete (ended by ``last``), length (events),
    time (sum of listening time), latency_sum, latency_n (events with a latency),
    start (timestamp of the first event). Order, duplicates and boundaries:
    :mod:`common.sessions`. One shuffle: every window partitions by user.
    """
    if dedupe:
        events = drop_duplicate_events(events)
    by_user = Window.partitionBy("user")
    is_last = (F.col("message") == "last").cast("int")
    labelled = (
        with_sessions(events)
        .withColumn("_lasts", F.sum(is_last).over(by_user).cast("int"))
        .withColumn("_t_min", F.min("treatment").over(by_user))
        .withColumn("_t_max", F.max("treatment").over(by_user))
    )
    return _session_rows(labelled)


def _session_rows(labelled: DataFrame) -> DataFrame:
    """Collapse events labelled with session, _lasts and the user's treatment range into sessions."""
    status = (
        F.when(F.col("_t_min").isNull(), F.lit("no_treatment"))
        .when(F.col("_t_min") != F.col("_t_max"), F.lit("conflicting_treatment"))
        .otherwise(F.lit("ok"))
    )
    return (
        labelled.groupBy("user", "session")
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
    """The course notebook's user-level metrics (one row per user).

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


def user_covariates(events: DataFrame, trailing: str, dedupe: bool = True) -> DataFrame:
    """Each user's metrics in a pre-period (whatever arm they were in then): ``user`` and ``pre_<metric>``.

    The same sessions and metrics as the experiment's own, so CUPED's covariate
    is the metric itself measured before the experiment.
    """
    sessions = analysed_sessions(sessionize(events.withColumn("treatment", F.lit("pre")), dedupe), trailing)
    return user_metrics(sessions).select("user", *[F.col(m).alias(f"pre_{m}") for m in METRICS])


def cuped_sums(users: DataFrame, covariates: DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """``ab_stats.CUPED_SUMS`` per (treatment, metric) over the analysed users, in one aggregation.

    A user without pre-period data (new, or silent then) has a null covariate:
    counted in ``n`` and ``sum_y_nox``, left out of the covariate sums.
    """
    joined = users.join(covariates, "user", "left")
    aggs = []
    for m in metrics:
        y, x = F.col(m), F.col(f"pre_{m}")
        both = y.isNotNull() & x.isNotNull()
        aggs += [F.count(y).alias(f"{m}__n"), F.count(F.when(both, 1)).alias(f"{m}__n_x"),
                 F.sum(y).alias(f"{m}__sum_y"), F.sum(y * y).alias(f"{m}__sum_yy"),
                 F.sum(F.when(both, x)).alias(f"{m}__sum_x"), F.sum(F.when(both, x * x)).alias(f"{m}__sum_xx"),
                 F.sum(F.when(both, x * y)).alias(f"{m}__sum_xy"),
                 F.sum(F.when(y.isNotNull() & x.isNull(), y)).alias(f"{m}__sum_y_nox")]
    rows = joined.groupBy("treatment").agg(*aggs).collect()
    return pd.DataFrame([{"treatment": row["treatment"], "metric": m,
                          **{c: float(row[f"{m}__{c}"] or 0) for c in ab_stats.CUPED_SUMS}}
                         for row in rows for m in metrics])


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
        parts = ", ".join(f"{r.metric} ±{format_value(r.mde_rel, 3)}% ({format_value(r.mde_abs, 3)})" for r in group.itertuples())
        lines.append(f"MDE ({power:.0%} power, alpha {alpha}) {treatment} vs {control}: {parts}")
    return "\n".join(lines) + "\n"


def render_cuped(cuped: dict, control: str, alpha: float) -> str:
    """The CUPED section of the report: adjusted effects, and how much variance the covariate removed."""
    n_tests = int(cuped["effects"]["p_value"].notna().sum())
    variance = cuped["variance"]
    return "\n".join([
        f"## CUPED (covariate: each user's metric in {cuped['pre_input']})",
        "",
        markdown_table(cuped["effects"], REPORT_COLUMNS),
        "",
        f"Same tests on Y - theta (X - mean X), theta = cov(Y, X) / var(X) pooled over all arms; Holm over these {n_tests} "
        f"tests < {alpha}. Users without pre-period data keep their own value (X set to the mean).",
        "",
        markdown_table(variance, ["metric", "variance_reduction", "theta", "users_with_pre", "users"]),
        "",
    ])


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


def expected_shares(settings: dict, experiment: str) -> Dict[str, float]:
    """The planned arms and shares the SRM test checks against.

    ``ab.weights`` or ``ab.split`` when set; otherwise the split botify assigned
    users with: ``experiments.<experiment>.split`` in ``ab.definitions``
    (conf/botify.yml), so a 3-arm experiment is tested as 3 arms without a flag.
    """
    weights = settings.get("weights")
    if weights:
        if isinstance(weights, dict):
            return {str(k): float(v) for k, v in weights.items()}
        return dict(zip(treatment_names(len(weights)), map(float, weights)))
    split = settings.get("split")
    if split is None:
        definitions = load_yaml(str(settings.get("definitions", "botify.yml"))).get("experiments") or {}
        if experiment not in definitions:
            raise ConfigError(f"experiment {experiment!r} is not defined in {settings.get('definitions', 'botify.yml')} "
                              f"(defined: {sorted(definitions)}); set ab.split or ab.weights for its planned arms")
        split = definitions[experiment]["split"]
    if isinstance(split, bool) or not isinstance(split, int) or split < 2:
        raise ConfigError(f"the planned split of {experiment!r} must be an integer >= 2, got {split!r}")
    return {name: 1.0 for name in treatment_names(split)}


def check_names(settings: dict, experiment: str) -> str:
    """The trailing-session rule, after checking it and the experiment name (it names the output directory)."""
    if not _NAME.match(experiment):
        raise ConfigError(f"experiment name {experiment!r}: letters, digits, '.', '_', '-' only (it names the output directory)")
    trailing = str(settings["trailing_session"])
    if trailing not in TRAILING_RULES:
        raise ConfigError(f"ab.trailing_session must be one of {TRAILING_RULES}, got {trailing!r}")
    return trailing


def count_sessions(sessions: DataFrame) -> dict:
    """(status, complete) -> sessions, events, users and p99 session time, in one pass.

    A user's sessions share a status, the complete ones are numbered 0, 1, ...
    and only the last one can be incomplete, so the users of a group are its
    sessions that are the user's first there: session 0 if complete, else the
    one trailing session. Counting those instead of distinct users keeps the
    aggregation keyed by the group alone (a distinct count would first group
    by user, with a percentile sketch per user).
    """
    users = F.count(F.when((F.col("session") == 0) | ~F.col("complete"), 1)).alias("users")
    return {
        (r["status"], r["complete"]): r
        for r in sessions.groupBy("status", "complete")
        .agg(F.count(F.lit(1)).alias("sessions"), F.sum("length").alias("events"), users,
             F.percentile_approx("time", 0.99).alias("p99"))
        .collect()
    }


def session_facts(counts: dict, loaded: event_log_reader.LoadedEvents, trailing: str, analysed_users: int) -> dict:
    """The counts the report and the manifest state, from :func:`count_sessions`."""
    analysed = [r for (status, complete), r in counts.items() if status == "ok" and (complete or trailing == "keep")]
    return {
        "lines": loaded.lines,
        "malformed_lines": sum(loaded.malformed.values()),
        "duplicates_dropped": loaded.valid_lines - sum(int(r["events"]) for r in counts.values()),
        "events": int(sum(int(r["events"]) for r in analysed)),
        "analysed_sessions": int(sum(int(r["sessions"]) for r in analysed)),
        "analysed_users": analysed_users,
        "trailing_sessions": int(sum(int(r["sessions"]) for (_, complete), r in counts.items() if not complete)),
        "trailing_rule": trailing,
        "excluded_users": {
            status: int(sum(int(r["users"]) for (s, _), r in counts.items() if s == status))
            for status in ("no_treatment", "conflicting_treatment")
        },
    }


def compare_arms(users: DataFrame, settings: dict, input_uri: str, experiment: str, control: str):
    """(summary, per-treatment users, effects, SRM check) for the analysed users."""
    summary = summarize(users)
    if summary.empty:
        raise ConfigError(f"{input_uri}: no users with a treatment in experiment {experiment!r} and a complete session "
                          f"(is the experiment name right?)")
    per_treatment = summary.drop_duplicates("treatment").set_index("treatment")["users"].to_dict()
    if control not in per_treatment:
        raise ConfigError(f"control {control!r} has no users in experiment {experiment!r}; treatments seen: {sorted(per_treatment)}")
    effects = ab_stats.compare(summary, control, alpha=float(settings["alpha"]), power=float(settings["power"]),
                               metrics=METRICS)
    srm = ab_stats.srm(per_treatment, expected_shares(settings, experiment), float(settings["srm_alpha"]))
    return summary, per_treatment, effects, srm


def cuped_analysis(spark: SparkSession, storage: HadoopStorage, settings: dict, users: DataFrame, control: str,
                   pre_uri: str, quarantine_uri: str, trailing: str) -> dict:
    """Effects with CUPED from the pre-period logs at ``pre_uri`` (their bad lines quarantined like the A/B's)."""
    pre = event_log_reader.load(spark, storage, pre_uri, quarantine_uri, float(settings["max_error_ratio"]),
                         dedupe=bool(settings.get("dedupe", True)))
    covariates = user_covariates(pre.events, trailing, dedupe=False)  # load dropped the copies
    adjusted, variance = ab_stats.cuped(cuped_sums(users, covariates))
    effects = ab_stats.compare(adjusted, control, alpha=float(settings["alpha"]), power=float(settings["power"]),
                               metrics=METRICS)
    pre.release()
    return {"pre_input": pre_uri, "pre_lines": pre.lines, "pre_malformed": pre.malformed, "effects": effects,
            "variance": variance}


def experiment_definition(settings: dict, experiment: str) -> dict:
    """The experiment's entry in ``ab.definitions`` (conf/botify.yml), {} when it has none."""
    definitions = load_yaml(str(settings.get("definitions", "botify.yml"))).get("experiments") or {}
    return dict(definitions.get(experiment) or {})


def experiment_window(definition: dict, window: Optional[tuple]) -> Optional[tuple]:
    """The dates analysed: from the experiment's ``start`` (unless --from-date says otherwise) to --to-date."""
    first, last = window or (None, None)
    start = definition.get("start")
    first = first or (None if start is None else str(start))
    return (first, last) if first or last else None


def first_event_date(labelled: DataFrame) -> Optional[str]:
    """The UTC date of the first event that carries a treatment of the experiment."""
    first = labelled.where(F.col("treatment").isNotNull()).agg(F.min("timestamp").alias("t")).first()["t"]
    return None if first is None else dt.datetime.fromtimestamp(first / 1000, dt.timezone.utc).date().isoformat()


def sequential_night(storage: HadoopStorage, root: str, experiment: str, control: str, design: dict, summary,
                     alpha: float, night: str, labelled: DataFrame) -> tuple:
    """Record tonight's looks in the experiment's history; (histories, notes, history uri)."""
    uri = join(root, "ab", experiment, sequential_report.HISTORY)
    histories = json.loads(storage.read_text(uri)) if storage.exists(uri) else {}
    # Without a configured start the experiment starts on the first date it appears.
    start = design["start"] or first_event_date(labelled)
    histories, notes = sequential_report.record_night(histories, design, start, night, summary, control, alpha,
                                                      experiment)
    return histories, notes, uri


def run(spark: SparkSession, config: dict, input_uri: str, experiment: str, control: str, run_id: str,
        pre_uri: Optional[str] = None, window: Optional[tuple] = None) -> dict:
    """The analysis over the experiment's window; with ``pre_uri`` (pre-period event logs) also the
    CUPED-adjusted effects; when the experiment plans its length, also tonight's sequential look."""
    settings = config["ab"]
    trailing = check_names(settings, experiment)
    alpha, power = float(settings["alpha"]), float(settings["power"])
    root = resolve(config, "")
    storage = HadoopStorage(spark)
    definition = experiment_definition(settings, experiment)
    window = experiment_window(definition, window)
    loaded = event_log_reader.load(spark, storage, input_uri, join(root, "quarantine", "analyze_ab", experiment, run_id),
                            float(settings["max_error_ratio"]), dedupe=bool(settings.get("dedupe", True)),
                            window=window)
    sessions = sessionize(with_treatment(loaded.events, experiment), dedupe=False).persist()  # load dropped the copies
    with run_record.stage("sessions"):
        counts = count_sessions(sessions)
    kept = analysed_sessions(sessions, trailing)
    users = user_metrics(kept).persist()
    with run_record.stage("effects"):
        summary, per_treatment, effects, srm = compare_arms(users, settings, input_uri, experiment, control)
    # The histogram's range from the same pass that counted sessions (p99 of the analysed groups).
    top = max((float(r["p99"]) for (status, complete), r in counts.items()
               if status == "ok" and (complete or trailing == "keep") and r["p99"] is not None), default=None)
    histogram = session_time_histogram(kept, int(settings["histogram_bins"]), top)
    facts = session_facts(counts, loaded, trailing, int(sum(per_treatment.values())))
    report = render_report(experiment, control, run_id, effects, srm,
                           dict(facts, excluded_users=sum(facts["excluded_users"].values())), alpha, power)
    design = sequential_report.design_of(definition)
    night = (window or (None, None))[1] or (max(loaded.dates) if loaded.dates else None)
    histories, notes, history_uri = {}, [], None
    if design and night:
        histories, notes, history_uri = sequential_night(storage, root, experiment, control, design, summary, alpha,
                                                         night, with_treatment(loaded.events, experiment))
        report += "\n" + sequential_report.render(histories, control, notes)
    cuped = None
    if pre_uri:
        cuped = cuped_analysis(spark, storage, settings, users, control, pre_uri,
                               join(root, "quarantine", "analyze_ab", experiment, run_id, "pre"), trailing)
        report += "\n" + render_cuped(cuped, control, alpha)
    effects_json = json.dumps(
        jsonable({"experiment": experiment, "control": control, "run": run_id, "alpha": alpha, "power": power,
                  "srm": srm, "facts": facts, "summary": summary.to_dict(orient="records"),
                  "effects": effects.to_dict(orient="records"),
                  "cuped": cuped and {"pre_input": pre_uri, "variance": cuped["variance"].to_dict(orient="records"),
                                      "effects": cuped["effects"].to_dict(orient="records")}}),
        indent=2, allow_nan=False,
    )
    files = {"effects.csv": effects.to_csv(index=False), "effects.json": effects_json, "report.md": report,
             "ab_results.png": render_plot(effects, histogram, experiment, control)}
    if cuped:
        files["effects_cuped.csv"] = cuped["effects"].to_csv(index=False)
    if histories:
        files["sequential.json"] = json.dumps(histories, indent=2, allow_nan=False)
        files["sequential.png"] = sequential_report.plot(histories, experiment, control)
    manifest = {
        "job": "analyze_ab", "experiment": experiment, "control": control, "run": run_id, "input": input_uri,
        "malformed": loaded.malformed, "quarantine": loaded.quarantine, **facts,
        "window": list(window) if window else None,
        "sequential": {t: h["looks"][-1]["decision"] for t, h in histories.items() if h["looks"]} or None,
        "users_per_treatment": per_treatment, "srm_mismatch": srm["mismatch"],
        "significant": [f"{r.treatment}:{r.metric}" for r in effects.itertuples() if r.significant],
        "cuped": cuped and {"pre_input": pre_uri, "pre_lines": cuped["pre_lines"], "pre_malformed": cuped["pre_malformed"],
                            "variance_reduction": dict(zip(cuped["variance"]["metric"],
                                                           cuped["variance"]["variance_reduction"]))},
    }
    final = join(root, "ab", experiment, run_id)
    with run_record.stage("publish"):
        manifest = publish(storage, final, files, users, manifest)
    run_record.read("event log lines", input_uri, loaded.lines)
    run_record.quarantined({} if loaded.deduplicated else loaded.malformed)  # staged: staging quarantined them
    if cuped:
        run_record.read("pre-period event log lines", pre_uri, cuped["pre_lines"])
    run_record.wrote("user_metrics", join(final, "user_metrics"), spark.read.parquet(join(final, "user_metrics")).count())
    write_pointer(storage, join(root, "ab", experiment, "LATEST"), run_id)
    if history_uri:  # after the report: a night whose report failed has not been published, so not looked at
        storage.write_atomically(history_uri, json.dumps(histories, indent=2, allow_nan=False).encode())
    loaded.release()
    for df in (sessions, users):
        df.unpersist()
    log.info("A/B %s: %s", final, {k: manifest[k] for k in ("events", "analysed_users", "srm_mismatch")})
    return {"uri": final, "manifest": manifest, "effects": effects, "summary": summary, "srm": srm, "report": report}


def publish(storage: HadoopStorage, final: str, files: Dict[str, object], users: DataFrame, manifest: dict) -> dict:
    """Write the report files, the user metrics and the manifest at once (all or nothing)."""
    with atomic_output(storage, final) as tmp:
        for name, content in files.items():
            if isinstance(content, bytes):
                storage.write_bytes(join(tmp, name), content)
            else:
                storage.write_text(join(tmp, name), content)
        users.write.mode("overwrite").parquet(join(tmp, "user_metrics"))
        return write_manifest(storage, tmp, {**manifest, "files": [*files, "user_metrics"]})


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="analyze_ab", description=__doc__.split("\n")[0])
    add_job_arguments(parser, run=True)
    parser.add_argument("--experiment", help="experiment name in the events' experiments map (default: ab.experiment)")
    parser.add_argument("--control", help="control treatment (default: ab.control)")
    parser.add_argument("--input", help="event logs URI, directory or glob, or staged events (events/<dataset>) "
                                        "(default: datasets.ab_events)")
    parser.add_argument("--cuped", action="store_true",
                        help="also report CUPED-adjusted effects, the covariate being each user's metric in the "
                             "pre-period logs (--pre-input, default: ab.cuped.pre_input)")
    parser.add_argument("--pre-input", help="pre-period event logs for --cuped (default: ab.cuped.pre_input)")
    add_window_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    experiment = args.experiment or str(config["ab"]["experiment"])
    control = args.control or str(config["ab"]["control"])
    input_uri = resolve(config, args.input or config["datasets"]["ab_events"])
    spark = get_session("analyze_ab", args.profile)
    cuped = args.cuped or bool(config["ab"]["cuped"]["enabled"])
    pre_uri = resolve(config, args.pre_input or config["ab"]["cuped"]["pre_input"]) if cuped else None
    result = run(spark, config, input_uri, experiment, control, args.run, pre_uri, window_of(args))
    print(result["report"])
    print(json.dumps({"output": result["uri"], "srm_mismatch": result["srm"]["mismatch"],
                      "significant": result["manifest"]["significant"]}))
    return 0
