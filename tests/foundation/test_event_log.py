"""Event-log parsing: every malformed line gets a reason, valid lines keep their types (strictly)."""
import json
from pathlib import Path

import pytest

from common import event_log_reader

COURSE_LOG = Path(__file__).resolve().parents[1] / "ab" / "data" / "course_botify.jsonl"


def parse(spark, lines):
    df = spark.createDataFrame([(line, "test.jsonl") for line in lines], "line string, source string")
    return event_log_reader.parse_lines(df)


def event(**overrides):
    base = {"message": "next", "timestamp": 1700000000000, "user": 1, "track": 2, "time": 0.5,
            "latency": 0.001, "recommendation": 3, "experiments": {"AB": "C"}}
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not KeyError})


REASONS = [
        (event(), None),
        (event(recommendation=None, message="last"), None),
        (event(extra_field="ignored"), None),
        (event(time=1), None),  # a JSON integer is a number: the course's first track may log time 1
        (event(time=1.0, latency=0), None),
        ("not json at all", "not_json_object"),
        ("", "blank_line"),
        ("   ", "blank_line"),
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
        (event(experiments=["AB", "C"]), "bad_experiments"),
]


def test_valid_line_is_typed(spark):
    row = parse(spark, [event(time=0.8)]).first()
    assert (row["message"], row["timestamp"], row["user"], row["track"], row["time"]) == ("next", 1700000000000, 1, 2, 0.8)
    assert row["experiments"] == {"AB": "C"}


def test_count_and_split(spark):
    parsed = parse(spark, [event(), event(user=2), "junk", event(time=3)])
    total, malformed = event_log_reader.count_reasons(parsed)
    assert total == 4
    assert malformed == {"not_json_object": 1, "bad_time": 1}
    valid, bad = event_log_reader.split_valid(parsed)
    assert valid.count() == 2
    assert sorted(r["line"] for r in bad.collect()) == sorted(["junk", event(time=3)])


def test_error_ratio():
    event_log_reader.check_error_ratio(100, {"bad_time": 1}, 0.01, "x")
    with pytest.raises(event_log_reader.TooManyMalformed, match="bad_time=2"):
        event_log_reader.check_error_ratio(100, {"bad_time": 2}, 0.01, "x")
    with pytest.raises(event_log_reader.TooManyMalformed, match="no input"):
        event_log_reader.check_error_ratio(0, {}, 0.5, "x")


STRICT = [
        # Strict types: numbers in strings, booleans and float ids are not coerced.
        (event(user=" 17 "), "bad_user"),
        (event(user="7"), "bad_user"),
        (event(user=True), "bad_user"),
        (event(user=7.0), "bad_user"),
        (event(user=2**64), "bad_user"),
        (event(track="5"), "bad_track"),
        (event(track=False), "bad_track"),
        (event(time="0.5"), "bad_time"),
        (event(time=True), "bad_time"),
        (event(time="Infinity"), "bad_time"),
        (event(timestamp="1700000000000"), "bad_timestamp"),
        (event(timestamp=1.7e12), "bad_timestamp"),
        (event(latency="0.1"), "bad_latency"),
        (event().replace('"latency": 0.001', '"latency": 1e400'), "bad_latency"),  # overflows to infinity
        (event(latency=float("inf")), "not_json_object"),  # json.dumps writes Infinity: not JSON
        (event(latency=False), "bad_latency"),
        (event(recommendation="3"), "bad_recommendation"),
        (event(recommendation=True), "bad_recommendation"),
]


@pytest.fixture(scope="module")
def reasons(spark):
    """Every case line parsed in one Spark job (one job per case would cost a second each)."""
    lines = sorted({line for line, _ in REASONS + STRICT})
    return {r["line"]: r["reason"] for r in parse(spark, lines).collect()}


@pytest.mark.parametrize("line,reason", REASONS)
def test_reasons(reasons, line, reason):
    assert reasons[line] == reason


@pytest.mark.parametrize("line,reason", STRICT)
def test_strict_types_are_rejected_not_coerced(reasons, line, reason):
    assert reasons[line] == reason


def test_first_failing_field_names_the_reason(spark):
    row = parse(spark, [event(user=" 17 ", time="0.5")]).first()
    assert row["reason"] == "bad_user"


def test_binary_junk_is_reported_as_not_text(spark, tmp_path):
    """Bytes that are not UTF-8 text (or hold NUL) are named for what they are, not as a JSON or encoding error."""
    good = event().encode()
    junk = [b"\x00{\"a\":1}", b"\xff\xfe{\x00\"\x00", b"\x00\x00\x00{", bytes(range(128, 256)), event().encode("utf-16-be")]
    path = tmp_path / "dirty.jsonl"
    path.write_bytes(b"\n".join([good, *junk, good]) + b"\n")
    reasons = [r["reason"] for r in event_log_reader.parse_lines(event_log_reader.read_lines(spark, str(path))).collect()]
    assert reasons == [None] + ["not_utf8_text"] * len(junk) + [None]


def test_course_botify_log_parses(spark):
    lines = COURSE_LOG.read_text().splitlines()
    rows = parse(spark, lines).collect()
    assert [r["reason"] for r in rows] == [None] * len(lines)
    assert {r["time"] for r in rows} >= {1.0}
