"""`instructkit serve`: on 127.0.0.1 by default, /generate and OpenAI-style /v1/chat/completions, clear 400s."""

import json
import threading
import urllib.error
import urllib.request

import pytest


@pytest.fixture(scope="module")
def server(embedded):
    from instructkit.modeling.loading import load_for_inference
    from instructkit.serving import make_server

    model, tok = load_for_inference(str(embedded.model_dir))
    srv = make_server(model, tok, "embedded-test", port=0, max_new_tokens=16)  # port 0: any free port
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def post(srv, path, body):
    host, port = srv.server_address[:2]
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def greedy(srv, messages, max_new_tokens):
    from instructkit.evaluation.generation import generate

    return generate(srv.model, srv.tokenizer, [messages], max_new_tokens)[0]


def test_binds_localhost_by_default(server):
    assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0


def test_generate_answers_like_the_evaluation_code(server):
    status, body = post(server, "/generate", {"prompt": "Reverse cat.", "max_new_tokens": 6})
    expected = greedy(server, [{"role": "user", "content": "Reverse cat."}], 6)
    assert status == 200
    assert body == {"text": expected["text"], "stopped": expected["stopped"], "prompt_tokens": expected["prompt_tokens"],
                    "completion_tokens": expected["completion_tokens"], "model": "embedded-test"}
    assert body["prompt_tokens"] > 5 and 1 <= body["completion_tokens"] <= 6


def test_chat_completions_has_the_openai_shape(server):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Add 3 and 4."}]
    status, body = post(server, "/v1/chat/completions", {"model": "whatever", "messages": messages, "max_tokens": 5})
    expected = greedy(server, messages, 5)
    assert status == 200
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "embedded-test"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": expected["text"]},
                                "finish_reason": "stop" if expected["stopped"] else "length"}]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["completion_tokens"] <= 5


@pytest.mark.parametrize("path, body, message", [
    ("/v1/chat/completions", {"prompt": "hi"}, "'messages' is required"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True},
     "streaming is not supported"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 999},
     "'max_tokens' must be between 1 and 16, got 999"),
    ("/generate", {"text": "hi"}, "'prompt' missing"),
    ("/generate", {"messages": [{"role": "user", "content": 3}]}, "'messages[0].content' is not a string"),
    ("/generate", {"prompt": "hi", "temperature": "hot"}, "'temperature' must be a number"),
    ("/generate", b"{not json", "the request body is not valid JSON"),
])
def test_bad_requests_get_a_400_with_the_reason(server, path, body, message):
    status, reply = post(server, path, body)
    assert status == 400 and message in reply["error"]["message"], reply


def test_unknown_paths_and_models(server):
    assert post(server, "/v2/complete", {})[0] == 404
    host, port = server.server_address[:2]
    with urllib.request.urlopen(f"http://{host}:{port}/v1/models", timeout=30) as response:
        assert json.loads(response.read())["data"][0]["id"] == "embedded-test"
