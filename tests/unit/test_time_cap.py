"""The task time cap stops pure-Python work in an interruptible region at its deadline, and nothing else."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from preprocess import shell
from preprocess.errors import TimeLimitError, describe


def test_a_python_loop_in_an_interruptible_region_is_stopped_at_the_deadline():
    began = time.monotonic()
    with pytest.raises(TimeLimitError) as caught, shell.time_cap(0.5), shell.interruptible("walking a tree"):
        while True:
            pass
    assert time.monotonic() - began < 30  # a hang guard only: without the cap this loop never ends
    assert str(caught.value) == ("stopped after the task time cap of 0.5s (preprocess.task-timeout) "
                                 "while walking a tree")
    assert describe(caught.value)["class"] == "TimeLimitError"
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is TimeLimitError and str(copy) == str(caught.value)


def test_outside_a_region_the_deadline_waits_for_check_time():
    with shell.time_cap(0.2):
        time.sleep(0.4)  # no region: nothing is raised here
        with pytest.raises(TimeLimitError, match="while committing"):
            shell.check_time("committing")


def test_a_region_entered_past_the_deadline_raises_at_once():
    with shell.time_cap(0.05):
        time.sleep(0.1)
        with pytest.raises(TimeLimitError, match="while the sort stage"), shell.interruptible("the sort stage"):
            pytest.fail("the region's body ran")


def test_a_region_left_before_the_deadline_leaves_nothing_pending():
    with shell.time_cap(0.3):
        with shell.interruptible("a quick stage"):
            pass
        time.sleep(0.5)  # the deadline passes outside any region
    total = 0
    for n in range(2_000_000):  # would be interrupted if an exception were still pending
        total += n
    assert total == sum(range(2_000_000))


def test_another_thread_is_never_interrupted():
    done = []

    def work() -> None:
        with shell.interruptible("a helper thread"):
            time.sleep(0.5)
            done.append(True)

    with shell.time_cap(0.1):
        import contextvars

        helper = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        helper.start()
        helper.join()
    assert done == [True]


def test_a_held_step_is_not_cut_and_the_deadline_is_raised_as_it_ends():
    finished = []
    with pytest.raises(TimeLimitError, match="while walking records$"), shell.time_cap(0.2), \
            shell.interruptible("walking records"):
        with shell.held():
            deadline = time.monotonic() + 0.6
            while time.monotonic() < deadline:  # past the cap's deadline, in Python, uncut
                pass
            finished.append(True)
        pytest.fail("the held step ended past the deadline without raising")
    assert finished == [True]
