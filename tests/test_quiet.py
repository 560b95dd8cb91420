"""Library chatter goes to a log, not to the terminal (core/quiet.py): in a fresh process, so that the
libraries really are imported (and write) inside the block."""

import os
import subprocess
import sys

from core import paths


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=paths.ROOT,
        env={**os.environ, "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_what_a_block_writes_to_stderr_goes_to_the_log_and_one_line_says_where(tmp_path):
    log = tmp_path / "logs" / "x.log"
    done = run_python(
        "import os, sys, warnings\n"
        "from pathlib import Path\n"
        "from core import quiet\n"
        f"with quiet.stderr_to(Path({str(log)!r})):\n"
        # one line: code run with -c has no source line to show
        "    warnings.warn('a library deprecation', DeprecationWarning)\n"
        "    os.write(2, b'from C code\\n')\n"
        "    print('a logger line', file=sys.stderr)\n"
        "    print('ours, on stdout')\n"
        "print('after the block', file=sys.stderr)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ours, on stdout\n"
    assert done.stderr.splitlines() == [f"library warnings: 3 line(s) in {log}", "after the block"]
    written = log.read_text()
    assert "a library deprecation" in written and "from C code" in written and "a logger line" in written


def test_nothing_written_means_no_line(tmp_path):
    log = tmp_path / "quiet.log"
    done = run_python(
        f"from pathlib import Path\nfrom core import quiet\nwith quiet.stderr_to(Path({str(log)!r})): pass"
    )
    assert done.returncode == 0 and done.stderr == "" and not log.exists()


def test_importing_the_model_stack_leaves_the_terminal_quiet(tmp_path):
    """peft's import writes torch's pytree deprecation warnings (torchao registering its enums) and
    bitsandbytes' notice about an optional CPU kernel: both land in the command's log."""
    done = subprocess.run(
        [sys.executable, "-c", "from core import quiet; quiet.import_stack('evaluate'); quiet.release()"],
        cwd=paths.ROOT,
        env={**os.environ, "UMLSTUDIO_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path / "logs" / "evaluate.log"
    lines = done.stderr.splitlines()
    assert all(line.startswith("library warnings: ") and line.endswith(str(log)) for line in lines), lines
    if lines:  # what the installed versions write is theirs to change; whatever it is, it is in the log
        assert log.read_text().strip()


def test_a_command_refused_for_bad_input_writes_no_log(tmp_path):
    """The stack is imported before the input is checked; its chatter is held, then forgotten on the refusal."""
    done = subprocess.run(
        [sys.executable, "-m", "core", "evaluate", "--checkpoint", str(tmp_path / "missing")],
        cwd=paths.ROOT,
        env={**os.environ, "UMLSTUDIO_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "home" / "logs").exists()
