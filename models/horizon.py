"""Training horizon, batch size and the LR / weight-decay scaling rules, as upstream's base_train derives them.

Pure functions (no torch). The reference point is a depth-12 model trained on 2^19-token batches; other
sizes are extrapolated from it:

- ``model_dim(depth, aspect_ratio, head_dim)``        width: depth*aspect rounded UP to a multiple of head_dim
- ``scaling_params(depth, vocab_size, ...)``         P_s = transformer-block matrices + (padded) lm_head, from shapes
- ``target_tokens(ratio, scaling_params)``           int(ratio * P_s): the compute-optimal data for this model
- ``auto_total_batch_size(target_tokens, d_ref)``    2^round(log2(2^19 * (D/D_REF)^0.383)) (Power Lines)
- ``batch_lr_scale(total_batch)``                    sqrt(B / 2^19): every LR is multiplied by it
- ``dmodel_lr_scale(model_dim)``                     (d / 768)^-0.5: AdamW LRs of embeddings and lm_head only
- ``scaled_weight_decay(base_wd, total_batch, d_ref, target_tokens)``  wd * sqrt(B/2^19) * D_REF / D
- ``resolve_num_iterations(num_iterations, target_flops, ratio, flops_per_token, total_batch, scaling_params)``
                                                     explicit N > target FLOPs > data:param ratio
- ``grad_accum_steps(total_batch, device_batch, seq_len, world_size)``  micro-steps per optimizer step
- ``resolve_horizon(...) -> Horizon``                all of the above in upstream's order, for one run
                                                     (D_REF = ratio * P_s of the d12 reference model)

Sentinels follow upstream's CLI: -1 (or any value <= 0) means "not given". A disabled ratio (-1) still
yields upstream's numbers: target_tokens and D_REF both turn negative and their quotient is unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

B_REF = 2 ** 19          # tokens per step at which the reference LRs were tuned
D_MODEL_REF = 768        # width at which the AdamW LRs were tuned
REF_DEPTH = 12           # the reference model of the batch-size and weight-decay rules
BATCH_EXPONENT = 0.383   # optimal batch grows as D^0.383
VOCAB_MULTIPLE = 64      # embedding and lm_head rows are padded to a multiple of this
VE_GATE_CHANNELS = 12    # input channels of each value-embedding gate


def model_dim(depth: int, aspect_ratio: int = 64, head_dim: int = 128) -> int:
    """Model width for a depth: depth*aspect_ratio rounded up so heads have exactly head_dim channels."""
    return -(-depth * aspect_ratio // head_dim) * head_dim


def scaling_params(depth: int, vocab_size: int, *, aspect_ratio: int = 64, head_dim: int = 128) -> int:
    """P_s of the CLI-built model (n_kv_head = n_head): all block params incl. VE gates, plus the padded lm_head."""
    d = model_dim(depth, aspect_ratio, head_dim)
    n_head = d // head_dim
    ve_layers = (depth + 1) // 2  # value embeddings on every other layer, always including the last
    blocks = depth * 12 * d * d + ve_layers * n_head * VE_GATE_CHANNELS
    padded_vocab = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return blocks + padded_vocab * d


def target_tokens(ratio: float, scaling_params: int) -> int:
    """Compute-optimal training tokens for a model with ``scaling_params`` at tokens:params ``ratio``."""
    return int(ratio * scaling_params)


def auto_total_batch_size(target_tokens: int, d_ref: float) -> int:
    """Batch size in tokens predicted from the horizon, rounded to the nearest power of two."""
    predicted = B_REF * (target_tokens / d_ref) ** BATCH_EXPONENT
    return 2 ** round(math.log2(predicted))


def batch_lr_scale(total_batch: int) -> float:
    """LR factor for a batch of ``total_batch`` tokens (AdamW sqrt rule, also applied to Muon)."""
    ratio = total_batch / B_REF
    return 1.0 if ratio == 1.0 else ratio ** 0.5


def dmodel_lr_scale(model_dim: int) -> float:
    """LR factor for the embedding, value-embedding and lm_head AdamW groups of a ``model_dim``-wide model."""
    return (model_dim / D_MODEL_REF) ** -0.5


def scaled_weight_decay(base_wd: float, total_batch: int, d_ref: float, target_tokens: int) -> float:
    """Muon weight decay keeping B/(lr*wd*D) constant under the sqrt LR rule."""
    return base_wd * math.sqrt(total_batch / B_REF) * (d_ref / target_tokens)


def resolve_num_iterations(num_iterations: int, target_flops: float, ratio: float,
                           flops_per_token: float, total_batch: int, scaling_params: int) -> int:
    """Optimizer steps of the run; the first horizon given wins (explicit, then FLOPs, then ratio)."""
    if num_iterations > 0:
        return num_iterations
    if target_flops > 0:
        return round(target_flops / (flops_per_token * total_batch))
    if ratio > 0:
        return target_tokens(ratio, scaling_params) // total_batch
    raise ValueError("no training horizon: give num_iterations > 0, target_flops > 0 or a data:param ratio > 0")


def grad_accum_steps(total_batch: int, device_batch: int, seq_len: int, world_size: int = 1) -> int:
    """Forward/backward micro-steps per optimizer step; the batch must split evenly across them."""
    per_pass = device_batch * seq_len * world_size
    if per_pass <= 0 or total_batch % per_pass:
        raise ValueError(f"total batch {total_batch} tokens is not a multiple of device_batch*seq_len*world = "
                         f"{device_batch}*{seq_len}*{world_size} = {per_pass}; change total_batch_size or device_batch_size")
    return total_batch // per_pass


@dataclass(frozen=True)
class Horizon:
    """Everything the horizon rules decide for one run."""
    target_tokens: int            # int(ratio * P_s) (computed even when N is explicit; it scales the wd)
    d_ref: float                  # horizon of the d12 reference
    total_batch_size: int         # tokens per optimizer step
    batch_lr_scale: float         # multiply every CLI LR by this
    weight_decay: float           # scaled Muon weight decay (the cosine schedule starts here)
    num_iterations: int           # optimizer steps


def resolve_horizon(*, scaling_params: int, reference_scaling_params: int, flops_per_token: float,
                    total_batch_size: int = -1, num_iterations: int = -1, target_flops: float = -1.0,
                    target_param_data_ratio: float = 12.0, base_weight_decay: float = 0.28) -> Horizon:
    """Apply upstream's rules in its order: horizon, batch size, LR scale, weight decay, steps.

    ``reference_scaling_params`` is P_s of the depth-12 model built with the same vocab, sequence length,
    aspect ratio, head dim and window pattern (``scaling_params(12, vocab)`` for the CLI's shapes).
    """
    ratio = target_param_data_ratio
    if total_batch_size == 0 or total_batch_size < -1:
        raise ValueError(f"total_batch_size={total_batch_size}: give a positive token count, or -1 for automatic")
    if ratio == 0:  # upstream divides by the ratio-derived horizons; a negative ratio cancels out, zero does not
        raise ValueError("target_param_data_ratio=0: give a data:param ratio > 0, or -1 to disable it")
    tokens = target_tokens(ratio, scaling_params)
    d_ref = float(ratio) * reference_scaling_params  # a float, as upstream's D_REF
    batch = total_batch_size if total_batch_size > 0 else auto_total_batch_size(tokens, d_ref)
    steps = resolve_num_iterations(num_iterations, target_flops, ratio, flops_per_token, batch, scaling_params)
    if steps <= 0:
        raise ValueError(f"the horizon resolves to {steps} steps; raise num_iterations, target_flops or the ratio")
    wd = scaled_weight_decay(base_weight_decay, batch, d_ref, tokens)
    return Horizon(tokens, d_ref, batch, batch_lr_scale(batch), wd, steps)
