"""`evaluation.generation.generate` with per-row requests (`Row`, what `instructkit serve` batches): each row's own
limit, stop strings, streamed text and early answer, inside one left-padded `generate` call, equal to the answers
the plain call gives one prompt at a time."""

import pytest

from instructkit.evaluation.generation import Row, generate, settled

PROMPTS = [[{"role": "user", "content": "Reverse cat."}],
           [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Add 3 and 4."}],
           [{"role": "user", "content": "Write backwards: a much longer prompt with many more tokens in it"}],
           [{"role": "user", "content": "Upper case dog."}]]


@pytest.fixture(scope="module")
def loaded(embedded):
    from instructkit.modeling.loading import load_for_inference

    return load_for_inference(str(embedded.model_dir))


@pytest.fixture
def stops_early(monkeypatch, loaded):
    """The test preset is barely trained: it never ends its turn, but it writes <|endoftext|> every few tokens. Made
    a stop token here, rows end at it as at an end of turn, well within the limits below."""
    from instructkit.evaluation import generation

    _, tok = loaded
    real = generation.stop_token_ids
    monkeypatch.setattr(generation, "stop_token_ids",
                        lambda t: real(t) + [tok.convert_tokens_to_ids("<|endoftext|>")])


def alone(loaded, prompt, max_new_tokens):
    model, tok = loaded
    return generate(model, tok, [prompt], max_new_tokens, batch_size=1)[0]


def test_rows_without_requests_answer_as_the_plain_call(loaded, stops_early):
    model, tok = loaded
    plain = generate(model, tok, PROMPTS, 12)
    tracked = generate(model, tok, PROMPTS, 12, rows=[Row() for _ in PROMPTS])
    assert tracked == plain
    assert all(a["finish_reason"] == ("stop" if a["stopped"] else "length") for a in plain)
    assert any(a["stopped"] for a in plain) and plain[0]["completion_tokens"] >= 1


def test_each_row_keeps_its_own_limit_streams_its_text_and_is_answered_when_it_ends(loaded, stops_early):
    model, tok = loaded
    limits = [2, 12, 5, 12]
    pieces, done = [[] for _ in PROMPTS], [[] for _ in PROMPTS]
    rows = [Row(max_new_tokens=n, on_text=pieces[i].append, on_done=done[i].append) for i, n in enumerate(limits)]
    answers = generate(model, tok, PROMPTS, 12, rows=rows)
    for i, (prompt, n) in enumerate(zip(PROMPTS, limits)):
        expected = alone(loaded, prompt, n)
        assert answers[i] == expected and done[i] == [expected]  # answered once, with the answer
        assert "".join(pieces[i]) == expected["text"]
        assert expected["completion_tokens"] <= n
    assert answers[0]["finish_reason"] == "length" and answers[0]["completion_tokens"] == 2
    assert answers[1]["stopped"] and answers[1]["completion_tokens"] < 12  # ended before the others
    assert max(len(p) for p in pieces) >= 2  # streamed in several pieces, not only at the end


def test_stop_strings_end_a_row_before_them_and_never_stream_them(loaded):
    model, tok = loaded
    full = alone(loaded, PROMPTS[2], 12)["text"]
    assert len(full) > 4, full
    stop = full[2:4]
    pieces = []
    answer = generate(model, tok, [PROMPTS[2], PROMPTS[0]], 12,
                      rows=[Row(stop=(stop,), on_text=pieces.append), Row()])[0]
    assert answer["text"] == full[:full.index(stop)] and answer["finish_reason"] == "stop"
    assert not answer["stopped"]  # it did not end its turn: a stop string ended it
    assert "".join(pieces) == answer["text"]


def test_a_cancelled_row_ends_at_the_next_token_and_the_others_go_on(loaded):
    model, tok = loaded
    answers = generate(model, tok, PROMPTS[:2], 12, rows=[Row(cancelled=lambda: True), Row()])
    assert answers[0]["completion_tokens"] == 1
    assert answers[1] == alone(loaded, PROMPTS[1], 12)


@pytest.mark.parametrize("text, stop, expected", [
    ("hello wor", ("world",), "hello "),        # "wor" may become "world": held back
    ("hello", ("lo!",), "hel"),
    ("hello", ("xyz",), "hello"),
    ("caf\ufffd", (), "caf"),                    # an incomplete UTF-8 character: held back
    ("abc", (), "abc"),
])
def test_settled_holds_back_what_may_still_change(text, stop, expected):
    assert settled(text, stop) == expected
