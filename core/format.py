"""One number format for the whole app: tables, metrics, hover text and axes (issue 13 §6).

Every page and command that shows a number to a person formats it here, so a fit's N* reads the
same in the Fits table, the planner's metric and a plot's hover:

| quantity                         | function        | example                 |
|----------------------------------|-----------------|-------------------------|
| parameters N, tokens D, counts   | ``count``       | ``73.0B``, ``1.34T``    |
| FLOPs (compute budgets)          | ``flops``       | ``5.88e23``             |
| losses                           | ``loss``        | ``1.9632``              |
| fitted constants (E, A, α, ...)  | ``number``      | ``0.3392``, ``1.53e34`` |
| fractions as percentages         | ``percent``     | ``95.0%``               |
| ratios (tokens per parameter)    | ``ratio``       | ``20.3``                |
| an interval                      | ``interval``    | ``[60.1B, 88.2B]``      |
| a value with its ± error         | ``pm``          | ``0.3392 ± 0.0210``     |
| a signed difference (bias, gap)  | ``signed``      | ``+0.0123``, ``-0.0045``|
| a length of time                 | ``duration``    | ``45 s``, ``2.5 min``   |

Missing values (``None``, NaN) are an em dash, ``MISSING``; no function returns ``None``, ``nan``,
a Python ``repr`` of a float or an ``e+`` exponent.

Axes: ``log_axis("flops")`` labels a log axis 1e21, 1e22, ...; ``log_axis("count")`` 10M, 100M, 1B.
Pass the result to ``fig.update_xaxes(**...)``.

Pure Python (no Streamlit), so ``commands/`` and ``pages/`` share it and it is unit-tested in
tests/test_format.py with exact strings.
"""
from __future__ import annotations

import html
import math
from typing import Callable, Iterable

# ---------------------------------------------------------------------------------------- level
#: The one interval level of the app (Fits, Planner, Evals), unless the user picks another in the
#: sidebar. 95% because it is the level the scaling-law papers we reproduce report (Hoffmann et al.
#: 2022's bootstrap intervals as re-estimated by Besiroglu et al. 2024; the observational-scaling
#: and downstream-eval error bars), so a number on screen can be put next to the paper's; and one
#: level everywhere means the Fits page's interval for N* is the planner's band for the same fit.
CONFIDENCE = 0.95
#: The levels offered by the sidebar setting: ±1σ (68%), 90%, 95% (default), 99%.
CONFIDENCE_LEVELS = (0.68, 0.90, 0.95, 0.99)

MISSING = "—"  # an em dash: a value that does not exist (or cannot be computed) here

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def _missing(x) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return True


def _special(x) -> str | None:
    """The text of a value that is not an ordinary finite number (missing, ±∞), else None."""
    if _missing(x):
        return MISSING
    if math.isinf(float(x)):
        return "∞" if float(x) > 0 else "-∞"
    return None


def _sig3(v: float) -> str:
    """A number in [0, 1000) to three significant digits, trailing zeros kept: 5.00, 73.0, 512."""
    a = abs(v)
    if a >= 100 or a == 0:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _exp(x: float, digits: int) -> str:
    """``x`` in scientific notation with ``digits`` significant digits and a bare exponent: 5.88e23."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def count(x) -> str:
    """Parameters, tokens and other counts: 73.0B, 1.34T, 512M, 12.5K, 512 (three significant digits).

    Beyond 1000T the suffixes stop and the number is written as 1.00e15.
    """
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    a = abs(x)
    if a >= 999.5e12:
        return _exp(x, 3)
    for scale, suffix in _SUFFIXES:
        if a >= scale * 0.9995:  # 999.6M rounds to 1.00B, not 1000M
            return f"{_sig3(max(x / scale, 1.0) if x > 0 else min(x / scale, -1.0))}{suffix}"
    if a >= 999.5:
        return "1.00K" if x > 0 else "-1.00K"
    if a == int(a):
        return f"{int(x)}"
    return _sig3(x)


def flops(x) -> str:
    """Compute budgets: 5.88e23 (three significant digits, no '+' in the exponent)."""
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    if x == 0:
        return "0"
    return _exp(x, 3)


def loss(x) -> str:
    """Losses (nats per token, or an eval's loss): four decimals, 1.9632 (a diverged 1.23e5 in
    scientific notation)."""
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    if abs(x) >= 1e4:
        return _exp(x, 3)
    return f"{x:.4f}"


def number(x, digits: int = 4) -> str:
    """A fitted constant or any other real number: four significant digits, 0.3392, 482.0, 1.820;
    scientific outside [0.001, 10000): 1.53e34, 2.50e-5. Integers below 10000 stay whole: 2085."""
    if (special := _special(x)) is not None:
        return special
    x = float(x)
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e4 or a < 1e-3:
        return _exp(x, min(digits, 3))
    if x == int(x) and a >= 1:
        return f"{int(x)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(a)))
    s = f"{x:.{decimals}f}"
    if abs(float(s)) >= 10 ** (digits - 1 - decimals + 1) and decimals > 0:  # 9.9996 → 10.000 → 10.00
        s = f"{x:.{decimals - 1}f}"
    return s


def ratio(x) -> str:
    """A ratio such as tokens per parameter: one decimal below 1000 (20.3), else a count (1.25K)."""
    if _missing(x):
        return MISSING
    x = float(x)
    if abs(x) >= 1000:
        return count(x)
    return f"{x:.1f}"


def percent(x, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.953 → 95.3%."""
    if _missing(x):
        return MISSING
    return f"{float(x) * 100:.{decimals}f}%"


def level(cl: float) -> str:
    """An interval level as its label: 0.95 → '95%', 0.68 → '68%', 0.999 → '99.9%'."""
    pct = cl * 100
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 1e-9 else f"{pct:.1f}%"


def integer(x) -> str:
    """A whole number with thousands separators: 1,234,567."""
    if _missing(x):
        return MISSING
    return f"{int(round(float(x))):,}"


def duration(seconds) -> str:
    """A length of time: seconds below two minutes (one decimal below 10 s: 1.5 s, 45 s), minutes below
    two hours (2.5 min), else hours (1.3 h)."""
    if (special := _special(seconds)) is not None:
        return special
    s = float(seconds)
    if abs(s) < 9.95:  # 9.96 s rounds to 10 s, not 10.0 s
        return f"{s:.1f} s"
    if abs(s) < 119.5:
        return f"{s:.0f} s"
    if abs(s) / 60 < 119.95:  # 119.96 min is 2.0 h, not 120.0 min
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


FORMATTERS: dict[str, Callable[[object], str]] = {
    "count": count, "flops": flops, "loss": loss, "number": number, "ratio": ratio,
    "percent": percent, "integer": integer,
}


def value(x, kind: str = "number") -> str:
    """``x`` formatted as ``kind`` (a key of ``FORMATTERS``)."""
    return FORMATTERS[kind](x)


def interval(lo, hi, kind: str | Callable = "number") -> str:
    """An interval as [lo, hi] in the quantity's format: [60.1B, 88.2B]; an em dash when missing."""
    fmt = FORMATTERS[kind] if isinstance(kind, str) else kind
    if _missing(lo) or _missing(hi):
        return MISSING
    return f"[{fmt(lo)}, {fmt(hi)}]"


def pm(x, err, kind: str | Callable = "number") -> str:
    """A value with its ± error, both in the quantity's format: 0.3392 ± 0.0210 (a number's error to
    three significant digits)."""
    fmt = FORMATTERS[kind] if isinstance(kind, str) else kind
    if _missing(x):
        return MISSING
    if _missing(err):
        return fmt(x)
    efmt = (lambda e: number(e, 3)) if fmt is number else fmt
    return f"{fmt(x)} ± {efmt(abs(float(err)))}"


def signed(x, kind: str | Callable = "number") -> str:
    """A difference whose sign matters (a bias, a gap, a trend) in the quantity's format, with an
    explicit + when positive: +0.0123, -0.0045 (``signed(x, "loss")``); zero as +0."""
    fmt = FORMATTERS[kind] if isinstance(kind, str) else kind
    text = fmt(x)
    if _missing(x) or math.isinf(float(x)) or text.startswith("-"):
        return text
    return f"+{text}"


def kind_of(name: str) -> str:
    """The format of a quantity named in a table column or a parameter: N, D, tokens → count;
    C, flops, budget → flops; loss → loss; anything else → number."""
    key = name.lower().strip()
    if "tokens/param" in key or "per param" in key or "tokens_per_param" in key:
        return "ratio"
    if key in {"n", "d", "n*", "d*", "n_opt", "d_opt", "params", "parameters", "tokens", "n_params",
               "n_active_params", "n_nonembedding_params", "tokens_per_step"} or \
            key.startswith(("n_", "d_", "n*", "d*")) or "param" in key or "token" in key:
        return "count"
    if key in {"c", "compute"} or "flop" in key or "budget" in key:
        return "flops"
    if "loss" in key:
        return "loss"
    return "number"


def latex(x, digits: int = 4) -> str:
    """A number for a LaTeX formula: 0.3392, or 1.53 \\times 10^{34} where ``number`` writes 1.53e34."""
    text = number(x, digits)
    if "e" in text and text != MISSING:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def table(frame, kinds=None):
    """A copy of a DataFrame with every number written in the app's format (strings): each column
    by ``kinds[column]`` when given, else by ``kind_of(column)``; booleans stay; ``None``/NaN in any
    column become the em dash. For st.dataframe and st.table: no raw floats, no ``None``."""
    out = frame.copy()
    kinds = dict(kinds or {})
    for col in out.columns:
        series = out[col]
        if series.dtype == bool:
            continue
        kind = kinds.get(col) or kind_of(str(col))
        if series.dtype.kind in "iuf":
            out[col] = [FORMATTERS[kind](v) for v in series]
        else:
            out[col] = [MISSING if _missing_object(v) else v for v in series]
    return out


def _missing_object(v) -> bool:
    if v is None:
        return True
    return isinstance(v, float) and math.isnan(v)


# ---------------------------------------------------------------------------------------- Plotly
def plotly_text(name: object) -> str:
    """A user string (run, model, task name) safe to put in a Plotly trace name, legend, hover or
    annotation: Plotly renders a few HTML tags (<b>, <br>, <a href>, <span style>) in those, so a
    run named ``<b>x</b>`` would show bold. Escaped, it shows exactly as written."""
    return html.escape(str(name), quote=False)


_DECADE_COUNT = {0: "1", 1: "10", 2: "100", 3: "1K", 4: "10K", 5: "100K", 6: "1M", 7: "10M", 8: "100M",
                 9: "1B", 10: "10B", 11: "100B", 12: "1T", 13: "10T", 14: "100T"}


def _tick_label(v: float, kind: str) -> str:
    if kind == "flops":
        m, e = f"{v:.0e}".split("e")
        return f"{m}e{int(e)}"
    k = math.floor(math.log10(v) + 1e-9)
    mant = round(v / 10 ** k)
    if mant == 1 and k in _DECADE_COUNT:
        return _DECADE_COUNT[k]
    return count(v)


def log_ticks(kind: str = "flops", values: Iterable[float] | None = None,
              lo_exp: int = -3, hi_exp: int = 30) -> tuple[list[float], list[str]]:
    """Tick positions and labels of a log axis: every decade (1e21, 1e22 ... for FLOPs; 10M, 100M,
    1B ... for counts). When the data spans under two decades, 2× and 5× ticks are added so an axis
    never shows a single label. Plotly hides ticks outside the axis range, so a wide default range
    is harmless."""
    lo, hi = lo_exp, hi_exp
    mults = (1,)
    if values is not None:
        vals = [float(v) for v in values if not _missing(v) and float(v) > 0 and math.isfinite(float(v))]
        if vals:
            lo = math.floor(math.log10(min(vals))) - 1
            hi = math.ceil(math.log10(max(vals))) + 1
            if math.log10(max(vals)) - math.log10(min(vals)) < 2:
                mults = (1, 2, 5)
    ticks = [float(f"{m}e{k}") for k in range(lo, hi + 1) for m in mults]
    if kind == "count":
        ticks = [t for t in ticks if t >= 1]
    return ticks, [_tick_label(t, kind) for t in ticks]


def log_axis(kind: str = "flops", values: Iterable[float] | None = None, title: str | None = None) -> dict:
    """Keyword arguments for ``fig.update_xaxes`` / ``update_yaxes``: a log axis labelled in the
    app's format (FLOPs 1e21, 1e22; parameters and tokens 10M, 100M, 1B)."""
    tickvals, ticktext = log_ticks(kind, values)
    out = {"type": "log", "tickmode": "array", "tickvals": tickvals, "ticktext": ticktext}
    if title is not None:
        out["title"] = title
    return out


#: d3 formats for linear axes and hover of the quantities Plotly can format itself.
TICKFORMAT = {"loss": ".4f", "percent": ".0%", "ratio": ".1f"}
