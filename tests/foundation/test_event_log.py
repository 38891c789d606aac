"""Event-log parsing: every malformed line gets a reason, valid lines keep their types."""
import json

import pytest

from common import event_log


def parse(spark, lines):
    df = spark.createDataFrame([(line, "test.jsonl") for line in lines], "line string, source string")
    return event_log.parse_lines(df)


def event(**overrides):
    base = {"message": "next", "timestamp": 1700000000000, "user": 1, "track": 2, "time": 0.5,
            "latency": 0.001, "recommendation": 3, "experiments": {"AB": "C"}}
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not KeyError})


@pytest.mark.parametrize(
    "line,reason",
    [
        (event(), None),
        (event(recommendation=None, message="last"), None),
        (event(extra_field="ignored"), None),
        (event(user="7"), None),  # the course's logs are lenient about numeric strings
        ("not json at all", "not_json_object"),
        ("[1, 2, 3]", "not_json_object"),
        ('{"message": "next", "user": 1', "not_json_object"),
        (event(message=KeyError), "missing_message"),
        (event(message="skip"), "bad_message"),
        (event(user=KeyError), "missing_user"),
        (event(user="abc"), "bad_user"),
        (event(user=1.5), "bad_user"),
        (event(user=-1), "bad_user"),
        (event(track=KeyError), "missing_track"),
        (event(track="x"), "bad_track"),
        (event(time=KeyError), "missing_time"),
        (event(time=1.01), "bad_time"),
        (event(time=-0.01), "bad_time"),
        (event(time="NaN"), "bad_time"),
        (event(timestamp=KeyError), "missing_timestamp"),
        (event(timestamp="yesterday"), "bad_timestamp"),
        (event(latency="slow"), "bad_latency"),
        (event(recommendation="x"), "bad_recommendation"),
    ],
)
def test_reasons(spark, line, reason):
    row = parse(spark, [line]).first()
    assert row["reason"] == reason


def test_valid_line_is_typed(spark):
    row = parse(spark, [event(time=0.8)]).first()
    assert (row["message"], row["timestamp"], row["user"], row["track"], row["time"]) == ("next", 1700000000000, 1, 2, 0.8)
    assert row["experiments"] == {"AB": "C"}


def test_count_and_split(spark):
    parsed = parse(spark, [event(), event(user=2), "junk", event(time=3)])
    total, malformed = event_log.count_reasons(parsed)
    assert total == 4
    assert malformed == {"not_json_object": 1, "bad_time": 1}
    valid, bad = event_log.split_valid(parsed)
    assert valid.count() == 2
    assert sorted(r["line"] for r in bad.collect()) == sorted(["junk", event(time=3)])


def test_error_ratio():
    event_log.check_error_ratio(100, {"bad_time": 1}, 0.01, "x")
    with pytest.raises(event_log.TooManyMalformed, match="bad_time=2"):
        event_log.check_error_ratio(100, {"bad_time": 2}, 0.01, "x")
    with pytest.raises(event_log.TooManyMalformed, match="no input"):
        event_log.check_error_ratio(0, {}, 0.5, "x")
