"""Model side of a chat template: new control tokens get embedding rows that train, also under LoRA."""

from types import SimpleNamespace

import pytest

from conftest import make_tokenizer, sft_trainer, tiny_model
from instructkit import chat_templates
from instructkit.config.arguments import InstructkitArguments
from instructkit.config.resolved import RecipeConfig, resolve_model
from instructkit.data.formats import convert_row
from instructkit.modeling.adapters import lora_config
from instructkit.modeling.loading import load_model
from instructkit.modeling.quantization import qlora_config


@pytest.mark.parametrize("tied", [False, True])
def test_tokens_added_by_a_template_are_resized_and_trained_under_lora(tmp_path, tied):
    """One loss + backward through TRL's fused LM head: the new tokens' rows get gradients (tied or not)."""
    from trl import ModelConfig

    tok = make_tokenizer()
    tiny_model(tok, tied=tied).save_pretrained(tmp_path)  # a base model that has never seen the template
    new = chat_templates.set_chat_template(tok, "gemma")
    assert tok.convert_ids_to_tokens(new) == ["<start_of_turn>", "<end_of_turn>"]

    model_args = ModelConfig(model_name_or_path=str(tmp_path), dtype="float32", lora_r=4, lora_alpha=8, use_peft=True)
    config = resolve_model(RecipeConfig(InstructkitArguments(), SimpleNamespace(trust_remote_code=False), model_args))
    model_args = config.model  # as sft_lora resolves it: LoRA on all linear layers
    model = load_model(config, tok)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<end_of_turn>"), tok.eos_token_id]
    peft_config = lora_config(model_args, model, new)

    rows = [convert_row({"instruction": "Reverse cat.", "output": "tac"}, "alpaca")]
    trainer, _ = sft_trainer(tok, rows, "alpaca", model=model, peft_config=peft_config)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trainer.compute_loss(trainer.model, batch).backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" not in n}
    wrapped = sorted(n.split("model.")[-1].rsplit(".default", 1)[0] for n in grads)
    if tied:  # whole, as modules_to_save, still one tensor (named_parameters lists it once)
        assert wrapped == ["embed_tokens.modules_to_save"]
        base = trainer.model.base_model.model
        assert base.lm_head.modules_to_save.default.weight is base.model.embed_tokens.modules_to_save.default.weight
    else:  # the new input rows only, and the LM head
        assert wrapped == ["embed_tokens.token_adapter.trainable_tokens_delta", "lm_head.modules_to_save"]
    embeddings = next(g for n, g in grads.items() if "embed_tokens" in n)
    head = embeddings if tied else next(g for n, g in grads.items() if "lm_head" in n)
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    assert head[end_of_turn].abs().sum() > 0  # the model learns to emit the new end-of-turn token
    assert embeddings.abs().sum() > 0


def test_cpu_4bit_shape_check_names_layers_bitsandbytes_cannot_run():
    """bitsandbytes' CPU kernels: input sizes multiples of 64, output sizes multiples of 32 (else a reshape error
    deep inside bitsandbytes at the first forward)."""
    import torch

    from instructkit.errors import InstructkitError
    from instructkit.modeling.quantization import check_cpu_4bit_shapes

    Linear4bit = type("Linear4bit", (torch.nn.Linear,), {})
    good = torch.nn.Sequential(Linear4bit(192, 512), Linear4bit(512, 192))
    check_cpu_4bit_shapes(good, "good")
    for bad in (torch.nn.Sequential(Linear4bit(160, 448)), torch.nn.Sequential(Linear4bit(192, 200))):
        with pytest.raises(InstructkitError, match="input sizes that are multiples of 64"):
            check_cpu_4bit_shapes(bad, "bad")


def test_4bit_layers_still_pass_gradients_after_generating(embedded):
    """bitsandbytes repacks 4-bit weights for CPU inference on eval-mode generation (AVX512-BF16 CPUs), after
    which training forwards pass no gradient to the layer inputs; load_model keeps the training path."""
    import bitsandbytes as bnb
    from transformers import AutoTokenizer
    from trl import ModelConfig

    from instructkit.evaluation.exact_match import exact_match

    tok = AutoTokenizer.from_pretrained(embedded.model_dir)
    model_args = ModelConfig(model_name_or_path=str(embedded.model_dir), dtype="float32", load_in_4bit=True,
                             bnb_4bit_quant_type="nf4", use_bnb_nested_quant=True)
    model = load_model(RecipeConfig(InstructkitArguments(), SimpleNamespace(trust_remote_code=False), model_args), tok,
                       quantization_config=qlora_config(model_args))
    ids = tok(["cat backwards is tac. 3 plus 4 is 7."], return_tensors="pt")["input_ids"]

    def input_gradient_norm():
        model.train()
        inputs = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        model(inputs_embeds=inputs, labels=ids).loss.backward()
        return inputs.grad.norm().item()

    before = input_gradient_norm()
    exact_match(model, tok, [{"prompt": [{"role": "user", "content": "Reverse cat."}], "target": "tac"}], 4)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert before > 0 and input_gradient_norm() == pytest.approx(before, rel=1e-4)


def test_freed_load_buffers_go_back_to_the_system_after_a_4bit_load():
    """glibc keeps freed buffers in its heap once a large free has raised its mmap threshold (what loading and
    quantizing a checkpoint does); `release_freed_memory` hands them back. Measured in a fresh process."""
    import subprocess
    import sys

    probe = """
import ctypes, ctypes.util, json
from instructkit.modeling.quantization import release_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
libc.free(libc.malloc(30 << 20))           # a large free: glibc raises its mmap threshold to 30 MB
blocks = [libc.malloc(8 << 20) for _ in range(40)]   # 320 MB of 8 MB buffers, now from the heap
for b in blocks:
    ctypes.memset(b, 1, 8 << 20)
for b in blocks[:-1]:  # the last stays in use above them (as the model's tensors do): free cannot shrink the heap
    libc.free(b)
held = rss()
print(json.dumps({"held": held, "trimmed": release_freed_memory(), "after": rss()}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert found["trimmed"] is True
    assert found["held"] - found["after"] > 250, found  # the 312 MB the heap held are returned
