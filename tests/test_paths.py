"""One rule for local path vs hub name."""

from instructkit.paths import looks_like_local_path


def test_local_paths_and_hub_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert looks_like_local_path("outputs/sft_full")  # its first folder exists here: a missing run, not a repo
    assert looks_like_local_path("./x") and looks_like_local_path("a/b/c") and looks_like_local_path("x.jsonl", (".jsonl",))
    assert not looks_like_local_path("Qwen/Qwen2.5-0.5B") and not looks_like_local_path("gpt2")
