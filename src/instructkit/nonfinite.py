"""Stop training at the first non-finite (nan / inf) loss or gradient, before the weights take the step.

The Trainer keeps going on a nan loss: with `logging_nan_inf_filter` (on by default) it even logs the average of
earlier losses instead, and the next checkpoint saves nan weights. The callback here checks the gradients after
backward and clipping, before the optimizer step (`on_pre_optimizer_step`), and the logged loss and gradient norm
(`on_log`: this also covers DeepSpeed, whose optimizer holds the gradients). Under fp16 only the loss is checked: its
loss scaler overflows on purpose now and then and skips that step. On the first non-finite value the callback
raises an `InstructkitError`: the run ends with one message, nothing more is saved, and the newest checkpoint,
written before the bad step, stays the last good one.
"""

from __future__ import annotations

import math

from instructkit.errors import InstructkitError


def nonfinite_gradients(model) -> bool:
    """Whether any local gradient holds nan or inf (one fused norm over all of them)."""
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and not torch.isfinite(torch.nn.utils.get_total_norm(grads)).item()


def stop_message(what: str, step: int, output_dir: str, before_the_step: bool = True) -> InstructkitError:
    from instructkit.outputs import last_complete

    last, _ = last_complete(output_dir)
    if last is None:
        kept = "no checkpoint was saved (save_strategy: steps with save_steps keeps some)"
    elif before_the_step:
        kept = f"the last good checkpoint, {last}, is kept (nothing was saved after it)"
    else:  # seen in the log only: a checkpoint between two logging steps may already hold the bad weights
        kept = f"the newest checkpoint is {last} (it may postdate the first bad step when logging_steps > 1)"
    return InstructkitError(f"training stopped at step {step}: {what}, so the weights would be ruined from here on; "
                            f"{kept}.",
                            fix="lower learning_rate (or raise warmup_steps, keep max_grad_norm at 1.0, use bf16 "
                                "rather than fp16), then start over with a new --output_dir.")


def stop_on_nonfinite_loss():
    """A TrainerCallback raising `InstructkitError` at the first nan / inf gradient or logged loss."""
    from transformers import TrainerCallback

    class StopOnNonFiniteLoss(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            # fp16's loss scaler overflows on purpose now and then: it skips that step and lowers the scale
            if model is not None and not args.fp16 and nonfinite_gradients(model):
                # global_step counts finished steps: this one would be global_step + 1
                raise stop_message("the loss or its gradients are not finite (nan/inf)", state.global_step + 1,
                                   args.output_dir)

        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss",) if args.fp16 else ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise stop_message(f"the logged {key} is {value}", state.global_step, args.output_dir,
                                       before_the_step=False)

    return StopOnNonFiniteLoss()
