"""Using the new model: the chosen model (store, `umlstudio choose`, the default of `generate`, the
playground and the Quality page's button) and `umlstudio serve`, the OpenAI-compatible API on 127.0.0.1
(request parsing, requests decoded together, and the real server in a subprocess called over HTTP)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_generate import make_checkpoint

from core import cli, store
from core.data import prompts
from core.inference import chosen, generate, serve

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["A library lends books to members.", "Orders have items.", "A user owns accounts with a balance."]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve"), tiny_model, seed=3)


# ---- the chosen model --------------------------------------------------------------------------


def test_the_chosen_model_is_one_row_replaced_and_cleared():
    assert store.chosen.get() is None and store.chosen.clear() is None
    store.chosen.choose("/a/checkpoint-1")
    store.chosen.choose("/b/checkpoint-2")
    assert store.chosen.get().checkpoint == "/b/checkpoint-2"
    assert store.query_for_tests("SELECT count(*) AS n FROM chosen_model")[0]["n"] == 1
    assert store.chosen.clear().checkpoint == "/b/checkpoint-2"
    assert store.chosen.get() is None


def test_choose_show_and_clear_on_the_command_line(ckpt, capsys):
    assert cli.main(["choose", str(ckpt.parent)]) == 0  # a run folder: its latest checkpoint
    assert capsys.readouterr().out.startswith(f"chosen model: {ckpt}")
    assert cli.main(["choose", "--show"]) == 0
    assert capsys.readouterr().out.strip() == f"chosen model: {ckpt}"
    assert cli.main(["choose", "--clear"]) == 0
    assert capsys.readouterr().out.strip() == f"forgot the chosen model: {ckpt}"
    assert cli.main(["choose", "--show"]) == 0
    assert capsys.readouterr().out.startswith("no chosen model")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["base"], "'base' is the untrained model"),
        (["no/such/ckpt"], "checkpoint 'no/such/ckpt' not found"),
        (["x", "--show"], "not both"),
        ([], "give a CHECKPOINT to choose, or --show, or --clear"),
    ],
)
def test_a_bad_choice_is_one_line_exit_2_and_changes_nothing(argv, message, capsys):
    assert cli.main(["choose", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert store.chosen.get() is None


def test_generate_uses_the_chosen_model_and_says_so(ckpt, capsys):
    argv = ["generate", "--prompt", PROMPTS[0], "--max-new-tokens", "8"]
    assert cli.main(argv) == 2
    assert "no --checkpoint given and no chosen model" in capsys.readouterr().err
    assert cli.main([*argv, "--checkpoint", str(ckpt)]) == 0
    explicit = capsys.readouterr().out
    chosen.choose(str(ckpt))
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out == explicit and f"chosen model: {ckpt}" in err


def test_a_chosen_model_whose_folder_is_gone_is_one_line(tmp_path, tiny_model, capsys):
    gone = make_checkpoint(tmp_path / "gone", tiny_model, seed=5)
    chosen.choose(str(gone))
    shutil.rmtree(gone)
    capsys.readouterr()
    assert cli.main(["generate", "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"the chosen model {gone} no longer exists" in err and len(err.splitlines()) == 1
    assert "no longer exists" in chosen.current().line()


def test_the_playground_starts_on_the_chosen_model_and_says_so(ckpt):
    at = AppTest.from_file(str(ROOT / "pages" / "playground.py"), default_timeout=120).run()
    assert not at.exception and not any(c.value.startswith("chosen model") for c in at.caption)
    chosen.choose(str(ckpt))
    at = AppTest.from_file(str(ROOT / "pages" / "playground.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox[0].value["checkpoint"] == str(ckpt)
    assert at.selectbox[0].value["label"].endswith("· chosen model")
    assert at.caption[0].value == f"chosen model: {ckpt}"


def test_the_quality_page_chooses_the_checkpoint_shown(ckpt):
    store.checkpoints.record("run-1", str(ckpt), 10, "sha")
    at = AppTest.from_file(str(ROOT / "pages" / "quality.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox[0].value == str(ckpt)
    button = next(b for b in at.button if b.label == "Choose this model")
    assert not button.disabled
    at = button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert store.chosen.get().checkpoint == str(ckpt)
    at = at.run()
    assert next(b for b in at.button if b.label == "Choose this model").disabled


# ---- serve: requests ----------------------------------------------------------------------------


def test_the_last_user_message_is_the_requirement_and_the_rest_is_read_as_documented():
    job = serve.parse(
        {
            "model": "anything",
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "..."},
                {"role": "user", "content": [{"type": "text", "text": "Orders have items."}]},
            ],
            "diagram_type": "Class",
            "max_tokens": 50,
            "temperature": 0.7,
        },
        320,
    )
    assert job.message == prompts.request("Orders have items.", "class")
    assert job.max_tokens == 50 and job.stream is False
    assert serve.parse({"messages": [{"role": "user", "content": "x"}], "stream": True}, 320).max_tokens == 320


@pytest.mark.parametrize(
    "body, param",
    [
        ([], None),
        ({}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "x"}], "diagram_type": "uml"}, "diagram_type"),
    ],
)
def test_a_bad_request_names_its_field(body, param):
    with pytest.raises(serve.BadRequest) as refused:
        serve.parse(body, 320)
    assert refused.value.param == param


def test_waiting_requests_are_decoded_together_and_answer_as_alone(tiny_model, ckpt, capsys):
    engine = generate.Engine(str(tiny_model))
    alone = [engine.generate([p], str(ckpt), max_new_tokens=12)[0] for p in PROMPTS]
    batcher = serve.Batcher(engine, str(ckpt), slots=4)
    jobs = [batcher.submit(serve.Job(p, 12)) for p in PROMPTS]  # waiting before the worker starts
    streamed = batcher.submit(serve.Job(PROMPTS[0], 12, stream=True))
    too_long = batcher.submit(serve.Job("word " * 9000, 12))
    batcher.start()
    for job, expected in zip(jobs, alone):
        row, prompt_tokens = job.result.result(timeout=120)
        assert row.output == expected.output and prompt_tokens > 0
    pieces = iter(streamed.pieces.get, serve._DONE)
    assert "".join(pieces).strip() == alone[0].output
    with pytest.raises(serve.BadRequest, match="context"):
        too_long.result.result(timeout=120)
    batcher.stop()
    err = capsys.readouterr().err
    assert "5 request(s) answered in" in err and ", 3 of them decoded together" in err


def test_with_repair_a_streamed_request_gets_the_checked_text_as_one_chunk(tiny_model, ckpt):
    batcher = serve.Batcher(generate.Engine(str(tiny_model)), str(ckpt), repair=True)
    streamed = batcher.submit(serve.Job(PROMPTS[1], 12, stream=True))
    batcher.start()
    row, _ = streamed.result.result(timeout=300)
    batcher.stop()
    assert row.valid is not None  # PlantUML checked it
    assert list(iter(streamed.pieces.get, serve._DONE)) == [row.output]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no --checkpoint given and no chosen model"),
        (["--checkpoint", "no/such/ckpt"], "checkpoint 'no/such/ckpt' not found"),
        (["--checkpoint", "base", "--port", "70000"], "--port 70000: a port number from 1 to 65535"),
        (["--checkpoint", "base", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_serve_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_serve_on_a_taken_port_is_one_line_exit_2(ckpt, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--checkpoint", str(ckpt), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in err and len(err.splitlines()) == 1


# ---- serve: the real server over HTTP -------------------------------------------------------------


def call(url: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def listening_addresses(port: int) -> list[str]:
    """The local addresses with a listening TCP socket on `port` (Linux /proc/net/tcp and tcp6, hex)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                found.append(address)
    return found


@pytest.fixture
def server(ckpt, umlstudio_home, tmp_path):
    """`umlstudio serve` with no --checkpoint, on the chosen model, in its own process."""
    chosen.choose(str(ckpt))
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--port", "0", "--max-new-tokens", "16"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "UMLSTUDIO_HOME": str(umlstudio_home), "OMP_NUM_THREADS": "1"},
    )
    lines = []
    deadline = time.monotonic() + 180
    while not lines or not lines[-1].startswith("serving"):
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, log.read_text()[-3000:]
        lines.append(line)
    port = int(lines[-1].split("127.0.0.1:")[1].split("/")[0])
    yield port, lines, log
    proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn shuts down, then the command ends as any interrupted one
    assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text() and log.read_text().endswith("interrupted\n")


@pytest.mark.e2e
def test_serve_answers_openai_requests_on_loopback_only(server, ckpt):
    port, lines, log = server
    base = f"http://127.0.0.1:{port}/v1"
    assert lines[0].strip() == f"chosen model: {ckpt}"
    assert listening_addresses(port) == ["0100007F"]  # 127.0.0.1, and no IPv6 or wildcard socket

    status, models = call(f"{base}/models")
    assert status == 200 and models["data"][0]["id"] == "run/checkpoint-10"

    answers: dict[int, tuple[int, dict]] = {}

    def ask(i: int) -> None:
        answers[i] = call(
            f"{base}/chat/completions",
            {"model": "x", "messages": [{"role": "user", "content": PROMPTS[i]}], "max_tokens": 12},
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for i in range(2):
        status, answer = answers[i]
        assert status == 200, answer
        assert answer["object"] == "chat.completion" and answer["model"] == "run/checkpoint-10"
        assert answer["id"].startswith("chatcmpl-") and isinstance(answer["created"], int)
        choice = answer["choices"][0]
        assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
        usage = answer["usage"]
        assert 0 < usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    _, again = call(
        f"{base}/chat/completions", {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 12}
    )
    assert again["choices"][0]["message"] == answers[0][1]["choices"][0]["message"]  # alone as together

    status, refused = call(f"{base}/chat/completions", {"messages": []})
    assert status == 400 and refused["error"]["type"] == "invalid_request_error"
    assert refused["error"]["param"] == "messages"
    status, refused = call(f"{base}/chat/completions", raw=b"{not json")
    assert status == 400 and "not valid JSON" in refused["error"]["message"]
    status, refused = call(f"{base}/completions", {"prompt": "x"})
    assert status == 404 and "error" in refused

    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=json.dumps(
            {"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 12, "stream": True}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        events = [line[6:] for line in answer.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == again["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    try:
        import openai
    except ImportError:
        return  # not a dependency: plain HTTP above is what any client sends
    client = openai.OpenAI(base_url=base, api_key="any")
    reply = client.chat.completions.create(
        model="anything", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=12
    )
    assert reply.choices[0].message.content == again["choices"][0]["message"]["content"]
