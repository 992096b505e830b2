from pathlib import Path

import pytest

from preprocess import shell
from preprocess.errors import ToolError
from tests.conftest import process_gone

HOSTILE = ["plain.txt", "with space.txt", "quote'and\"double.txt", "$(touch pwned).txt", "`touch pwned2`;x.txt",
           "-n.txt", "new\nline.txt"]


@pytest.mark.parametrize("name", HOSTILE)
def test_pipe_passes_hostile_names_as_arguments_never_as_code(tmp_path, name):
    src = tmp_path / name
    src.write_text("b\na\n")
    out = tmp_path / ("out " + name)
    shell.pipe('sort -- "$1" > "$2"', src, out, cwd=tmp_path)
    assert out.read_text() == "a\nb\n"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_pipefail_reports_a_failure_early_in_the_pipe_with_stderr_tail(tmp_path):
    with pytest.raises(ToolError) as caught:
        shell.pipe('cat -- "$1" | sort | head -1', tmp_path / "missing.txt", context="demo")
    err = caught.value
    assert err.returncode != 0 and "missing.txt" in err.stderr_tail and str(err).startswith("demo: ")


def test_run_raises_tool_error_with_argv_and_code():
    with pytest.raises(ToolError) as caught:
        shell.run(["samtools", "view", "/nonexistent/x.bam"])
    assert caught.value.argv[:2] == ["samtools", "view"] and caught.value.returncode != 0
    assert "nonexistent" in caught.value.stderr_tail


def test_tool_error_survives_pickling_with_its_fields():
    import pickle

    err = pickle.loads(pickle.dumps(ToolError(["a", "b"], 3, "boom", "ctx")))
    assert (err.argv, err.returncode, err.stderr_tail) == (["a", "b"], 3, "boom")
    assert str(err) == "ctx: a b returned with error 3: boom"


def test_tools_run_in_the_c_locale(tmp_path: Path):
    assert shell.pipe('printf "%s" "$LC_ALL"').stdout == b"C"


def test_a_flood_on_stderr_keeps_only_its_tail():
    with pytest.raises(ToolError) as caught:
        shell.pipe('seq 1 300000 >&2; echo "the real cause" >&2; exit 4')
    assert caught.value.stderr_tail.endswith("the real cause") and len(caught.value.stderr_tail) < 1000


def test_time_cap_kills_the_whole_process_group_and_says_why(tmp_path):
    from preprocess.errors import TimeLimitError

    pids = tmp_path / "pids"
    script = 'sleep 300 & echo $! >> "$1"; (sleep 300; true) & echo $! >> "$1"; echo $$ >> "$1"; wait'
    with shell.time_cap(0.5), pytest.raises(TimeLimitError) as caught:
        shell.pipe(script, pids, context="hanging")
    assert "task time cap of 0.5s (preprocess.task-timeout)" in str(caught.value)
    assert "process group was killed" in str(caught.value)
    started = [int(line) for line in pids.read_text().split()]
    assert len(started) == 3 and all(process_gone(pid) for pid in started)


def test_the_cap_ends_with_its_block():
    with shell.time_cap(0.01):
        pass
    assert shell.pipe("sleep 0.2; echo done").stdout == b"done\n"
