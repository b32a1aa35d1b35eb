"""core/format.py: the one number format of the app, with exact strings (issue 13 §6)."""
from __future__ import annotations

import math

import pytest

from core import format as fmt


@pytest.mark.parametrize("x, text", [
    (73.0e9, "73.0B"), (1.34e12, "1.34T"), (70e9, "70.0B"), (1.4e12, "1.40T"), (512e6, "512M"),
    (12_500, "12.5K"), (1_000, "1.00K"), (999.6e6, "1.00B"), (999.4e6, "999M"), (40310496396, "40.3B"),
    (512, "512"), (0, "0"), (5.5, "5.50"), (-2.5e9, "-2.50B"), (1e15, "1.00e15"), (2.5e16, "2.50e16"),
])
def test_count(x, text):
    assert fmt.count(x) == text


@pytest.mark.parametrize("x, text", [
    (5.88e23, "5.88e23"), (1e21, "1.00e21"), (1.5332818850268969e+34, "1.53e34"), (5.76e23, "5.76e23"),
    (1e-3, "1.00e-3"), (0, "0"),
])
def test_flops(x, text):
    assert fmt.flops(x) == text


@pytest.mark.parametrize("x, text", [
    (0.33921, "0.3392"), (482.01, "482.0"), (1.82, "1.820"), (9.99996, "10.00"), (2085.43, "2085"),
    (1.5332818850268969e+34, "1.53e34"), (2.5e-5, "2.50e-5"), (-0.5, "-0.5000"), (100, "100"), (0, "0"),
])
def test_number(x, text):
    assert fmt.number(x) == text


def test_loss_percent_ratio_integer_level():
    assert fmt.loss(1.963214) == "1.9632"
    assert fmt.loss(2) == "2.0000"
    assert fmt.percent(0.953) == "95.3%"
    assert fmt.percent(0.5, decimals=0) == "50%"
    assert fmt.ratio(20.345) == "20.3"
    assert fmt.ratio(1250) == "1.25K"
    assert fmt.integer(1234567.4) == "1,234,567"
    assert [fmt.level(c) for c in fmt.CONFIDENCE_LEVELS] == ["68%", "90%", "95%", "99%"]
    assert fmt.CONFIDENCE == 0.95 and fmt.CONFIDENCE in fmt.CONFIDENCE_LEVELS


def test_interval_and_pm():
    assert fmt.interval(60.1e9, 88.2e9, "count") == "[60.1B, 88.2B]"
    assert fmt.interval(1e21, 2e22, "flops") == "[1.00e21, 2.00e22]"
    assert fmt.interval(1.8, 1.9, "loss") == "[1.8000, 1.9000]"
    assert fmt.interval(None, 3, "count") == "—"
    assert fmt.pm(0.3392, 0.021) == "0.3392 ± 0.0210"
    assert fmt.pm(0.3392, -0.021) == "0.3392 ± 0.0210"
    assert fmt.pm(70e9, 5e9, "count") == "70.0B ± 5.00B"
    assert fmt.pm(0.3392, None) == "0.3392"


def test_signed_and_duration():
    assert fmt.signed(0.01234, "loss") == "+0.0123" and fmt.signed(-0.0045, "loss") == "-0.0045"
    assert fmt.signed(0.95123) == "+0.9512" and fmt.signed(0, "loss") == "+0.0000"
    assert fmt.signed(2.5e9, "count") == "+2.50B" and fmt.signed(None, "loss") == "—"
    assert [fmt.duration(s) for s in (1.5, 9.96, 45.4, 119.6, 150, 7196, 7200, 36_000)] == \
        ["1.5 s", "10 s", "45 s", "2.0 min", "2.5 min", "119.9 min", "2.0 h", "10.0 h"]


@pytest.mark.parametrize("f", [fmt.count, fmt.flops, fmt.loss, fmt.number, fmt.ratio, fmt.percent,
                               fmt.integer, fmt.duration, fmt.signed])
def test_missing_is_an_em_dash(f):
    assert f(None) == "—"
    assert f(float("nan")) == "—"


@pytest.mark.parametrize("x", [0.1 + 0.2, 1.5332818850268969e+34, 1e-12, 123456.789, 3e9, 7e23])
def test_never_raw_floats(x):
    for f in (fmt.count, fmt.flops, fmt.loss, fmt.number):
        s = f(x)
        assert "e+" not in s and "None" not in s and "nan" not in s.lower()
        assert len(s) <= 9, s


def test_value_dispatch_and_kind_of():
    assert fmt.value(7e23, "flops") == "7.00e23"
    assert fmt.kind_of("N*") == "count" and fmt.kind_of("tokens") == "count"
    assert fmt.kind_of("budget") == "flops" and fmt.kind_of("FLOPs") == "flops"
    assert fmt.kind_of("loss") == "loss" and fmt.kind_of("tokens/param") == "ratio"
    assert fmt.kind_of("alpha") == "number"


def test_log_axes_read_in_the_app_format():
    vals, text = fmt.log_ticks("flops", [1e19, 1e23])
    assert text == ["1e18", "1e19", "1e20", "1e21", "1e22", "1e23", "1e24"]
    assert vals[3] == 1e21
    vals, text = fmt.log_ticks("count", [1e7, 1e9])
    assert text == ["1M", "10M", "100M", "1B", "10B"]
    # under two decades: 2x and 5x ticks too, so an axis never has a single label
    _, text = fmt.log_ticks("count", [2e8, 8e8])
    assert "200M" in text and "500M" in text and "1B" in text
    axis = fmt.log_axis("flops", [1e20, 1e22], title="C")
    assert axis["type"] == "log" and axis["tickmode"] == "array" and axis["title"] == "C"
    assert all("e+" not in t for t in axis["ticktext"])
    # the default (no data) spans the whole useful range
    _, text = fmt.log_ticks("count")
    assert {"10M", "100M", "1B", "1T"} <= set(text)


def test_plotly_text_escapes_markup():
    assert fmt.plotly_text("<b>run</b> & <a href='x'>") == "&lt;b&gt;run&lt;/b&gt; &amp; &lt;a href='x'&gt;"
    assert fmt.plotly_text("plain-run_1") == "plain-run_1"
    assert fmt.plotly_text(3) == "3"


def test_latex_numbers_and_formatted_tables():
    import pandas as pd

    assert fmt.latex(1.5332818850268969e+34) == r"1.53 \times 10^{34}"
    assert fmt.latex(0.33921) == "0.3392" and fmt.latex(0.0210, 3) == "0.0210"
    frame = pd.DataFrame({"run": ["a", None], "n_params": [7e10, float("nan")], "loss": [1.9, 2.0],
                          "used": [True, False], "k": [3, 4]})
    shown = fmt.table(frame, {"k": "integer"})
    assert shown.to_dict("list") == {"run": ["a", "—"], "n_params": ["70.0B", "—"], "loss": ["1.9000", "2.0000"],
                                     "used": [True, False], "k": ["3", "4"]}
