"""Data formats, row-level validation with file/row numbers, and the loss mask TRL builds from them."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from instructkit.config.arguments import InstructkitArguments
from instructkit.data.formats import RowProblem, convert_row, detect_format
from instructkit.data.loading import load_instructions
from instructkit.data.sources import Record, read_file, read_source
from instructkit.data.splits import exact_match_rows
from instructkit.errors import InstructkitError
from instructkit.training.sft import loss_settings


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def args_for(path, **kw):
    return InstructkitArguments(dataset_name=str(path), **kw)


ALPACA = [{"instruction": f"Reverse w{i}", "input": "", "output": f"{i}w"} for i in range(20)]


def test_alpaca_jsonl_becomes_conversational_prompt_completion(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "1 and 2", "output": "3",
                                              "system": "Be brief."}] + ALPACA)
    ds, report = load_instructions(args_for(path, test_split_size=5), seed=0)
    assert report.format == "alpaca" and report.conversational
    assert report.rows == {"train": 16, "test": 5}
    first = [r for r in list(ds["train"]) + list(ds["test"]) if r["completion"][0]["content"] == "3"][0]
    assert first["prompt"] == [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Add\n\n1 and 2"}]
    assert first["completion"] == [{"role": "assistant", "content": "3"}]


@pytest.mark.parametrize("suffix", ["json", "csv", "parquet"])
def test_other_file_types_read_the_same_rows(tmp_path, suffix):
    import pandas as pd

    path = tmp_path / f"a.{suffix}"
    frame = pd.DataFrame(ALPACA)
    {"json": lambda: path.write_text(json.dumps(ALPACA)), "csv": lambda: frame.to_csv(path, index=False),
     "parquet": lambda: frame.to_parquet(path)}[suffix]()
    records = read_file(path)
    assert [r.row for r in records] == list(range(1, 21))
    rows = [convert_row(r.data, "alpaca") for r in records]
    assert rows[7]["completion"][0]["content"] == "7w"


def test_sharegpt_and_messages_formats(tmp_path):
    share = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}] * 3)
    recs = read_file(share)
    assert detect_format(recs) == "sharegpt"
    assert convert_row(recs[0].data, "sharegpt")["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    msgs = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert detect_format([Record("x", 1, msgs)]) == "messages"


@pytest.mark.parametrize("row, field, problem", [
    ({"instruction": "x"}, "output", "missing"),
    ({"instruction": "x", "output": "  "}, "output", "is empty"),
    ({"instruction": 3, "output": "y"}, "instruction", "has type int, expected a string"),
])
def test_bad_alpaca_row_is_reported_with_its_row_number(tmp_path, row, field, problem):
    rows = list(ALPACA)
    rows.insert(6, row)  # the 7th row of the file
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InstructkitError) as err:
        load_instructions(args_for(path), seed=0)
    message = str(err.value)
    assert f"{path} row 7: field '{field}' {problem}" in message
    assert "on_bad_rows: skip" in message


@pytest.mark.parametrize("messages, problem", [
    ([{"role": "user", "content": "a"}], "has no assistant turn"),
    ([{"role": "user", "content": "a"}, {"role": "assistent", "content": "b"}], "unknown role 'assistent'"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}],
     "two 'user' turns in a row"),
    ([{"role": "assistant", "content": "a"}], "does not start with a user turn"),
])
def test_bad_conversations_are_named(messages, problem):
    with pytest.raises(RowProblem) as err:
        convert_row({"messages": messages}, "messages")
    assert problem in err.value.problem


def test_skip_bad_rows_counts_them_by_reason(tmp_path):
    rows = ALPACA + [{"instruction": "x"}, {"instruction": "y", "output": ""}, {"instruction": "z"}]
    ds, report = load_instructions(args_for(write_jsonl(tmp_path / "b.jsonl", rows), on_bad_rows="skip",
                                             test_split_size=0), seed=0)
    assert len(ds["train"]) == 20
    assert report.skipped == {"output missing": 2, "output is empty": 1}
    assert "skipped rows by reason: output missing: 2, output is empty: 1" in report.lines()[1]


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n{not json\n")
    with pytest.raises(InstructkitError, match=r"m.jsonl line 2: not valid JSON"):
        read_file(path)


def test_missing_data_file_is_one_clear_error(tmp_path):
    with pytest.raises(InstructkitError, match="does not exist"):
        read_source(str(tmp_path / "nope.jsonl"))


def test_folder_splits_by_file_name(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ALPACA)
    write_jsonl(tmp_path / "test.jsonl", ALPACA[:3])
    ds, report = load_instructions(args_for(tmp_path), seed=0)
    assert report.rows == {"train": 20, "test": 3}


def test_embedded_data_has_both_heldout_splits(embedded):
    ds, report = load_instructions(InstructkitArguments(), seed=0)
    assert set(ds) == {"train", "test", "test_phrasings"}
    assert report.format == "alpaca" and report.skipped == {}
    rows = exact_match_rows(ds["test"], 5)
    assert rows[0]["prompt"][-1]["role"] == "user" and rows[0]["target"] and rows[0]["task"]


def test_collated_labels_train_exactly_the_response_and_end_of_turn(embedded):
    """The real collator's labels: -100 on every prompt and pad position, the response + <|im_end|> trained.

    The template has generation markers, so the completion is masked to them too: ChatML's newline after
    <|im_end|> (rendered, not generated) is not trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    ds, report = load_instructions(InstructkitArguments(), seed=0)
    args = SFTConfig(output_dir="/tmp/ik-mask", bf16=False, use_cpu=True, report_to="none", max_length=128,
                     activation_checkpointing=False)
    vars(args).update(loss_settings(args, report, tok))
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(embedded.model_dir), args=args,
                         processing_class=tok, train_dataset=ds["train"].select(range(4)))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for i in range(4):
        row = ds["train"][i]
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        trained = [t for t, l in zip(ids, labels) if l != -100]
        assert tok.decode(trained) == row["completion"][0]["content"] + "<|im_end|>"  # not the newline after it
        prompt_len = len(tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])
        assert labels[:prompt_len] == [-100] * prompt_len       # every prompt token masked
        assert all(l == -100 for t, l in zip(ids, labels) if t == tok.pad_token_id)
        assert tok.eos_token_id in trained                      # the model learns to stop


def test_string_prompt_completion_rows_keep_completion_only_loss(tmp_path):
    """Plain strings are not rendered by the template, so TRL's assistant-only loss cannot apply (it would raise)."""
    from conftest import make_tokenizer
    from instructkit import chat_templates

    path = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"Q{i}", "completion": f" A{i}"} for i in range(4)])
    _, report = load_instructions(args_for(path, test_split_size=0), seed=0)
    tok = make_tokenizer()
    chat_templates.set_chat_template(tok, "chatml")
    args = SimpleNamespace(assistant_only_loss=False)
    vars(args).update(loss_settings(args, report, tok))
    assert not report.conversational and args.completion_only_loss and not args.assistant_only_loss


def test_conversational_prompt_completion_rows_are_accepted():
    row = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
           "completion": [{"role": "assistant", "content": "yo"}]}
    assert convert_row(row, "prompt_completion") == row
    with pytest.raises(RowProblem, match="user turn"):
        convert_row({**row, "prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
                         "prompt_completion")


def test_unreadable_file_is_one_clear_error(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"instruction": "caf\xe9", "output": "x"}\n'.encode("latin-1"))
    with pytest.raises(InstructkitError, match="cannot be read"):
        read_file(path)


# --- mixtures ---------------------------------------------------------------------------------------------

def mixture_args(entries, **kw):
    return InstructkitArguments(dataset_mixture=entries, **kw)


def test_mixture_proportions_follow_the_weights(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "output": "x", "task": "a"} for i in range(40)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"conversations": [{"from": "human", "value": f"b{i}"},
                                                              {"from": "gpt", "value": "y"}], "task": "b"}
                                           for i in range(10)])
    ds, report = load_instructions(mixture_args([{"path": str(a), "weight": 0.25}, {"path": str(b), "weight": 2}],
                                                 test_split_size=0), seed=0)
    assert [(m["rows"], m["used"]) for m in report.mixture] == [(40, 10), (10, 20)]
    tasks = [r["task"] for r in ds["train"]]
    assert tasks.count("a") == 10 and tasks.count("b") == 20
    # alpaca rows join ShareGPT conversations as messages: one form for TRL, assistant-only loss
    assert report.form == "messages" and all(r["messages"][-1]["role"] == "assistant" for r in ds["train"])
    # weight 2: every b row exactly twice; weight 0.25: a seeded sample, the same for the same seed
    b_prompts = [r["messages"][0]["content"] for r in ds["train"] if r["task"] == "b"]
    assert sorted(b_prompts) == sorted([f"b{i}" for i in range(10)] * 2)
    again, _ = load_instructions(mixture_args([{"path": str(a), "weight": 0.25}, {"path": str(b), "weight": 2}],
                                               test_split_size=0), seed=0)
    assert list(again["train"]) == list(ds["train"])


def test_mixture_renames_columns_and_splits_a_test_set(tmp_path):
    q = write_jsonl(tmp_path / "q.jsonl", [{"question": f"q{i}", "answer": "z"} for i in range(20)])
    ds, report = load_instructions(mixture_args([{"path": str(q), "columns": {"question": "instruction",
                                                                                 "answer": "output"}}],
                                                 test_split_size=4), seed=0)
    assert report.rows == {"train": 16, "test": 4} and report.mixture[0]["format"] == "alpaca"


@pytest.mark.parametrize("entry, message", [
    ({"path": "x.jsonl", "wieght": 2},
     "unknown key 'wieght' in dataset_mixture entry 1 \\(x.jsonl\\) in the config — did you mean 'weight'?"),
    ({"path": "x.jsonl", "weight": -1},
     "'weight' of dataset_mixture entry 1 \\(x.jsonl\\) in the config: -1 is not a positive number"),
    ({"weight": 1}, "has no path"),
])
def test_bad_mixture_entries_are_named(entry, message):
    with pytest.raises(InstructkitError, match=message):
        load_instructions(mixture_args([entry]), seed=0)


def test_string_prompt_completion_rows_do_not_mix_with_conversations(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "i", "output": "o"}] * 4)
    t = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "plain", "completion": " text"}] * 4)
    with pytest.raises(InstructkitError, match=f"{t} hold plain-string prompt/completion rows"):
        load_instructions(mixture_args([{"path": str(a)}, {"path": str(t)}]), seed=0)


def test_text_corpus_replays_next_to_conversations_with_the_entries_held_out_splits(tmp_path):
    """A .txt corpus (one row a line) mixed with conversations; test_split_size 0 keeps each entry's own held-out
    splits (here a folder's test.jsonl), not a slice of the mixture."""
    data = tmp_path / "chat"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [{"instruction": f"Reverse w{i}", "output": f"{i}w"} for i in range(20)])
    write_jsonl(data / "test.jsonl", [{"instruction": "Reverse q", "output": "q"}] * 3)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"statement {i} is true.\n" for i in range(40)) + "\n   \n")  # blank lines skipped
    assert [r.data for r in read_file(corpus)][:1] == [{"text": "statement 0 is true."}] and len(read_file(corpus)) == 40
    ds, report = load_instructions(mixture_args([{"path": str(data)}, {"path": str(corpus), "weight": 0.125}],
                                                 test_split_size=0), seed=0)
    assert [(m["format"], m["used"]) for m in report.mixture] == [("alpaca", 20), ("text", 5)]
    assert report.form == "messages+text" and report.conversational and report.rows == {"train": 25, "test": 3}
    kinds = [("text" if r["text"] is not None else "messages") for r in ds["train"]]
    assert kinds.count("text") == 5 and kinds.count("messages") == 20
    assert ds["test"][0]["prompt"][-1]["content"] == "Reverse q"  # the folder's own test split, as it is
    assert exact_match_rows(ds["train"], 100)  # text rows have no target; conversation rows do


def test_content_parts_are_joined_and_other_parts_named():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]}]}
    assert convert_row(row, "messages")["messages"] == [{"role": "user", "content": "Say hi"},
                                                        {"role": "assistant", "content": "Hi!"}]
    prompt = {"prompt": [{"role": "user", "content": [{"type": "text", "text": "Q"}]}],
              "completion": [{"role": "assistant", "content": [{"type": "text", "text": "A"}]}]}
    assert convert_row(prompt, "prompt_completion")["completion"] == [{"role": "assistant", "content": "A"}]
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}},
                                                       {"type": "text", "text": "What is this?"}]},
                          {"role": "assistant", "content": "A cat."}]}
    with pytest.raises(RowProblem) as info:
        convert_row(image, "messages")
    assert (info.value.field_name, info.value.problem) == (
        "messages[0].content[0]", "is an 'image_url' part, but instructkit trains text models on text parts only")
    with pytest.raises(RowProblem) as info:
        convert_row({"messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]},
                                  {"role": "assistant", "content": "y"}]}, "messages")
    assert info.value.problem == "has unknown part type 'txt' — did you mean 'text'?"


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def tool_row(call, tool_turns=1, tools=(WEATHER,)):
    messages = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "tool_calls": [call]}]
    messages += [{"role": "tool", "content": "21 C"}] * tool_turns + [{"role": "assistant", "content": "21 C."}]
    return {"messages": messages, **({"tools": list(tools)} if tools is not None else {})}


def test_tool_calls_are_validated_and_normalized():
    flat = convert_row(tool_row({"name": "get_weather", "arguments": '{"city": "Paris"}'}), "messages")
    assert flat["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert flat["messages"][2] == {"role": "tool", "content": "21 C", "name": "get_weather"}  # named after its call
    assert flat["tools"] == [WEATHER]
    as_string = convert_row({**tool_row({"function": {"name": "get_weather", "arguments": {}}}),
                             "tools": json.dumps([WEATHER])}, "messages")
    assert as_string["tools"] == [WEATHER]


@pytest.mark.parametrize("row, field, problem", [
    (tool_row({"function": {"name": "get_weather", "arguments": "{city: Paris}"}}),
     "messages[1].tool_calls[0].function.arguments", "is not valid JSON (Expecting property name enclosed in double "
                                                     "quotes at column 2)"),
    (tool_row({"function": {"name": "get_weather", "arguments": [1]}}),
     "messages[1].tool_calls[0].function.arguments", "is list, not a JSON object"),
    (tool_row({"function": {"name": "get_wether", "arguments": {}}}), "messages[1].tool_calls[0].function.name",
     "calls 'get_wether', which the row's tools do not declare (tools: get_weather) — did you mean 'get_weather'?"),
    (tool_row({"function": {"name": "get_weather"}}, tools=None), "messages[1].tool_calls[0].function.name",
     "calls 'get_weather', which the row's tools do not declare (it declares no tools)"),
    (tool_row({"function": {"arguments": {}}}), "messages[1].tool_calls[0]",
     "is not a call: it needs a 'function' with a 'name'"),
    (tool_row({"function": {"name": "get_weather"}}, tool_turns=2), "messages[3]",
     "is a tool turn with no preceding call to answer"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"},
                   {"role": "assistant", "content": "y"}]}, "messages[1]",
     "is a tool turn with no preceding call to answer"),
    ({**tool_row({"function": {"name": "get_weather"}}), "tools": "[{oops"}, "tools",
     "is a string that is not valid JSON (Expecting property name enclosed in double quotes at column 3)"),
])
def test_bad_tool_rows_are_named(row, field, problem):
    with pytest.raises(RowProblem) as info:
        convert_row(row, "messages")
    assert (info.value.field_name, info.value.problem) == (field, problem)


def test_tool_rows_keep_their_own_arguments_on_disk(tmp_path):
    """Arrow would give every call's arguments the keys of all the others, as nulls; rows with tools are stored as
    JSON (datasets' Json feature) and come back exactly."""
    add = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    rows = [tool_row({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}),
            {**tool_row({"function": {"name": "add", "arguments": {"x": 1, "y": 2}}}, tools=[add])},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    ds, report = load_instructions(args_for(write_jsonl(tmp_path / "tools.jsonl", rows), test_split_size=0), seed=0)
    calls = [r["messages"][1].get("tool_calls") for r in ds["train"]]
    assert calls[0][0]["function"]["arguments"] == {"city": "Paris"}
    assert calls[1][0]["function"]["arguments"] == {"x": 1, "y": 2}
    assert ds["train"][1]["tools"] == [add] and ds["train"][2]["tools"] is None
    assert "tool_calls" not in ds["train"][2]["messages"][1]


def test_padding_free_rows_are_truncated_flattened_and_give_the_padded_loss():
    """The recipes' default: rows flattened into one sequence (no pad token), each cut to max_length, same loss."""
    import torch

    from conftest import make_tokenizer, sft_trainer, tiny_model

    tok = make_tokenizer()
    rows = [{"prompt": "Add 1 and 2.", "completion": " 3"}, {"prompt": "Reverse cat.", "completion": " tac"},
            {"prompt": "Sort these.", "completion": " 1 2 3 4 5 6 7 8 9" * 4}]
    torch.manual_seed(0)
    model = tiny_model(tok)
    batches = {}
    for padding_free in (True, False):
        trainer, _ = sft_trainer(tok, rows, "prompt_completion", model=model, max_length=16,
                                 padding_free=padding_free, per_device_train_batch_size=3)
        assert trainer.data_collator.padding_free is padding_free  # TRL's collator, flattening when asked
        batches[padding_free] = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    flat, padded = batches[True], batches[False]
    lengths = padded["attention_mask"].sum(1).tolist()
    assert max(lengths) == 16 and min(lengths) < 16                 # the long row was cut to max_length
    assert flat["input_ids"].shape == (1, sum(lengths))             # one sequence, no pad token
    assert (flat["position_ids"][0] == 0).sum() == 3                # positions restart at every row
    assert (flat["labels"] != -100).sum() == (padded["labels"] != -100).sum()
    model.eval()
    with torch.no_grad():
        loss_flat = model(**{k: flat[k] for k in ("input_ids", "labels", "position_ids")}).loss
        loss_padded = model(**{k: padded[k] for k in ("input_ids", "labels", "attention_mask")}).loss
    assert torch.allclose(loss_flat, loss_padded, atol=1e-5), (loss_flat, loss_padded)


def test_loaded_rows_are_memory_mapped_and_keep_their_fingerprint(tmp_path):
    """Rows on disk (flat memory as data grows), named by content: the next run reuses TRL's tokenization cache."""
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Reverse w{i}", "output": f"{i}w"}) + "\n" for i in range(20)))
    args = InstructkitArguments(dataset_name=str(path), test_split_size=0.25)
    first, _ = load_instructions(args)
    again, _ = load_instructions(args)
    assert first["train"].cache_files and first["test"].cache_files
    assert first["train"]._fingerprint == again["train"]._fingerprint
    assert first["train"].num_rows == 15 and first["train"][0]["prompt"][0]["content"].startswith("Reverse w")
    path.write_text(path.read_text().replace("Reverse w3", "Reverse x3"))
    assert load_instructions(args).splits["train"]._fingerprint != first["train"]._fingerprint


def test_rows_written_batch_by_batch_get_the_types_of_all_rows(tmp_path):
    """A column that is null in the first batches and text later, and struct fields that first appear late, get the
    types and values that reading every row at once gives them."""
    from instructkit.data.storage import as_arrow

    rows = [{"instruction": f"Reverse w{i}", "output": f"{i}w", **({"task": "reverse"} if i >= 1500 else {}),
             **({"chat_template_kwargs": {"enable_thinking": False}} if i == 10 else {}),
             **({"chat_template_kwargs": {"style": "short"}} if i == 2200 else {})} for i in range(2500)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = load_instructions(InstructkitArguments(dataset_name=str(path), test_split_size=0)).train
    at_once = as_arrow([{**convert_row(r, "alpaca"), **{k: r[k] for k in ("task", "chat_template_kwargs") if k in r}}
                        for r in rows])
    assert train.features == at_once.features and train.to_list() == at_once.to_list()
    assert train[0]["task"] is None and train[2499]["task"] == "reverse"
    assert train[10]["chat_template_kwargs"] == {"enable_thinking": False, "style": None}


def test_bad_rows_across_batches_are_counted_and_the_first_named(tmp_path):
    """Streaming keeps the number and reason of a bad row, not the row: 25 bad rows of 2,500 in one message."""
    bad = {7 + 100 * k for k in range(25)}
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Reverse w{i}", "output": "" if i in bad else f"{i}w"}) + "\n"
                            for i in range(1, 2501)))
    args = InstructkitArguments(dataset_name=str(path), test_split_size=0)
    with pytest.raises(InstructkitError) as err:
        load_instructions(args)
    message = str(err.value)
    assert "25 of 2500 rows are not valid alpaca rows (output is empty: 25)" in message
    assert [int(n) for n in re.findall(r"row (\d+): field 'output' is empty", message)] == sorted(bad)[:10]
    assert "... and 15 more" in message
    args = InstructkitArguments(dataset_name=str(path), test_split_size=0, on_bad_rows="skip")
    data = load_instructions(args)
    assert data.report.skipped == {"output is empty": 25} and data.train.num_rows == 2475


def test_trl_tokenization_of_unchanged_data_is_read_from_its_cache(tmp_path):
    from trl import SFTConfig, SFTTrainer

    from conftest import make_tokenizer, tiny_model
    from instructkit import chat_templates

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Sort {i} {i + 3} 1", "output": f"1 {i} {i + 3}"}) + "\n"
                            for i in range(2, 30)))
    tokenized = []
    for _ in range(2):
        tok = make_tokenizer()
        chat_templates.set_chat_template(tok, "chatml")
        dataset, report = load_instructions(InstructkitArguments(dataset_name=str(path), test_split_size=0))
        args = SFTConfig(output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none", max_length=64)
        vars(args).update(loss_settings(args, report, tok))
        trainer = SFTTrainer(model=tiny_model(tok), args=args, processing_class=tok, train_dataset=dataset["train"])
        files = {f["filename"] for f in trainer.train_dataset.cache_files}
        tokenized.append((files, sorted(Path(next(iter(files))).parent.glob("cache-*.arrow"))))
    assert tokenized[0][0] and tokenized[0] == tokenized[1]  # the second trainer read the first one's files, wrote none
