"""`instructkit serve`: the server started as a user starts it, in a subprocess on a free port, on the embedded test
preset. Answers equal `evaluation.generation.generate`'s (greedy), streamed answers reassemble to the plain ones,
concurrent requests all succeed and equal their one-at-a-time answers, every bad request gets its status and an
OpenAI-style error while the server keeps serving, a full queue answers 503 with Retry-After, SIGTERM stops it cleanly.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

KEY = "test-key-123"
MAX_NEW_TOKENS = 16
PROMPTS = ["Reverse cat.", "Add 3 and 4.", "Upper case dog.", "Classify the sentiment of: the food was fresh",
           "Write backwards: a much longer prompt with many more tokens in it than the first one has",
           "Make upper case: gcw", "Add 12 and 30.", "Reverse house."]


class Server:
    """`instructkit serve embedded --port 0 ...` in a subprocess; the port it prints."""

    def __init__(self, *args: str, env: dict | None = None):
        cmd = [sys.executable, "-m", "instructkit.commands.main", "serve", "embedded", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.stdout_lines = []
        line = ""
        deadline = time.time() + 180
        while time.time() < deadline and "serving " not in line:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.proc.stderr.read()[-3000:]}")
            self.stdout_lines.append(line)
        self.host, self.port = re.search(r"on http://([\d.]+):(\d+)", line).groups()
        self.port = int(self.port)
        while time.time() < deadline:  # listening once uvicorn has started
            try:
                if self.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)

    def request(self, method: str, path: str, body=None, key: str | None = KEY, headers: dict | None = None,
                timeout: float = 120):
        """(status, headers, parsed JSON or raw text)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
                **(headers or {})}
        try:
            conn.request(method, path, body=data, headers=hdrs)
            response = conn.getresponse()
            raw = response.read().decode()
            kind = response.getheader("Content-Type") or ""
            return response.status, dict(response.getheaders()), json.loads(raw) if "json" in kind else raw
        finally:
            conn.close()

    def post(self, path: str, body, **kw):
        return self.request("POST", path, body, **kw)


def events(raw: str) -> list:
    """The `data:` payloads of a server-sent event stream (JSON, or the final "[DONE]")."""
    payloads = [block.removeprefix("data: ") for block in raw.split("\n\n") if block.strip()]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


@pytest.fixture(scope="module")
def server(embedded):
    srv = Server("--max_new_tokens", str(MAX_NEW_TOKENS), "--max_prompt_tokens", "64", "--max_body_bytes", "4096",
                 env={"INSTRUCTKIT_API_KEY": KEY})
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.fixture(scope="module")
def loaded(embedded):
    from instructkit.modeling.loading import load_for_inference

    return load_for_inference(str(embedded.model_dir))


def greedy(loaded, prompts: list, max_new_tokens: int = MAX_NEW_TOKENS, **kw) -> list[dict]:
    """One at a time, in this process: what every answer must equal."""
    from instructkit.evaluation.generation import Row, generate

    model, tok = loaded
    rows = [Row(stop=tuple(kw.get("stop", ())))]
    return [generate(model, tok, [p], max_new_tokens, batch_size=1, rows=rows)[0] for p in prompts]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.slow
def test_binds_loopback_and_answers_health_and_models(server):
    assert server.host == "127.0.0.1"
    status, _, health = server.request("GET", "/health", key=None)  # no key needed for the health check
    assert status == 200 and health["status"] == "ok" and health["model"] == "embedded"
    status, _, models = server.request("GET", "/v1/models")
    assert status == 200 and models["object"] == "list" and [m["id"] for m in models["data"]] == ["embedded"]


@pytest.mark.slow
def test_chat_and_completions_answer_as_generate_does_with_usage(server, loaded):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Add 3 and 4."}]
    expected = greedy(loaded, [messages, user("Reverse cat.")], 5)
    status, _, chat = server.post("/v1/chat/completions", {"model": "anything", "messages": messages, "max_tokens": 5})
    assert status == 200, chat
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-") and chat["model"] == "embedded"
    assert chat["choices"] == [{"index": 0, "message": {"role": "assistant", "content": expected[0]["text"]},
                                "finish_reason": expected[0]["finish_reason"], "logprobs": None}]
    assert chat["usage"] == {"prompt_tokens": expected[0]["prompt_tokens"],
                             "completion_tokens": expected[0]["completion_tokens"],
                             "total_tokens": expected[0]["prompt_tokens"] + expected[0]["completion_tokens"]}
    status, _, text = server.post("/v1/completions", {"prompt": "Reverse cat.", "max_tokens": 5})  # one user turn
    assert status == 200 and text["object"] == "text_completion"
    assert text["choices"][0]["text"] == expected[1]["text"] and text["usage"]["completion_tokens"] <= 5


@pytest.mark.slow
@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": user("Reverse cat.")}),
    ("/v1/chat/completions", {"messages": user("Write backwards: a much longer prompt with many tokens")}),
    ("/v1/completions", {"prompt": "Add 12 and 30."}),
])
def test_a_streamed_answer_reassembles_to_the_plain_one(server, path, body):
    status, _, plain = server.post(path, body)
    assert status == 200, plain
    status, headers, raw = server.post(path, {**body, "stream": True})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    chunks = events(raw)
    assert chunks[-1] == "[DONE]" and all(isinstance(c, dict) and c["id"] == chunks[0]["id"] for c in chunks[:-1])
    chat = path.endswith("chat/completions")
    pieces = [c["choices"][0]["delta"].get("content") or "" if chat else c["choices"][0]["text"] for c in chunks[:-1]]
    answer = plain["choices"][0]["message"]["content"] if chat else plain["choices"][0]["text"]
    assert "".join(pieces) == answer and len([p for p in pieces if p]) >= 2  # several token groups
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert last["usage"] == plain["usage"] and all(c["usage"] is None for c in chunks[:-2])
    if chat:
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


@pytest.mark.slow
def test_stop_strings_cut_the_answer_before_them(server, loaded):
    full = greedy(loaded, [user("Write backwards: a much longer prompt with many tokens")])[0]["text"]
    assert len(full) > 4, full
    stop = full[2:4]
    status, _, cut = server.post("/v1/chat/completions", {"messages": user("Write backwards: a much longer prompt "
                                                                           "with many tokens"), "stop": [stop, "zzz"]})
    assert status == 200 and cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == full[:full.index(stop)]


@pytest.mark.slow
def test_eight_concurrent_requests_all_succeed_with_their_one_at_a_time_answers(server, loaded):
    expected = [a["text"] for a in greedy(loaded, [user(p) for p in PROMPTS])]
    before = server.request("GET", "/health")[2]

    def ask(i):
        body = {"messages": user(PROMPTS[i]), "stream": i % 2 == 1}
        status, _, reply = server.post("/v1/chat/completions", body)
        if body["stream"]:
            return status, "".join(c["choices"][0]["delta"].get("content") or "" for c in events(reply)[:-1])
        return status, reply["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    assert [status for status, _ in results] == [200] * 8
    assert [text for _, text in results] == expected
    after = server.request("GET", "/health")[2]
    assert after["answered"] - before["answered"] == 8 and after["largest_batch"] > 1  # they were batched


BAD_REQUESTS = [
    ("bad JSON", "/v1/chat/completions", b'{"messages": [', {}, 400, "the request body is not valid JSON"),
    ("not an object", "/v1/chat/completions", b"[1, 2]", {}, 400, "the request body is not a JSON object"),
    ("empty body", "/v1/chat/completions", b"", {}, 400, "the request body is empty"),
    ("missing messages", "/v1/chat/completions", {"prompt": "hi"}, {}, 400, "'messages' is required"),
    ("unknown role", "/v1/chat/completions", {"messages": [{"role": "assistent", "content": "hi"}]}, {}, 400,
     "'messages[0].role': unknown role 'assistent'"),
    ("content not text", "/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, {}, 400,
     "'messages[0].content': must be a string or a list of"),
    ("max_tokens a string", "/v1/chat/completions", {"messages": user("hi"), "max_tokens": "5"}, {}, 400,
     "'max_tokens': Input should be a valid integer"),
    ("temperature out of range", "/v1/completions", {"prompt": "hi", "temperature": 5}, {}, 400,
     "'temperature': Input should be less than or equal to 2"),
    ("max_tokens over the cap", "/v1/chat/completions", {"messages": user("hi"), "max_tokens": 999}, {}, 400,
     f"'max_tokens' is 999, over this server's limit of {MAX_NEW_TOKENS} tokens (instructkit serve --max_new_tokens)"),
    ("prompt over the cap", "/v1/completions", {"prompt": "cat " * 80}, {}, 400,
     "over this server's limit of 64 (instructkit serve --max_prompt_tokens)"),
    ("body over the cap", "/v1/completions", {"prompt": "x" * 5000}, {}, 400,
     "the request body is over this server's limit of 4096 bytes (instructkit serve --max_body_bytes)"),
    ("n=2", "/v1/chat/completions", {"messages": user("hi"), "n": 2}, {}, 400, "'n': is 2: this server gives one"),
    ("unsupported field", "/v1/chat/completions", {"messages": user("hi"), "tools": []}, {}, 400,
     "'tools' is not a field of this request"),
    ("ends with the assistant", "/v1/chat/completions", {"messages": user("hi") + [{"role": "assistant",
                                                                                    "content": "x"}]}, {}, 400,
     "'messages' does not end with a user turn"),
    ("no API key", "/v1/chat/completions", {"messages": user("hi")}, {"key": None}, 401, "a valid API key is required"),
    ("wrong API key", "/v1/models", None, {"key": "nope"}, 401, "a valid API key is required"),
    ("unknown path", "/v2/complete", {}, {}, 404, "no such endpoint POST /v2/complete"),
]


@pytest.mark.slow
@pytest.mark.parametrize("what, path, body, kw, status, message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_a_bad_request_gets_its_status_and_an_openai_error_and_the_server_keeps_serving(server, what, path, body, kw,
                                                                                         status, message):
    method = "GET" if path == "/v1/models" else "POST"
    got, headers, reply = server.request(method, path, body, **kw)
    assert got == status and headers["content-type"] == "application/json", (got, reply)
    assert set(reply) == {"error"} and set(reply["error"]) == {"message", "type", "param", "code"}
    assert message in reply["error"]["message"], reply
    assert server.request("GET", "/health")[0] == 200 and server.proc.poll() is None


@pytest.mark.slow
def test_the_server_still_answers_after_the_bad_requests_and_logged_no_traceback(server):
    status, _, reply = server.post("/v1/chat/completions", {"messages": user("Reverse cat."), "max_tokens": 3})
    assert status == 200 and reply["usage"]["completion_tokens"] <= 3
    os.set_blocking(server.proc.stderr.fileno(), False)
    logged = server.proc.stderr.read() or ""
    assert "Traceback" not in logged and " 500 " not in logged


@pytest.mark.slow
def test_sigterm_stops_the_server_cleanly_after_answering_what_is_in_flight(embedded):
    srv = Server("--max_new_tokens", "8")
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"messages": user("Reverse cat."), "stream": True}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()  # the stream has started
    srv.proc.send_signal(signal.SIGTERM)
    raw = response.read().decode()
    conn.close()
    out, err = srv.proc.communicate(timeout=60)
    assert srv.proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "Application shutdown complete" in err
    assert "stopped: 1 requests answered in 1 batches" in out
    assert response.status == 200 and events(raw)[-1] == "[DONE]"


def test_a_full_queue_answers_503_with_retry_after_at_once(embedded, loaded):
    """In process, with the model's worker never started: one request takes the only waiting slot, the next is
    refused at once instead of hanging."""
    import uvicorn

    from instructkit.serving.app import Settings, create_app
    from instructkit.serving.server import bind
    from instructkit.serving.worker import Worker

    model, tok = loaded
    worker = Worker(model, tok, max_batch_size=1, max_waiting=1)
    worker.start = lambda: None  # nothing answers: the waiting slot stays taken
    sock = bind("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(create_app(worker, tok, Settings(name="m")), log_level="warning",
                                     timeout_graceful_shutdown=1))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    srv = Server.__new__(Server)
    srv.host, srv.port = sock.getsockname()[:2]
    while not uv.started:
        time.sleep(0.05)
    try:
        stuck = threading.Thread(target=lambda: srv.post("/v1/completions", {"prompt": "hi"}, timeout=30), daemon=True)
        stuck.start()
        while not worker.waiting:
            time.sleep(0.05)
        status, headers, reply = srv.post("/v1/completions", {"prompt": "hi"}, timeout=30)
        assert status == 503 and headers["retry-after"] == "1" and reply["error"]["code"] == "queue_full"
        assert "all 1 waiting slots are taken (instructkit serve --max_waiting)" in reply["error"]["message"]
    finally:
        uv.should_exit = True
        thread.join(30)


def test_max_tokens_defaults_to_what_fits_the_context_and_past_it_is_a_400_naming_it():
    from types import SimpleNamespace as NS

    from instructkit.serving.app import ApiError, Settings, answer_limit

    settings = Settings(name="m", max_new_tokens=64, max_prompt_tokens=200, context=100)
    ask = lambda n: NS(max_tokens=n, max_completion_tokens=None)  # noqa: E731
    assert answer_limit(ask(None), 30, "messages", settings) == 64   # the server's default
    assert answer_limit(ask(None), 90, "messages", settings) == 10   # what is left of the context
    assert answer_limit(ask(10), 90, "messages", settings) == 10
    for n, prompt, message in [(20, 90, "the prompt (90 tokens) and 'max_tokens' (20) do not fit the model's "
                                        "context of 100 tokens"),
                               (None, 100, "the prompt (100 tokens) leaves no room for an answer in the model's "
                                           "context of 100 tokens"),
                               (65, 10, "'max_tokens' is 65, over this server's limit of 64 tokens"),
                               (None, 201, "the prompt is 201 tokens, over this server's limit of 200")]:
        with pytest.raises(ApiError) as info:
            answer_limit(ask(n), prompt, "messages", settings)
        assert info.value.status == 400 and message in info.value.message
