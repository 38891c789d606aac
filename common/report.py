"""Small helpers for the reports jobs write: markdown tables and strict JSON."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd


def format_value(value, digits: int = 4) -> str:
    """A cell: yes/no for booleans, ``digits`` significant digits for floats, nan spelled out."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(rows: Union[pd.DataFrame, Iterable[Mapping]], columns: Sequence[str], digits: int = 4) -> str:
    """A markdown table of ``columns`` from a DataFrame or from dicts, one row each."""
    records = rows.to_dict(orient="records") if isinstance(rows, pd.DataFrame) else rows
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in records:
        lines.append("| " + " | ".join(format_value(row[c], digits) for c in columns) + " |")
    return "\n".join(lines)


def jsonable(value):
    """Strict JSON: numpy scalars to Python, NaN and infinities (undefined statistics) to null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
