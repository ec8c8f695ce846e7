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


@pytest.mark.parametrize("fixed", [False, True])
def test_a_fixed_mmap_threshold_returns_what_each_step_frees(fixed):
    """With glibc's defaults, buffers freed after a large free stay in the heap (a 4-bit run's dequantized weights,
    every step); `return_large_frees`, called before a 4-bit load on CPU, makes them go back when the model's
    layers are large (not for toy models, whose steps it would only slow down). Fresh processes."""
    import os
    import subprocess
    import sys

    probe = """
import ctypes, ctypes.util, json, sys, tempfile
from instructkit.modeling.quantization import return_large_frees
from transformers import LlamaConfig
def model(n):
    folder = tempfile.mkdtemp()
    LlamaConfig(hidden_size=n, intermediate_size=4 * n).save_pretrained(folder)
    return folder
toy = return_large_frees(model(256))          # 1 MB layers: left alone
fixed = return_large_frees(model(896)) if sys.argv[1] == "1" else False   # 12 MB: the threshold is fixed
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
libc.free(libc.malloc(30 << 20))           # a large free: glibc's default threshold rises to 30 MB
start = rss()
blocks = [libc.malloc(8 << 20) for _ in range(20)]
for b in blocks:
    ctypes.memset(b, 1, 8 << 20)
for b in blocks[:-1]:  # the last stays in use above them
    libc.free(b)
print(json.dumps({"toy": toy, "fixed": fixed, "kept": rss() - start}))
"""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", probe, "1" if fixed else "0"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    found = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert found["toy"] is False and found["fixed"] is fixed
    assert (found["kept"] < 20) if fixed else (found["kept"] > 140), found  # 8 MB in use; 152 MB freed
    kept = subprocess.run([sys.executable, "-c", probe, "1"], capture_output=True, text=True, timeout=120,
                          env={**env, "MALLOC_MMAP_THRESHOLD_": "33554432"})
    assert __import__("json").loads(kept.stdout.strip().splitlines()[-1])["fixed"] is False  # the user's setting


@pytest.mark.parametrize("tied", [False, True])
def test_frozen_embeddings_stored_in_bf16_compute_what_fp32_computed(tmp_path, tied):
    """A QLoRA run's frozen embedding and LM head from a bf16 checkpoint are kept in bf16 and computed in fp32: the
    same loss, gradients and generated tokens as the fp32 copy, through the model's forward and TRL's fused head."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl.trainer.utils import add_fused_lm_head

    from instructkit.modeling.quantization import frozen_embeddings_to_bf16

    tok = make_tokenizer()
    tiny_model(tok, tied=tied).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    fp32, stored = (AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32) for _ in range(2))
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    for model in (fp32, stored):
        model.requires_grad_(False)
        model.model.norm.weight.requires_grad_(True)  # stands in for the adapters
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    embedding_mb = fp32.model.embed_tokens.weight.numel() * (1 if tied else 2) * 2 / 2**20
    assert frozen_embeddings_to_bf16(stored, quantization) == pytest.approx(embedding_mb)
    assert stored.get_input_embeddings().weight.dtype == torch.bfloat16
    assert (stored.get_output_embeddings().weight is stored.get_input_embeddings().weight) is tied
    ids = tok(["cat backwards is tac. 3 plus 4 is 7."], return_tensors="pt")["input_ids"]
    results = []
    for model in (fp32, stored):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        fused = model(input_ids=ids, labels=ids, fused_lm_head=True)
        generated = model.generate(ids, max_new_tokens=6, do_sample=False)
        results.append((loss.item(), model.model.norm.weight.grad.clone(), fused.log_probs.detach(), generated))
    (loss0, grad0, logp0, gen0), (loss1, grad1, logp1, gen1) = results
    assert loss1 == pytest.approx(loss0, rel=1e-6) and torch.allclose(grad1, grad0, rtol=1e-5, atol=1e-7)
    assert torch.allclose(logp1, logp0, atol=1e-5) and torch.equal(gen1, gen0)
    assert frozen_embeddings_to_bf16(fp32, None) == 0.0  # not quantized: unchanged
