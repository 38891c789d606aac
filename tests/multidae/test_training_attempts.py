"""Which failed barrier stages train_multidae retries: an executor or node that went away, never an exception
raised inside a rank (retrying would only raise it again). The messages are Spark's own wording."""
from jobs.train_multidae import lost_an_executor

LOST = ("org.apache.spark.SparkException: Job aborted due to stage failure: Could not recover from a failed barrier "
        "ResultStage. Most recent failure reason: Stage failed because barrier task ResultTask(7, 1) finished "
        "unsuccessfully.\\nExecutorLostFailure (executor 2 exited caused by one of the running tasks) Reason: "
        "Container from a bad node: container_1_0001_01_000003 on host: 127.0.0.1. Exit status: 137.")
RANK_RAISED = ("org.apache.spark.SparkException: Job aborted due to stage failure: Could not recover from a failed "
               "barrier ResultStage. Most recent failure reason: Stage failed because barrier task ResultTask(7, 0) "
               "finished unsuccessfully.\\norg.apache.spark.api.python.PythonException: Traceback (most recent call "
               "last):\\n  RuntimeError: Command ['torchrun', ...] failed with return code 1.")
HEARTBEAT = "ExecutorLostFailure (executor 1 exited unrelated to the running tasks) Reason: Executor heartbeat timed out"


def test_a_lost_executor_or_node_is_retried():
    assert lost_an_executor(LOST) and lost_an_executor(HEARTBEAT)


def test_an_exception_inside_a_rank_is_not():
    assert not lost_an_executor(RANK_RAISED)
    assert not lost_an_executor("ValueError: multidae.dims must be a list of positive integers")
