"""The studio listens on loopback only, wherever it is started from, and refuses to serve when bound elsewhere;
stopped, it leaves no PlantUML server behind."""

import contextlib
import os
import signal
import time

import pytest
from test_browser import ROOT, browser, free_port, start_studio  # noqa: F401  (browser: a fixture)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on `port` (IPv4 and IPv6, from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_the_settings_are_the_top_level_ones_beside_the_entrypoint_too():
    top = ROOT / ".streamlit" / "config.toml"
    assert (ROOT / "studio" / ".streamlit" / "config.toml").resolve() == top.resolve()  # one file, two places
    lines = {line.strip() for line in top.read_text().splitlines()}  # (tomllib is Python 3.11+)
    assert {'address = "127.0.0.1"', "enableXsrfProtection = true", "gatherUsageStats = false"} <= lines


@pytest.mark.parametrize("where", ["the repository root", "another folder"])
def test_wherever_it_is_started_from_it_listens_on_loopback_only(tmp_path, where):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    port = free_port()
    process = start_studio(home, port, cwd=ROOT if where == "the repository root" else elsewhere)
    try:
        # 0100007F is 127.0.0.1 as /proc/net/tcp writes it; every interface would be 00000000 (or :: in tcp6)
        assert listening_addresses(port) == {"0100007F"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    log = (home / "streamlit.log").read_text()
    assert "External URL" not in log and "Network URL" not in log


@pytest.mark.browser
def test_bound_to_every_interface_it_refuses_to_serve(tmp_path, browser):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    process = start_studio(
        home, port, cwd=tmp_path, extra=["--server.address", "0.0.0.0"], env={"UMLSTUDIO_ALLOW_REMOTE": ""}
    )
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        refusal = page.get_by_text("serves only on 127.0.0.1")
        refusal.wait_for(timeout=60_000)
        assert "UMLSTUDIO_ALLOW_REMOTE=1" in refusal.inner_text()
        assert process.wait(timeout=30) is not None  # the server stopped itself
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    assert "error: the studio is bound to 0.0.0.0 and serves only on 127.0.0.1" in (home / "streamlit.log").read_text()


def plantuml_children(pid: int) -> list[int]:
    """Process ids of the PlantUML servers (`-picoweb` JVMs) whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"-picoweb" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.browser
def test_stopped_with_sigterm_it_leaves_no_plantuml_server_behind(tmp_path, browser):
    """`kill <pid>` (SIGTERM to the studio alone, not its process group) stops the JVM it started too."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    process, jvms = start_studio(home, port), []
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")  # the first visit starts the warm-up, which starts PlantUML
        deadline = time.monotonic() + 120
        while not (jvms := plantuml_children(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert jvms, "the warm-up started no PlantUML server"
        page.close()
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{jvm}") for jvm in jvms) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(os.path.exists(f"/proc/{jvm}") for jvm in jvms), "the PlantUML server outlived the studio"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        for jvm in jvms:  # a failed run leaves none behind either
            with contextlib.suppress(ProcessLookupError):
                os.kill(jvm, signal.SIGKILL)
