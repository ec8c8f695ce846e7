"""The FastAPI app of `instructkit serve`: OpenAI's chat completions and completions (streamed as server-sent events or
not), the model list and a health check, in front of the model's one `worker.Worker` thread.

The event loop only validates, counts prompt tokens (in a thread of its own, with its own tokenizer copy: a fast
tokenizer must not be used by two threads at once) and relays the worker's events; it never waits on the model.
Every refusal is an OpenAI-style JSON error, `{"error": {"message", "type", "param", "code"}}`: 400 for a bad
request (bad JSON, a missing or unknown field, a wrong type, a value over a limit, naming the limit and its flag),
401 without the API key, 404 / 405 for a wrong path or method, 503 with Retry-After when every waiting slot is taken.
"""

import asyncio
import copy
import json
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import format_sse_event
from starlette.exceptions import HTTPException

from instructkit.data.formats import RowProblem, inference_prompt
from instructkit.evaluation.generation import sampling
from instructkit.serving.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ErrorBody,
    ModelCard,
    ModelList,
    Usage,
)
from instructkit.serving.worker import Job, QueueFull, ShuttingDown, Worker

RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class Settings:
    """What a server answers with and what it refuses (each limit has its `instructkit serve` flag)."""

    name: str                           # the model id answers carry
    max_new_tokens: int = 256           # a request's max_tokens: the default and the cap (--max_new_tokens)
    max_prompt_tokens: int = 4096       # --max_prompt_tokens
    max_body_bytes: int = 1 << 20       # --max_body_bytes
    context: int | None = None          # the model's positions: prompt + answer must fit
    temperature: float = 0.0            # for requests that give none (--temperature; 0 = greedy)
    top_p: float = 1.0
    api_key: str | None = field(default=None, repr=False)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers


def error_response(err: ApiError) -> JSONResponse:
    body = ErrorBody(error={"message": err.message, "type": err.kind, "param": err.param, "code": err.code})
    return JSONResponse(body.model_dump(), status_code=err.status, headers=err.headers)


def create_app(worker: Worker, tokenizer, settings: Settings) -> FastAPI:
    """The app; its lifespan starts and stops `worker`."""
    counter = PromptCounter(tokenizer)

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        worker.stop()
        counter.close()

    app = FastAPI(title="instructkit serve", lifespan=lifespan, strict_content_type=False)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_error_handlers(app)
    started, key = int(time.time()), [Depends(api_key_check(settings.api_key))]

    @app.get("/health")
    async def health():
        return {"status": "stopping" if worker.stopping else "ok", "model": settings.name, **worker.load()}

    @app.get("/v1/models", response_model=ModelList, dependencies=key)
    async def models():
        return ModelList(data=[ModelCard(id=settings.name, created=started)])

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=key,
              responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def chat_completions(body: ChatCompletionRequest):
        prompt = prompt_of({"messages": [m.as_turn() for m in body.messages]}, tokenizer, "messages")
        return await respond(body, prompt, "chat", worker, counter, settings)

    @app.post("/v1/completions", response_model=Completion, dependencies=key,
              responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 503: {"model": ErrorBody}})
    async def completions(body: CompletionRequest):
        prompt = prompt_of({"prompt": body.prompt}, tokenizer, "prompt")
        return await respond(body, prompt, "text", worker, counter, settings)

    return app


def prompt_of(data: dict, tokenizer, param: str):
    """The prompt as `instructkit generate` reads a row (`data.formats.inference_prompt`): messages ending with a
    user turn, or a string as one user turn; through the chat template when the model has one."""
    try:
        return inference_prompt(data, chat=bool(tokenizer.chat_template))
    except RowProblem as err:
        raise ApiError(400, f"'{err.field_name}' {err.problem}: {err.fix}", param=err.field_name or param,
                       code="invalid_prompt") from None


async def respond(body, prompt, kind: str, worker: Worker, counter, settings: Settings):
    """Queue the request with the worker; the answer, or its stream of server-sent events."""
    prompt_tokens = await counter.count(prompt)
    max_tokens = answer_limit(body, prompt_tokens, "messages" if kind == "chat" else "prompt", settings)
    temperature = settings.temperature if body.temperature is None else body.temperature
    top_p = settings.top_p if body.top_p is None else body.top_p
    job = Job(prompt, max_tokens, sampling(temperature, top_p), asyncio.get_running_loop(), stop=tuple(body.stop or ()),
              seed=body.seed, stream=body.stream)
    try:
        worker.submit(job)
    except QueueFull:
        raise ApiError(503, f"the server is busy: all {worker.max_waiting} waiting slots are taken "
                            f"(instructkit serve --max_waiting); retry after {RETRY_AFTER_SECONDS} s",
                       code="queue_full", kind="server_busy",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except ShuttingDown:
        raise ApiError(503, "the server is shutting down", code="shutting_down", kind="server_busy") from None
    meta = {"id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
            "model": settings.name}
    if body.stream:
        return StreamingResponse(events(job, kind, meta), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    event, value = await next_end(job)
    if event == "error":
        raise ApiError(503 if "shutting down" in value else 500, value, kind="server_error")
    usage = usage_of(value)
    if kind == "chat":
        return ChatCompletion(**meta, usage=usage, choices=[ChatChoice(
            message=AssistantMessage(content=value["text"]), finish_reason=value["finish_reason"])])
    return Completion(**meta, usage=usage,
                      choices=[CompletionChoice(text=value["text"], finish_reason=value["finish_reason"])])


def answer_limit(body, prompt_tokens: int, param: str, settings: Settings) -> int:
    """The request's max_tokens, checked against --max_new_tokens, --max_prompt_tokens and the model's context."""
    asked_key = next((k for k in ("max_completion_tokens", "max_tokens") if getattr(body, k, None) is not None), None)
    asked = getattr(body, asked_key) if asked_key else None
    if asked is not None and asked > settings.max_new_tokens:
        raise ApiError(400, f"'{asked_key}' is {asked}, over this server's limit of {settings.max_new_tokens} "
                            "tokens (instructkit serve --max_new_tokens)", param=asked_key, code="max_tokens_over_limit")
    if prompt_tokens > settings.max_prompt_tokens:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens, over this server's limit of "
                            f"{settings.max_prompt_tokens} (instructkit serve --max_prompt_tokens)", param=param,
                       code="prompt_over_limit")
    room = settings.max_new_tokens if settings.context is None else settings.context - prompt_tokens
    if room < 1 or (asked is not None and asked > room):
        what = f"and '{asked_key}' ({asked}) do not fit" if asked else "leaves no room for an answer in"
        raise ApiError(400, f"the prompt ({prompt_tokens} tokens) {what} the model's context of {settings.context} "
                            "tokens", param=asked_key or param, code="context_length_exceeded")
    return asked if asked is not None else min(settings.max_new_tokens, room)


def usage_of(answer: dict) -> Usage:
    return Usage(prompt_tokens=answer["prompt_tokens"], completion_tokens=answer["completion_tokens"],
                 total_tokens=answer["prompt_tokens"] + answer["completion_tokens"])


async def next_end(job: Job):
    """The job's ("done", answer) or ("error", message), skipping streamed text."""
    while True:
        event, value = await job.events.get()
        if event != "text":
            return event, value


def chunk(kind: str, meta: dict, text: str | None = None, answer: dict | None = None, first: bool = False) -> bytes:
    """One server-sent event in OpenAI's chunk form; the last one carries the finish reason and the usage."""
    finish = answer["finish_reason"] if answer else None
    if kind == "chat":
        delta = {"role": "assistant", "content": ""} if first else ({} if text is None else {"content": text})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = {**meta, "object": "chat.completion.chunk", "choices": [choice]}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        payload = {**meta, "object": "text_completion", "choices": [choice]}
    payload["usage"] = usage_of(answer).model_dump() if answer else None
    return format_sse_event(data_str=json.dumps(payload, ensure_ascii=False))


async def events(job: Job, kind: str, meta: dict):
    """The stream: one chunk per group of tokens that arrived together, the final chunk, then `data: [DONE]`.
    A client that goes away cancels its row at the worker's next token."""
    try:
        if kind == "chat":
            yield chunk(kind, meta, first=True)
        while True:
            pending = [await job.events.get()]
            while not job.events.empty():
                pending.append(job.events.get_nowait())
            text = "".join(value for event, value in pending if event == "text")
            if text:
                yield chunk(kind, meta, text)
            end = next(((event, value) for event, value in pending if event != "text"), None)
            if end is not None:
                if end[0] == "done":
                    yield chunk(kind, meta, answer=end[1])
                else:
                    yield format_sse_event(data_str=json.dumps({"error": {"message": end[1], "type": "server_error",
                                                                          "param": None, "code": None}}))
                yield format_sse_event(data_str="[DONE]")
                return
    finally:
        job.cancelled.set()


class PromptCounter:
    """Prompt lengths in tokens, counted off the event loop in one thread with its own tokenizer copy."""

    def __init__(self, tokenizer):
        self.tokenizer = copy.deepcopy(tokenizer)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instructkit-tokenizer")

    def tokens(self, prompt) -> int:
        if isinstance(prompt, str):
            return len(self.tokenizer(prompt)["input_ids"])
        return len(self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"])

    async def count(self, prompt) -> int:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.tokens, prompt)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def api_key_check(api_key: str | None):
    """A dependency: 401 unless the request carries `Authorization: Bearer <api_key>` (no key: open)."""

    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "a valid API key is required: send the header 'Authorization: Bearer <key>' with "
                                "the key given to instructkit serve (--api-key or INSTRUCTKIT_API_KEY)",
                           code="invalid_api_key")

    return check


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """(message, param) for pydantic's errors about a request body, one clause per field."""
    clauses, params = [], []
    for err in errors:
        loc = [p for p in err["loc"] if p != "body"]
        if err["type"] == "json_invalid":
            return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')} at " \
                   f"character {loc[0] if loc else 0})", None
        if not loc:
            what = "empty" if err["type"] == "missing" else "not a JSON object"
            return f"the request body is {what}: send a JSON object (Content-Type: application/json)", None
        param = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(loc))
        message = err["msg"].removeprefix("Value error, ")
        clauses.append(f"'{param}' is required" if err["type"] == "missing" else
                       f"'{param}' is not a field of this request (not supported by this server)"
                       if err["type"] == "extra_forbidden" else f"'{param}': {message}")
        params.append(param)
    return "; ".join(clauses), (params[0] if params else None)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        message, param = validation_message(list(err.errors()))
        return error_response(ApiError(400, message, param=param, code="invalid_request"))

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        message = (f"no such endpoint {request.method} {request.url.path}: use POST /v1/chat/completions, POST "
                   "/v1/completions, GET /v1/models or GET /health") if err.status_code in (404, 405) else str(err.detail)
        return error_response(ApiError(err.status_code, message, code={404: "not_found", 405: "method_not_allowed"}.get(err.status_code),
                                       headers=getattr(err, "headers", None)))

    @app.exception_handler(Exception)
    async def unexpected(request, err: Exception):
        return error_response(ApiError(500, f"internal error: {type(err).__name__}: {err}", kind="server_error"))


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 400 before anything parses it (by its
    Content-Length, or while it arrives when it has none)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self.refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self.refuse(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def refuse(self, scope, receive, send):
        err = ApiError(400, f"the request body is over this server's limit of {self.max_bytes} bytes (instructkit "
                            "serve --max_body_bytes)", code="body_over_limit")
        await error_response(err)(scope, receive, send)
