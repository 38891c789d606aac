"""common.stopwatch: the ``<what> in <s>s`` lines bench/e2e.py parses, also for a block that raised."""
import logging
import re
import time

import pytest

from common.stopwatch import logged_time

log = logging.getLogger("test_stopwatch")


def test_the_block_time_is_logged_after_the_message(caplog):
    caplog.set_level(logging.INFO, logger="test_stopwatch")
    with logged_time(log, "petastorm: %d rows materialised to Parquet", 12):
        time.sleep(0.2)
    [record] = caplog.records
    seconds = float(re.fullmatch(r"petastorm: 12 rows materialised to Parquet in ([\d.]+)s", record.getMessage()).group(1))
    assert seconds >= 0.2


def test_a_block_that_raises_is_timed_and_the_error_goes_on(caplog):
    caplog.set_level(logging.INFO, logger="test_stopwatch")
    with pytest.raises(RuntimeError, match="rank failed"):
        with logged_time(log, "TorchDistributor ran the ranks"):
            raise RuntimeError("rank failed")
    assert re.fullmatch(r"TorchDistributor ran the ranks in [\d.]+s", caplog.records[0].getMessage())
