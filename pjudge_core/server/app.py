"""The OpenAI-compatible HTTP server: `build_app(lm, ...)` is a FastAPI app over one started engine.

Contract:
  * One model, loaded by whoever starts the server (`python -m pjudge_core serve`); a request names
    it (its id or name) or leaves ``model`` out, and nothing a client sends loads another model or
    reaches the server's files.
  * ``GET /v1/models``; ``POST /v1/chat/completions`` (`protocol` says what a body may hold). Every
    request becomes a `Job` submitted to one `Engine` stepping in its own thread, so concurrent
    requests decode together, each exactly as alone (the engine's contract); the answer equals
    `generate`'s for the same spec, personas, settings and seed.
  * Streaming is server-sent events in OpenAI's chunk format: a first chunk with the role, one per
    decided token (text held back while it may begin a stop string; with ``return_steps`` each chunk
    carries its steps), a last one with ``finish_reason`` and the run's figures, the usage when
    ``stream_options.include_usage`` asks, then ``[DONE]``.
  * A client that disconnects cancels its request: its rows are freed at the next step, the other
    requests go on.
  * Every refusal is OpenAI's error shape with one sentence (`protocol.ApiError`): 400 for a request
    that cannot run (the library's own messages), 404 for another model or an unknown path, 413 for
    a body over `max_body` bytes, 429 when a public server's queue is full, 503 when the device ran
    out of memory for it. A public server (`access.public`) also applies the app's public limits:
    characters of the conversation and preferences, new tokens, seconds per run, waiting requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..engine.engine import DEFAULT_ROWS, Engine
from ..engine.job import Job
from ..engine.loading import LoadedModel
from ..engine.personas import labelled
from ..engine.trace import Holdback
from ..errors import InputError, OutOfMemory, PJudgeError
from ..ui.access import Access
from . import protocol
from .protocol import ApiError, ChatCall

MAX_BODY = 1 << 20  # bytes: a conversation far over any context this project runs
POLL_S = 0.25  # how often a waiting request looks for its client's disconnect


class Arrivals:
    """What the engine's thread reports for one job ((job, step), then (job, None) at its end),
    handed to the event loop's queue: the job's `listener`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.queue = loop, asyncio.Queue()

    def put(self, event) -> None:  # called in the engine's thread
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop closed (the server is shutting down): nobody is listening
            pass


class Service:
    """The served model, its engine, its names and its limits."""

    def __init__(self, lm: LoadedModel, names: tuple[str, ...] = (), rows: int = DEFAULT_ROWS,
                 access: Access | None = None, max_body: int = MAX_BODY, defaults: dict | None = None):
        self.lm = lm
        self.names = tuple(dict.fromkeys([*names, lm.name]))  # the first is what answers carry
        self.defaults = dict(defaults or {})  # body fields a request leaves out (`protocol.read_chat`)
        self.access = access or Access()
        self.max_body = max_body
        self.engine = Engine(lm, rows).start()
        self.active: set[Job] = set()  # requests submitted and not yet over for their clients

    def prepare(self, call: ChatCall) -> Job:
        """The request's job (its prompts built and checked), within the public limits."""
        prefs = labelled(call.personas)
        self.access.check_run(call.messages, prefs, call.settings)
        return call.spec.job(self.lm, call.messages, prefs, call.settings)

    def submit(self, job: Job, arrivals: Arrivals) -> None:
        access = self.access
        if access.public and len(self.active) >= self.engine.rows + access.queue_size:
            raise ApiError(f"This public server is busy ({len(self.active)} requests running or waiting); try again "
                           "in a minute.", status=429, kind="rate_limit_error")
        self.engine.submit(job, arrivals)
        self.active.add(job)


def build_app(lm: LoadedModel, *, names: tuple[str, ...] = (), rows: int = DEFAULT_ROWS,
              access: Access | None = None, max_body: int = MAX_BODY, defaults: dict | None = None) -> FastAPI:
    """The server's FastAPI app (see the module docstring); its engine stops with the app. `names`:
    what clients may call the model besides its own name (the first is what answers carry);
    `defaults`: ``personas`` and ``spec`` for requests that leave them out."""
    service = Service(lm, names, rows, access, max_body, defaults)
    app = FastAPI(title="Persona-judge", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=_lifespan(service))
    app.state.service = service

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown paths, wrong methods
        error = ApiError(f"{request.method} {request.url.path}: {exc.detail}.", status=exc.status_code,
                         code="not_found" if exc.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model(service)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        if name not in service.names:
            raise ApiError(f"The model {name!r} is not served here; this server serves {service.names[0]!r}.",
                           "model", status=404, code="model_not_found")
        return _model(service)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        call = protocol.read_chat(await _json(request, service.max_body), service.names, service.defaults)
        try:
            job = await run_in_threadpool(service.prepare, call)
        except InputError as exc:
            raise ApiError(str(exc), _param(str(exc))) from None
        arrivals = Arrivals(asyncio.get_running_loop())
        try:
            service.submit(job, arrivals)
        except ApiError:  # a public server's queue is full
            raise
        except InputError as exc:  # its rows could never fit the KV budget
            raise ApiError(str(exc), "max_tokens") from None
        if call.stream:
            return StreamingResponse(_stream(service, call, job, arrivals, request), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            async for _ in _events(service, job, arrivals, request):
                pass
        finally:
            _over(service, job)
        if job.state != "finished":
            raise _failure(job)
        return protocol.completion(call, service.names[0], job.result)

    return app


def _lifespan(service: Service):
    @asynccontextmanager
    async def lifespan(app):
        yield
        service.engine.close()  # the engine's thread stops with the server
    return lifespan


def _model(service: Service) -> dict:
    return {"id": service.names[0], "object": "model", "created": 0, "owned_by": "pjudge",
            "description": service.lm.describe()}


async def _json(request: Request, limit: int):
    """The body as JSON, read no further than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_big(int(declared), limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_big(len(body), limit)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(f"The request body is not valid JSON: {getattr(exc, 'msg', exc)}{where}.") from None


def _too_big(size: int, limit: int) -> ApiError:
    return ApiError(f"The request body is {size:,} bytes or more; this server takes at most {limit:,}.", status=413)


def _param(message: str) -> str | None:
    """Which field a library sentence is about, for the error's ``param``."""
    lowered = message.lower()
    if "prompt is" in lowered or "conversation" in lowered or "query" in lowered or "message" in lowered:
        return "messages"
    if "preference" in lowered or "persona" in lowered:
        return "personas"
    return None


async def _events(service: Service, job: Job, arrivals: Arrivals, request: Request) -> AsyncIterator:
    """The job's steps as the engine decides them, until it ends. Every `POLL_S`, steps flowing or not,
    it looks for the client's disconnect (then it cancels the job) and a public server's time per run."""
    limit = service.access.time_limit
    started = checked = time.monotonic()
    while True:
        try:
            _, step = await asyncio.wait_for(arrivals.queue.get(), POLL_S)
        except asyncio.TimeoutError:
            step = _NOTHING
        if step is None:
            return
        now = time.monotonic()
        if now - checked >= POLL_S:
            checked = now
            if await request.is_disconnected():
                service.engine.cancel(job)
                return
        if limit is not None and now - started > limit:
            service.engine.cancel(job)
            raise ApiError(f"This public server stops each run after {limit:g} s; ask for fewer tokens "
                           "(max_tokens).", "max_tokens", status=408, kind="timeout_error")
        if step is not _NOTHING:
            yield step


_NOTHING = object()  # no step arrived within POLL_S


def _over(service: Service, job: Job) -> None:
    """The request is over for its client: a job still decoding is cancelled (its rows freed at the next step)."""
    if not job.done:
        service.engine.cancel(job)
    service.active.discard(job)


def _failure(job: Job) -> ApiError:
    error = job.error
    if isinstance(error, OutOfMemory):
        return ApiError(str(error), status=503, kind="server_error")
    if isinstance(error, PJudgeError):
        return ApiError(str(error))
    if job.state == "cancelled":
        return ApiError("The request was cancelled.", status=499)
    return ApiError(f"The run failed: {type(error).__name__}: {error}", status=500, kind="server_error")


async def _stream(service: Service, call: ChatCall, job: Job, arrivals: Arrivals, request: Request):
    """Server-sent events of one request (see the module docstring)."""
    model = service.names[0]
    holdback = Holdback(call.settings.stop)

    def event(payload) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        yield event(protocol.chunk(call, model, {"role": "assistant", "content": ""}))
        try:
            async for step in _events(service, job, arrivals, request):
                piece = holdback.push(step.text)
                if piece or call.return_steps:
                    more = {"pjudge": {"steps": [step.to_dict()]}} if call.return_steps else {}
                    yield event(protocol.chunk(call, model, {"content": piece}, **more))
        except ApiError as exc:  # the time limit, after the stream began: the error as an event
            yield event(exc.body())
            return
        if job.state != "finished":
            if not await request.is_disconnected():
                yield event(_failure(job).body())
            return
        result = job.result
        rest = holdback.finish(result.text)
        if rest:
            yield event(protocol.chunk(call, model, {"content": rest}))
        yield event(protocol.chunk(call, model, {}, protocol.finish_reason(result),
                                   pjudge=protocol.extra(call, result, steps=False)))
        if call.include_usage:
            yield event({**protocol.chunk(call, model, {}), "choices": [], "usage": protocol.usage(result)})
        yield "data: [DONE]\n\n"
    finally:  # also when the client went away and the response was cancelled
        _over(service, job)
