"""`umlstudio serve`: the chosen model (or `--checkpoint`) behind an OpenAI-compatible HTTP API on
127.0.0.1, so another tool can use it: `POST /v1/chat/completions` and `GET /v1/models`.

One base model is loaded (core.inference.generate's Engine) and one worker thread owns it. Requests
wait in a queue; each time the worker is free it takes every waiting request and decodes them
together with `Engine.generate` (continuous batching over the engine's slots: a row leaves when it
ends and the next waiting one takes its slot). Requests that arrive while a batch decodes form the
next batch. Requests with different `max_tokens` are decoded one `max_tokens` group after another.
The loop guard is always on; `--repair` checks each output with PlantUML and repairs a rejected one.

What a request means: the last `user` message is the requirement, sent as the one user message the
model was trained on (a `system` message and earlier turns are ignored: training never showed the
model one). `max_tokens` (or `max_completion_tokens`) caps the new tokens; a non-standard
`diagram_type` (e.g. `"class"`, through the client's extra body) states the wanted type in the prompt
the way training states it. `model` may name anything: there is one model. Decoding is greedy, so
`temperature`, `top_p` and `seed` are accepted and have no effect; `n` above 1 is refused.
`stream: true` answers with server-sent events: the text as it is generated (such a request is
decoded alone, after the batch it arrived with), or with `--repair` the checked (and maybe repaired)
text as one chunk, decoded with the batch, since text already sent cannot be taken back.

Starlette and uvicorn (both already installed with Streamlit) do the HTTP: keep-alive, chunked
server-sent events and method routing are theirs, not hand-written.
"""

import asyncio
import json
import queue
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.data import prompts
from core.errors import UserError
from core.inference.generate import Engine, Generation
from core.training import checkpoints

HOST = "127.0.0.1"
_DONE = object()  # ends a streamed answer's queue of pieces


@dataclass
class Job:
    """One request waiting for the worker."""

    message: str  # the user message (prompts.request)
    max_tokens: int
    stream: bool = False
    result: Future = field(default_factory=Future)  # the Generation, and the prompt's token count
    pieces: "queue.Queue" = field(default_factory=queue.Queue)  # stream: text pieces, then _DONE


class Batcher:
    """The worker thread that owns the engine: it decodes the waiting requests together."""

    def __init__(self, engine: Engine, checkpoint: str, *, repair: bool = False, slots: int = 16):
        self.engine, self.checkpoint, self.repair, self.slots = engine, checkpoint, repair, slots
        self.waiting: queue.Queue[Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="umlstudio-serve", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.waiting.put(None)
        self.thread.join()

    def submit(self, job: Job) -> Job:
        self.waiting.put(job)
        return job

    def _work(self) -> None:
        while True:
            first = self.waiting.get()
            if first is None:
                return
            batch, ending = [first], False
            while not self.waiting.empty():
                job = self.waiting.get()
                if job is None:
                    ending = True
                    break
                batch.append(job)
            try:
                self._decode(batch)
            except Exception as exc:  # those requests fail (a 500), the server goes on
                for job in batch:
                    self._fail(job, exc)
            if ending:
                return

    def _decode(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        ready = []
        for job in batch:
            try:
                prompt_tokens = len(self.engine.encode([job.message], job.max_tokens)[0])
            except UserError as exc:  # the prompt does not fit the context: this request only
                self._fail(job, BadRequest(str(exc), "messages"))
                continue
            ready.append((job, prompt_tokens))
        together = [(job, n) for job, n in ready if not (job.stream and not self.repair)]
        for limit in sorted({job.max_tokens for job, _ in together}):
            group = [(job, n) for job, n in together if job.max_tokens == limit]
            rows = self.engine.generate(
                [job.message for job, _ in group],
                self.checkpoint,
                max_new_tokens=limit,
                batch_size=self.slots,
                repair=self.repair,
            )
            for (job, n), row in zip(group, rows):
                assert row is not None  # without should_stop every row finishes
                if job.stream:
                    job.pieces.put(row.output)
                    job.pieces.put(_DONE)
                job.result.set_result((row, n))
        for job, n in ready:
            if job.stream and not self.repair:
                self._stream(job, n)
        print(
            f"{len(batch)} request(s) answered in {time.perf_counter() - started:.2f} s, "
            f"{len(together)} of them decoded together",
            file=sys.stderr,
            flush=True,
        )

    def _stream(self, job: Job, prompt_tokens: int) -> None:
        """One streamed request, alone: its text pieces as they come."""
        pieces = self.engine.stream(self.checkpoint, job.message, job.max_tokens)
        while True:
            try:
                job.pieces.put(next(pieces))
            except StopIteration as done:
                job.result.set_result((done.value, prompt_tokens))
                break
        job.pieces.put(_DONE)

    @staticmethod
    def _fail(job: Job, exc: BaseException) -> None:
        if not job.result.done():
            job.result.set_exception(exc)
        if job.stream:
            job.pieces.put(_DONE)


# ---- the HTTP side --------------------------------------------------------------------------------


class BadRequest(Exception):
    """A request the API refuses: 400 with an OpenAI-style error."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status)


def model_id(checkpoint: str) -> str:
    """The model's name in the API: `run/checkpoint-N`, or `base`."""
    if checkpoint == checkpoints.BASE:
        return checkpoints.BASE
    path = Path(checkpoint)
    return f"{path.parent.name}/{path.name}"


def _text(content) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    raise BadRequest("messages: a message's content must be a string or a list of text parts", "messages")


def parse(body, default_max_tokens: int) -> Job:
    """The Job a chat-completions body asks for; BadRequest naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: a non-empty list of {role, content} objects is required", "messages")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise BadRequest("messages: no user message — the last user message is the requirement", "messages")
    requirement = _text(users[-1].get("content")).strip()
    if not requirement:
        raise BadRequest("messages: the last user message is empty — send the requirement", "messages")
    diagram_type = body.get("diagram_type")
    if diagram_type is not None:
        if not isinstance(diagram_type, str) or diagram_type.lower() not in prompts.TYPE_NAMES:
            raise BadRequest(f"diagram_type: one of {', '.join(prompts.TYPE_NAMES)}", "diagram_type")
        diagram_type = diagram_type.lower()
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = default_max_tokens
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadRequest("max_tokens: a whole number of at least 1", "max_tokens")
    n = body.get("n", 1)
    if n != 1:
        raise BadRequest("n: only 1 is supported (decoding is greedy: every choice would be the same)", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: true or false", "stream")
    return Job(prompts.request(requirement, diagram_type), limit, stream)


def finish_reason(row: Generation) -> str:
    return "length" if row.truncated else "stop"


def app(batcher: Batcher, default_max_tokens: int) -> Starlette:
    """The API over a started Batcher."""
    name = model_id(batcher.checkpoint)
    created = int(time.time())

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "umlstudio"}]}
        )

    async def chat_completions(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the body is not valid JSON")
        try:
            job = parse(body, default_max_tokens)
        except BadRequest as exc:
            return error(400, str(exc), exc.param)
        completion = f"chatcmpl-{uuid.uuid4().hex}"
        now = int(time.time())
        batcher.submit(job)
        if job.stream:
            return StreamingResponse(_events(job, completion, now, name), media_type="text/event-stream")
        try:
            row, prompt_tokens = await asyncio.wrap_future(job.result)
        except BadRequest as exc:
            return error(400, str(exc), exc.param)
        except Exception as exc:
            return error(500, f"generation failed: {exc}", kind="server_error")
        return JSONResponse(
            {
                "id": completion,
                "object": "chat.completion",
                "created": now,
                "model": name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": row.output},
                        "finish_reason": finish_reason(row),
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": row.tokens,
                    "total_tokens": prompt_tokens + row.tokens,
                },
            }
        )

    async def not_served(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        return error(status, f"{request.method} {request.url.path}: {getattr(exc, 'detail', exc)}")

    return Starlette(
        exception_handlers={HTTPException: not_served},
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
    )


def _events(job: Job, completion: str, created: int, name: str):
    """The server-sent events of a streamed answer (a blocking iterator: Starlette runs it in a thread)."""

    def chunk(delta: dict, reason: str | None = None) -> str:
        body = {
            "id": completion,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while (piece := job.pieces.get()) is not _DONE:
        yield chunk({"content": piece})
    try:
        row, _ = job.result.result()
    except Exception as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
    else:
        yield chunk({}, finish_reason(row))
    yield "data: [DONE]\n\n"


def listen(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` (0: any free port); UserError when the port is taken."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: a port number from 1 to 65535 (0: any free port)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"--port {port}: cannot listen on {HOST}:{port} ({exc.strerror}) — pick another port") from None
    sock.listen(128)
    return sock


def run(sock: socket.socket, batcher: Batcher, default_max_tokens: int) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn

    batcher.start()
    config = uvicorn.Config(app(batcher, default_max_tokens), log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        batcher.stop()
        sock.close()
