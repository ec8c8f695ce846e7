"""`instructkit serve`: a small local HTTP endpoint to try a tuned model from other tools. Not a production server:
no authentication, no batching across requests (one generation at a time), no streaming. Standard library only.

    POST /generate              {"prompt": "Reverse cat."} or {"messages": [...]}, optional "max_new_tokens",
                                "temperature" (0 = greedy), "top_p"
                                -> {"text", "stopped", "prompt_tokens", "completion_tokens", "model"}
    POST /v1/chat/completions   OpenAI-style: {"messages": [...], "max_tokens", "temperature", "top_p"}
                                -> {"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
                                    "message": {"role": "assistant", "content"}, "finish_reason"}], "usage"}
    GET  /v1/models, /health

Binds 127.0.0.1 unless told otherwise. Answers come from `evaluation.generation.generate` (chat template, end-of-turn stop).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from instructkit.data.formats import RowProblem, inference_prompt
from instructkit.errors import InstructkitError
from instructkit.evaluation.generation import generate, sampling

LOCALHOST = "127.0.0.1"


class BadRequest(Exception):
    """A request the server answers with 400 and this message."""


def _number(body: dict, key: str, default, kind, low, high):
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise BadRequest(f"'{key}' must be a {'whole number' if kind is int else 'number'}, got {value!r}")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return kind(value)


class Server(ThreadingHTTPServer):
    """The HTTP server, holding the model; `answer` serializes generation (one model, one request at a time)."""

    daemon_threads = True

    def __init__(self, address, model, tokenizer, name: str, max_new_tokens: int = 256):
        super().__init__(address, Handler)
        self.model, self.tokenizer, self.name, self.max_new_tokens = model, tokenizer, name, max_new_tokens
        self.lock = threading.Lock()

    def answer(self, body: dict, prompt_keys: dict, max_tokens_keys: tuple[str, ...]) -> dict:
        if body.get("stream"):
            raise BadRequest("streaming is not supported by this smoke-test server; send \"stream\": false")
        if body.get("n", 1) != 1:
            raise BadRequest("only n=1 is supported")
        try:
            prompt = inference_prompt(prompt_keys, chat=bool(self.tokenizer.chat_template))
        except RowProblem as err:
            raise BadRequest(f"'{err.field_name}' {err.problem}: {err.fix}") from None
        key = next((k for k in max_tokens_keys if body.get(k) is not None), max_tokens_keys[0])
        max_new = _number(body, key, self.max_new_tokens, int, 1, self.max_new_tokens)
        kwargs = sampling(_number(body, "temperature", 0.0, float, 0.0, 2.0), _number(body, "top_p", 1.0, float, 1e-6, 1.0))
        with self.lock:
            return generate(self.model, self.tokenizer, [prompt], max_new, batch_size=1, **kwargs)[0]


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "instructkit-serve"
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") in ("", "/health"):
            self._json(200, {"status": "ok", "model": self.server.name})
        elif self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server.name, "object": "model",
                                                         "owned_by": "instructkit"}]})
        else:
            self._error(404, f"no such endpoint {self.path}: use POST /generate or POST /v1/chat/completions")

    def do_POST(self):  # noqa: N802
        try:
            body = self._body()
            if self.path.rstrip("/") == "/generate":
                prompt = {k: body[k] for k in ("prompt", "messages") if k in body}
                answer = self.server.answer(body, prompt, ("max_new_tokens",))
                self._json(200, {**answer, "model": self.server.name})
            elif self.path.rstrip("/") == "/v1/chat/completions":
                if "messages" not in body:
                    raise BadRequest("'messages' is required: a list of {role, content} ending with a user turn")
                answer = self.server.answer(body, {"messages": body["messages"]}, ("max_completion_tokens",
                                                                                    "max_tokens"))
                self._json(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                    "model": self.server.name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["text"]},
                                 "finish_reason": "stop" if answer["stopped"] else "length"}],
                    "usage": {"prompt_tokens": answer["prompt_tokens"], "completion_tokens": answer["completion_tokens"],
                              "total_tokens": answer["prompt_tokens"] + answer["completion_tokens"]}})
            else:
                self._error(404, f"no such endpoint {self.path}: use POST /generate or POST /v1/chat/completions")
        except BadRequest as err:
            self._error(400, str(err))

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(f"the request body is not valid JSON ({err})") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        sys.stderr.write(f"[serve] {self.address_string()} {format % args}\n")


def make_server(model, tokenizer, name: str, host: str = LOCALHOST, port: int = 8000,
                max_new_tokens: int = 256) -> Server:
    """A bound server (port 0 = any free port; `server.server_address` says which); call `serve_forever`."""
    try:
        return Server((host, port), model, tokenizer, name, max_new_tokens)
    except OSError as err:
        raise InstructkitError(f"cannot listen on {host}:{port} ({err.strerror or err}).",
                               fix="pick another --port (0 = any free one), or stop what uses this one.") from None


def serve(model, tokenizer, name: str, host: str = LOCALHOST, port: int = 8000, max_new_tokens: int = 256) -> None:
    """Serve until Ctrl-C."""
    server = make_server(model, tokenizer, name, host, port, max_new_tokens)
    bound_host, bound_port = server.server_address[:2]
    if bound_host not in (LOCALHOST, "::1", "localhost"):
        print(f"warning: listening on {bound_host}, reachable from other machines; this server has no "
              "authentication and is meant for local smoke tests", file=sys.stderr, flush=True)
    print(f"serving {name} on http://{bound_host}:{bound_port}  (POST /generate, POST /v1/chat/completions; "
          "Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
