"""Serving under load: `instructkit serve` (FastAPI + uvicorn, one model thread batching the waiting requests) against
the server it replaced (standard library, one generation at a time; its code is kept below, not in the package), in
the same run, on the same model, prompts and machine.

    python benchmarks/serving.py [--quick] [--clients 32] [--requests 20]   # -> benchmarks/results/serving.json
    python benchmarks/serving.py old-server MODEL                            # the old server alone (port printed)

Each arm: N client threads, each with one keep-alive connection, sending M chat requests one after another (greedy,
max_tokens 64, held-out prompts of the embedded data), so N requests are in flight at any time. Measured per request:
latency (request sent -> answer complete), time to first token (-> first content chunk when streamed; the whole
answer otherwise, since nothing arrives earlier), errors (any non-200, broken stream or timeout). Loopback only;
bounded in count (N x M per arm) and time (each request 120 s, each arm `ARM_SECONDS`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, ROOT, env, log  # noqa: E402

MAX_TOKENS = 64
REQUEST_SECONDS = 120
ARM_SECONDS = 900
WARMUP = 4

# --- the old server: src/instructkit/serving.py before issue 21, trimmed to what a client sees ------------------------

OLD_SERVER = r'''
import json, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from instructkit.data.formats import RowProblem, inference_prompt
from instructkit.evaluation.generation import generate, sampling


class BadRequest(Exception):
    pass


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


'''


def old_server(model_dir: str) -> None:
    """Load the model as `instructkit serve` did, serve on a free loopback port, print it, stop on SIGTERM."""
    from instructkit.modeling.loading import load_for_inference

    scope: dict = {}
    exec(compile(OLD_SERVER, "old_serving.py", "exec"), scope)
    model, tokenizer = load_for_inference(model_dir)
    server = scope["Server"](("127.0.0.1", 0), model, tokenizer, "old", max_new_tokens=256)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving old on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


# --- clients ---------------------------------------------------------------------------------------------------------

def start(cmd: list[str], name: str) -> tuple[subprocess.Popen, int, Path]:
    log_path = ROOT / ".cache" / "bench" / "logs" / f"serving-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=ROOT)
    deadline = time.time() + 600
    for line in proc.stdout:
        log_file.write(line)
        found = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found[1])
            break
        if time.time() > deadline:
            break
    else:
        raise RuntimeError(f"{name} server did not start; see {log_path}")
    threading.Thread(target=lambda: [log_file.write(l) for l in proc.stdout], daemon=True).start()
    for _ in range(600):
        try:
            if get(port, "/health")[0] == 200:
                return proc, port, log_path
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} server never answered /health; see {log_path}")


def get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def one_request(conn: http.client.HTTPConnection, messages: list, stream: bool) -> dict:
    body = json.dumps({"messages": messages, "max_tokens": MAX_TOKENS, "stream": stream})
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        response.read()
        return {"ok": False, "error": f"HTTP {response.status}", "latency": time.perf_counter() - t0}
    if not stream:
        reply = json.loads(response.read())
        latency = time.perf_counter() - t0
        return {"ok": True, "latency": latency, "ttft": latency, "text": reply["choices"][0]["message"]["content"],
                "tokens": reply["usage"]["completion_tokens"]}
    first, pieces, usage, done = None, [], None, False
    while True:
        line = response.readline()
        if not line:
            break
        line = line.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        event = json.loads(line[6:])
        piece = event["choices"][0]["delta"].get("content") if event.get("choices") else None
        if piece:
            first = first or time.perf_counter()
            pieces.append(piece)
        usage = event.get("usage") or usage
    latency = time.perf_counter() - t0
    if not done or usage is None:
        return {"ok": False, "error": "stream ended without [DONE] / usage", "latency": latency}
    return {"ok": True, "latency": latency, "ttft": (first or time.perf_counter()) - t0, "text": "".join(pieces),
            "tokens": usage["completion_tokens"], "chunks": len(pieces)}


def load_test(port: int, prompts: list, clients: int, per_client: int, stream: bool) -> dict:
    """`clients` threads x `per_client` requests; every record keyed by (client, request)."""
    records: dict = {}
    deadline = time.time() + ARM_SECONDS

    def client(c: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
        for r in range(per_client):
            if time.time() > deadline:
                records[(c, r)] = {"ok": False, "error": "arm time limit", "latency": float("nan")}
                continue
            try:
                records[(c, r)] = one_request(conn, prompts[(c * per_client + r) % len(prompts)], stream)
            except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
                records[(c, r)] = {"ok": False, "error": f"{type(err).__name__}: {err}", "latency": float("nan")}
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
        conn.close()

    health: list[float] = []
    running = threading.Event()

    def probe():  # how long a health check takes while the model is busy (the event loop must stay free)
        while running.is_set():
            t = time.perf_counter()
            try:
                get(port, "/health")
                health.append(time.perf_counter() - t)
            except OSError:
                health.append(float("inf"))
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    running.set()
    prober = threading.Thread(target=probe, daemon=True)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    prober.start()
    for t in threads:
        t.join()
    running.clear()
    prober.join(30)
    return {"wall_s": time.perf_counter() - t0, "records": records, "health": health}


def pct(xs: list, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def summary(run: dict) -> dict:
    recs = list(run["records"].values())
    ok = [r for r in recs if r["ok"]]
    lat, ttft = [r["latency"] for r in ok], [r["ttft"] for r in ok]
    errors: dict = {}
    for r in recs:
        if not r["ok"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {"requests": len(recs), "ok": len(ok), "errors": len(recs) - len(ok), "error_kinds": errors,
            "wall_s": run["wall_s"], "requests_per_s": len(ok) / run["wall_s"],
            "completion_tokens_per_s": sum(r["tokens"] for r in ok) / run["wall_s"],
            "latency_p50_s": pct(lat, 50), "latency_p95_s": pct(lat, 95), "latency_mean_s": statistics.fmean(lat)
            if lat else float("nan"), "ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95),
            "mean_completion_tokens": statistics.fmean(r["tokens"] for r in ok) if ok else float("nan"),
            "mean_chunks": statistics.fmean(r["chunks"] for r in ok) if ok and "chunks" in ok[0] else None,
            "health_checks": len(run["health"]), "health_p50_s": pct(run["health"], 50),
            "health_max_s": max(run["health"], default=float("nan"))}


def prompts_of(data_dir: str, n: int = 200) -> list:
    from instructkit.data.formats import inference_prompt

    rows = [json.loads(line) for line in open(Path(data_dir) / "test.jsonl")][:n]
    return [inference_prompt(r) for r in rows]


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def arm(cmd: list, name: str, prompts: list, clients: int, per_client: int, streams: tuple) -> dict:
    """Start one server, warm it up, run its load tests, stop it (its exit code and log are recorded)."""
    proc, port, log_path = start(cmd, name)
    out = {}
    try:
        load_test(port, prompts, min(WARMUP, clients), 1, False)  # first calls: lazy imports, caches
        for stream in streams:
            before = get(port, "/health")[1]
            run = load_test(port, prompts, clients, per_client, stream)
            after = get(port, "/health")[1]
            key = f"{name}_{'stream' if stream else 'plain'}"
            out[key] = {"summary": summary(run), "texts": {f"{c},{r}": v.get("text") for (c, r), v in
                                                           run["records"].items()}}
            if "batches" in after:
                batches = after["batches"] - before["batches"]
                out[key]["summary"]["mean_batch_size"] = (after["answered"] - before["answered"]) / max(batches, 1)
                out[key]["summary"]["largest_batch"] = after["largest_batch"]
            log(f"{key}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in out[key]["summary"].items() if k != "error_kinds"))
    finally:
        code = stop(proc)
    for key in out:
        out[key]["summary"]["server_exit_code"] = code
        out[key]["summary"]["server_log"] = str(log_path.relative_to(ROOT))
    return out


def measure(model_dir: str, data_dir: str, clients: int = 32, per_client: int = 20) -> dict:
    prompts = prompts_of(data_dir)
    new_cmd = [PY, "-m", "instructkit.commands.main", "serve", model_dir, "--port", "0"]
    old_cmd = [PY, str(Path(__file__).resolve()), "old-server", model_dir]
    arms = {**arm(old_cmd, "old", prompts, clients, per_client, (False,)),
            **arm(new_cmd, "new", prompts, clients, per_client, (False, True))}
    old_texts = arms["old_plain"]["texts"]
    for key, value in arms.items():
        texts = value.pop("texts")
        both = [k for k, t in texts.items() if t is not None and old_texts.get(k) is not None]
        value["summary"]["compared_with_old"] = len(both)
        value["summary"]["same_answer_as_old"] = sum(texts[k] == old_texts[k] for k in both)
    return {"model_dir": model_dir, "clients": clients, "requests_per_client": per_client, "max_tokens": MAX_TOKENS,
            "prompts": len(prompts), "new_command": f"instructkit serve {model_dir} --port 0".replace(str(ROOT) + "/", ""),
            "arms": {k: v["summary"] for k, v in arms.items()}}


def main() -> None:
    if sys.argv[1:2] == ["old-server"]:
        return old_server(sys.argv[2])
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the test preset, 4 clients x 3 requests")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=20)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.update({k: v for k, v in env().items() if k.startswith(("HF_", "INSTRUCTKIT_", "TRANSFORMERS_"))})
    import assets
    from common import save

    emb = assets.embedded(True) if a.quick else assets.embedded_full()
    result = measure(emb["model_dir"], emb["data_dir"], 4 if a.quick else a.clients, 3 if a.quick else a.requests)
    print(save("serving", {"quick": a.quick, **result}))


if __name__ == "__main__":
    main()
