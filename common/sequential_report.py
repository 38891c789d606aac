"""The nightly A/B report's sequential part: one look history per treatment (common.sequential_ab) kept beside
the experiment's reports, its rows in report.md, and the effect over dates as a figure.

The design comes from the experiment's definition in conf/botify.yml (``start``, ``planned_days`` or
``planned_users``, ``decision_metric``); each treatment is tested against the control at ``alpha`` divided
by the number of treatments (Bonferroni: Holm's step-down has no sequential form this simple), so the
family-wise error over arms and nights stays at ``alpha``.
"""
from __future__ import annotations

import datetime as dt
import io
from typing import Dict, List, Optional

from common import sequential_ab

HISTORY = "_SEQUENTIAL.json"  # <root>/ab/<experiment>/_SEQUENTIAL.json: {treatment: look history}


def design_of(definition: dict) -> Optional[dict]:
    """The sequential design an experiment's definition asks for; None when it plans neither days nor users."""
    planned_days, planned_users = definition.get("planned_days"), definition.get("planned_users")
    if planned_days is None and planned_users is None:
        return None
    return {"start": None if definition.get("start") is None else str(definition["start"]),
            "planned_days": None if planned_days is None else int(planned_days),
            "planned_users": None if planned_users is None else float(planned_users),
            "metric": str(definition.get("decision_metric", "mean_session_time")),
            "higher_is_better": bool(definition.get("higher_is_better", True))}


def record_night(histories: Dict[str, dict], design: dict, start: str, date: str, summary, control: str,
                 alpha: float, experiment: str) -> tuple:
    """Each treatment's look for ``date`` from the cumulative per-arm ``summary`` (analyze_ab's n, mean, var
    per treatment and metric); returns (new histories, notes). A night that cannot be recorded (a date
    before the last look, no new information) is a note, not a failure: the fixed-horizon report still goes
    out, and the published looks stay as they were."""
    rows = summary[summary["metric"] == design["metric"]].set_index("treatment")
    treatments = sorted(t for t in rows.index if t != control)
    out, notes = dict(histories), []
    for treatment in treatments:
        history = out.get(treatment) or sequential_ab.new_history(
            design["metric"], start, design["planned_days"], design["planned_users"], alpha / len(treatments),
            experiment=experiment, treatment=treatment, higher_is_better=design["higher_is_better"])
        c, t = rows.loc[control], rows.loc[treatment]
        try:
            out[treatment], _ = sequential_ab.record_look(history, date, c["n"], c["mean"], c["var"], t["n"],
                                                          t["mean"], t["var"])
        except ValueError as exc:
            notes.append(f"{treatment}: night {date} not recorded: {exc}")
            out[treatment] = history
    return out, notes


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def render(histories: Dict[str, dict], control: str, notes: List[str]) -> str:
    """The report's section: one row per night and treatment, newest last."""
    if not histories:
        return ""
    any_design = next(iter(histories.values()))["design"]
    plan = (f"{any_design['planned_days']} nights" if any_design["information"] == "days"
            else f"{any_design['planned_users']:.0f} users")
    lines = ["## Sequential analysis (valid when read every night)", "",
             f"Decision metric {any_design['metric']}, planned {plan} from {any_design['start']}; "
             f"Lan-DeMets {any_design['kind'].replace('_', '-')} alpha spending at {any_design['alpha']:.4g} per "
             f"treatment vs {control}. effect and interval: relative effect in %, with the repeated confidence "
             "interval of that night (it covers the true effect on every night at once). Act on `decision` only; "
             "the fixed-horizon table above is valid once, at the planned end.", "",
             "| treatment | date | night | users | fraction | alpha spent | boundary z | effect | lower | upper | decision |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for treatment, history in sorted(histories.items()):
        for look in history["looks"]:
            boundary = "-" if look["boundary"] is None else f"{look['boundary']:.3f}"
            lines.append(f"| {treatment} | {look['date']} | {look['night']} | {look['users']} | "
                         f"{look['fraction']:.3f} | {look['alpha_spent']:.4g} | {boundary} | {_pct(look['effect'])} | "
                         f"{_pct(look['lower'])} | {_pct(look['upper'])} | {look['decision']} |")
    lines += [""] + [f"Note: {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines) + "\n"


def plot(histories: Dict[str, dict], experiment: str, control: str) -> bytes:
    """The relative effect over dates with each night's repeated confidence interval, per treatment."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    for treatment, history in sorted(histories.items()):
        looks = [look for look in history["looks"] if look["effect"] is not None]
        if not looks:
            continue
        days = [dt.date.fromisoformat(look["date"]) for look in looks]
        effect = [100 * look["effect"] for look in looks]
        ax.plot(days, effect, marker="o", label=f"{treatment} vs {control}")
        bounded = [(d, 100 * look["lower"], 100 * look["upper"]) for d, look in zip(days, looks)
                   if look["lower"] is not None]
        if bounded:
            ax.fill_between([b[0] for b in bounded], [b[1] for b in bounded], [b[2] for b in bounded], alpha=0.2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("relative effect, %")
    ax.set_title(f"{experiment}: effect by night with its sequential interval")
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
