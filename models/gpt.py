"""The GPT model: nanochat's base-model architecture, written from its description.

What this module owns:
- the parameter layout: names, shapes and registration order equal upstream's, so an upstream
  model_NNNNNN.pt loads with strict=True and optimizer groups come out in the same order;
- the initialisation, drawing from torch's default generator in upstream's order so that seed 42
  reproduces upstream's initial weights bit for bit on the same device;
- the forward pass (training form, no KV cache) and the parameter / FLOPs accounting.

The model is built empty (constructing it draws nothing and initialises nothing): call
``init_weights()`` or load a state dict. Big models are built under ``torch.device("meta")``,
moved with ``to_empty(device=...)``, then initialised.

Precision follows upstream: master weights are fp32, each matmul casts its weight to the
activation dtype (``compute_dtype``: bf16 on CUDA sm>=80, fp32 otherwise, env NANOCHAT_DTYPE
overrides); only the logits, softcap and loss are computed in fp32. No autocast.

Speed without changing the maths: q, k and v come from one GEMM over the concatenated weights;
in eager mode (``fast_paths``, on by default) the elementwise chains run through models.fused,
whose forwards give the same bits as the plain ops and whose backwards make fewer memory passes,
and on CPU the head + softcap + loss runs in row chunks. Under torch.compile the plain ops are
traced instead (inductor fuses them itself).

``kernels``: "parity" keeps upstream's operation order, so that compiled on CPU both models run bit-identical
graphs (the exact-parity check needs that: the smoke budget amplifies any rounding difference). "fast" (the
default) computes the same maths in a cheaper order: rotary and QK-norm on q and k apart (no joint buffer and
no cat of their gradients), and on CPU a training loss whose head + softcap + cross-entropy runs in row chunks
with its gradients made in the forward, compiled or not (the (tokens x vocab) logits never exist whole).
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import fused
from models.config import (SMEAR_CHANNELS, VE_GATE_CHANNELS, GPTConfig, backout_layer, layer_windows,
                           padded_vocab, value_embed_layers)
from protocol.kernels import check_kernels

ROPE_BASE = 100000
ROPE_CACHE_FACTOR = 10   # rotary tables cover 10x sequence_len positions
QK_SCALE = 1.2           # q and k are each scaled after their rms-norm: logit scale 1.44/sqrt(head_dim)
VE_GATE_MAX = 3.0        # value-embedding gates lie in (0, 3)
LOGIT_SOFTCAP = 15.0
EMBED_STD = 0.8          # wte init std (upstream's docstring says 1.0; its code, which we match, uses 0.8)
LM_HEAD_STD = 0.001
FC_INIT_SCALE = 0.4      # c_fc draws from 0.4x the bound of the other matrices
GATE_INIT_MAX = 0.02     # smear gate and VE gates start at small positive weights

DTYPE_ENV = "NANOCHAT_DTYPE"
_DTYPE_NAMES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def default_compute_dtype() -> torch.dtype:
    """Activation dtype: $NANOCHAT_DTYPE if set, else bf16 on CUDA with sm>=80, else fp32 (CPU, MPS, older GPUs)."""
    name = os.environ.get(DTYPE_ENV)
    if name is not None:
        if name not in _DTYPE_NAMES:
            raise ValueError(f"{DTYPE_ENV}={name!r}: use one of {', '.join(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[name]
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0):
        return torch.bfloat16
    return torch.float32


def norm(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Weightless RMS norm over the last dim (eps = torch's default for the dtype), times ``scale`` if not 1."""
    y = F.rms_norm(x, (x.size(-1),))
    return y if scale == 1.0 else y * scale


def rotary_tables(n_pos: int, head_dim: int, dtype: torch.dtype, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-width rotary tables (1, n_pos, 1, head_dim): cos twice, and sin with the second half negated.

    With them ``x*cos + swap_halves(x)*sin`` is the half-split rotation by -theta:
    y[m] = x[m] cos + x[m+h] sin and y[m+h] = x[m+h] cos - x[m] sin, theta = pos * base^(-2m/head_dim).
    """
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    theta = torch.outer(torch.arange(n_pos, dtype=torch.float32, device=device), inv_freq)
    cos, sin = theta.cos().to(dtype), theta.sin().to(dtype)
    cos, sin = torch.cat((cos, cos), dim=-1), torch.cat((sin, -sin), dim=-1)
    return cos[None, :, None, :], sin[None, :, None, :]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply the rotary tables to (B, T, heads, head_dim)."""
    half = x.size(-1) // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return x * cos + swapped * sin


def relu_square(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


def mix(x: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * x + b * x0


def relu_square_linear(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.linear(relu_square(u), w)


# The elementwise ops of the model, twice: plain PyTorch (what torch.compile traces and fuses itself) and the
# hand-written-backward versions of models.fused (same forward bits, fewer memory passes in eager mode).
PLAIN_OPS = SimpleNamespace(norm=norm, rotate=rotate, relu_square=relu_square, mix=mix,
                            relu_square_linear=relu_square_linear)
FAST_OPS = SimpleNamespace(norm=fused.rms_norm, rotate=fused.rotary, relu_square=fused.relu_square, mix=fused.mix,
                           relu_square_linear=fused.relu_square_linear)


def band_mask(T: int, window: int, device) -> torch.Tensor:
    """Boolean (T, T) mask: query i may attend key j iff i-window <= j <= i."""
    pos = torch.arange(T, device=device)
    offset = pos[:, None] - pos[None, :]
    return (offset >= 0) & (offset <= window)


class Linear(nn.Linear):
    """Bias-free linear layer that casts its fp32 master weight to the input's dtype for the matmul."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def reset_parameters(self):
        pass  # GPT.init_weights draws every weight; drawing here would only cost time and RNG state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Embedding(nn.Embedding):
    """nn.Embedding that is left uninitialised at construction (GPT.init_weights fills it)."""

    def reset_parameters(self):
        pass


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, has_value_embed: bool):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        kv_dim = cfg.n_kv_head * cfg.head_dim
        self.c_q = Linear(cfg.n_embd, cfg.n_embd)
        self.c_k = Linear(cfg.n_embd, kv_dim)
        self.c_v = Linear(cfg.n_embd, kv_dim)
        self.c_proj = Linear(cfg.n_embd, cfg.n_embd)
        self.ve_gate = Linear(VE_GATE_CHANNELS, cfg.n_kv_head) if has_value_embed else None

    def forward(self, x, ve, cos, sin, mask, ops, qk_apart: bool = False):
        B, T, _ = x.shape
        H, Hkv, hd = self.n_head, self.n_kv_head, self.head_dim
        # One matmul for q, k and v: same maths as three, fewer and larger GEMMs (the weights stay separate params).
        w_qkv = torch.cat((self.c_q.weight, self.c_k.weight, self.c_v.weight)).to(x.dtype)
        qkv = F.linear(x, w_qkv).view(B, T, H + 2 * Hkv, hd)
        qk, v = qkv.split((H + Hkv, Hkv), dim=2)  # split, not slicing: its backward is one cat, not zero-fills
        if ve is not None:  # ResFormer value residual, gated per kv head from the first 12 input channels
            gate = VE_GATE_MAX * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, Hkv, hd)
        if qk_apart:  # rotary first, then QK-norm, on q and k apart: no joint buffer, no cat of their grads
            q, k = qk.split((H, Hkv), dim=2)
            q = ops.norm(ops.rotate(q, cos, sin), QK_SCALE)
            k = ops.norm(ops.rotate(k, cos, sin), QK_SCALE)
        else:  # upstream's rounding: q and k share every op
            qk = ops.norm(ops.rotate(qk, cos, sin), QK_SCALE)
            q, k = qk.split((H, Hkv), dim=2)
        y = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, H * hd))


def attend(q, k, v, mask):
    """Scaled dot-product attention on (B, heads, T, hd); mask None means plain causal."""
    gqa = q.size(1) != k.size(1)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x, ops):
        return ops.relu_square_linear(self.c_fc(x), self.c_proj.weight.to(x.dtype))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, has_value_embed: bool):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, has_value_embed)
        self.mlp = MLP(cfg)

    def forward(self, x, ve, cos, sin, mask, ops, qk_apart: bool = False):
        x = x + self.attn(ops.norm(x), ve, cos, sin, mask, ops, qk_apart)
        return x + self.mlp(ops.norm(x), ops)


class GPT(nn.Module):
    """nanochat's GPT. ``forward(idx)`` gives fp32 soft-capped logits; with targets, the cross-entropy loss."""

    def __init__(self, config: GPTConfig, compute_dtype: torch.dtype | None = None, kernels: str = "fast"):
        super().__init__()
        check_kernels(kernels)
        self.kernels = kernels
        self.config = config
        self.compute_dtype = compute_dtype or default_compute_dtype()
        self.windows = layer_windows(config)
        self.backout_at = backout_layer(config)
        ve_layers = value_embed_layers(config)
        vocab_rows = padded_vocab(config.vocab_size)
        # Registration order fixes state_dict and parameters() order: own scalars first, then the submodules.
        self.resid_lambdas = nn.Parameter(torch.empty(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.empty(config.n_layer))
        self.smear_lambda = nn.Parameter(torch.empty(1))
        self.backout_lambda = nn.Parameter(torch.empty(1))
        self.transformer = nn.ModuleDict({
            "wte": Embedding(vocab_rows, config.n_embd),
            "h": nn.ModuleList([Block(config, i in ve_layers) for i in range(config.n_layer)]),
        })
        self.lm_head = Linear(config.n_embd, vocab_rows)
        self.smear_gate = Linear(SMEAR_CHANNELS, 1)
        kv_dim = config.n_kv_head * config.head_dim
        self.value_embeds = nn.ModuleDict({str(i): Embedding(vocab_rows, kv_dim) for i in ve_layers})
        cos, sin = rotary_tables(ROPE_CACHE_FACTOR * config.sequence_len, config.head_dim, self.compute_dtype)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._masks: dict[tuple, torch.Tensor] = {}
        # Eager forwards use models.fused (identical forward values, leaner backward); compiled ones plain ops.
        self.fast_paths = True

    # ----------------------------------------------------------------------------------------- init
    @torch.no_grad()
    def init_weights(self, seed: int | None = 42) -> None:
        """Draw every weight in upstream's order from the default generator, reseeded with ``seed`` first."""
        if seed is not None:
            torch.manual_seed(seed)  # seeds the CPU and every CUDA generator, as upstream's compute_init does
        bound = 3**0.5 * self.config.n_embd**-0.5  # uniform with the std of N(0, 1/n_embd)
        self.transformer.wte.weight.normal_(0.0, EMBED_STD)
        self.lm_head.weight.normal_(0.0, LM_HEAD_STD)
        for block in self.transformer.h:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v):
                lin.weight.uniform_(-bound, bound)
            block.attn.c_proj.weight.zero_()
            block.mlp.c_fc.weight.uniform_(-bound * FC_INIT_SCALE, bound * FC_INIT_SCALE)
            block.mlp.c_proj.weight.zero_()
        self._init_scalars()
        self.smear_gate.weight.uniform_(0.0, GATE_INIT_MAX)
        for table in self.value_embeds.values():
            table.weight.uniform_(-bound, bound)
        for block in self.transformer.h:
            if block.attn.ve_gate is not None:
                block.attn.ve_gate.weight.uniform_(0.0, GATE_INIT_MAX)
        self.reset_rotary()
        self.cast_embeddings()

    def _init_scalars(self) -> None:
        L = self.config.n_layer
        span = max(L - 1, 1)
        # Python floats rounded once to fp32, as upstream's per-element assignment does.
        resid = [1.15 - 0.10 * i / span for i in range(L)]  # stronger residual early, weaker deep
        x0 = [0.20 - 0.15 * i / span for i in range(L)]     # more input-embedding blending early
        self.resid_lambdas.copy_(torch.tensor(resid, dtype=torch.float32))
        self.x0_lambdas.copy_(torch.tensor(x0, dtype=torch.float32))
        self.smear_lambda.zero_()
        self.backout_lambda.fill_(0.2)

    def reset_rotary(self) -> None:
        """(Re)compute the rotary tables on the model's device; needed after ``to_empty``."""
        device = self.transformer.wte.weight.device
        n_pos = ROPE_CACHE_FACTOR * self.config.sequence_len
        self.rope_cos, self.rope_sin = rotary_tables(n_pos, self.config.head_dim, self.compute_dtype, device)
        self._masks.clear()

    @torch.no_grad()
    def cast_embeddings(self) -> None:
        """Store wte and the value embeddings in the compute dtype (kept fp32 for fp16: GradScaler needs it)."""
        if self.compute_dtype == torch.float16:
            return
        self.transformer.wte.to(dtype=self.compute_dtype)
        for table in self.value_embeds.values():
            table.to(dtype=self.compute_dtype)

    # -------------------------------------------------------------------------------------- forward
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, loss_reduction: str = "mean"):
        """Loss (scalar for "mean"/"sum", flat (B*T,) for "none") if targets are given, else fp32 logits (B, T, V)."""
        B, T = self._check_input(idx, targets, loss_reduction)
        eager = self.fast_paths and not torch.compiler.is_compiling()
        ops = FAST_OPS if eager else PLAIN_OPS
        fast = self.kernels == "fast"
        cos, sin = self.rope_cos[:, :T], self.rope_sin[:, :T]
        x = ops.norm(self.transformer.wte(idx).to(self.compute_dtype))
        x = self._smear(x)
        x0 = x
        masks = [None if w >= T else self._band_mask(T, w, idx.device) for w in self.windows]
        for i, block in enumerate(self.transformer.h):
            x = ops.mix(x, x0, self.resid_lambdas[i], self.x0_lambdas[i])
            ve = self.value_embeds[str(i)](idx).to(x.dtype) if str(i) in self.value_embeds else None
            x = block(x, ve, cos, sin, masks[i], ops, fast)
            if i == self.backout_at:
                x_mid = x
        x = ops.norm(x - self.backout_lambda.to(x.dtype) * x_mid)  # remove mid-depth features before the head
        V = self.config.vocab_size
        cpu_loss = targets is not None and x.device.type == "cpu"
        if cpu_loss and fast and loss_reduction != "none" and torch.is_grad_enabled():
            # The training loss: head + softcap + loss in row chunks, gradients made in the forward; under
            # torch.compile a graph break, each chunk's elementwise part compiled on its own.
            w = self.lm_head.weight
            w = (w if w.size(0) == V else w[:V]).to(x.dtype)  # no slice when unpadded: its backward copies dw
            return fused.linear_softcap_cross_entropy(x.reshape(B * T, -1), w, targets.reshape(-1), LOGIT_SOFTCAP,
                                                      loss_reduction, compiled=torch.compiler.is_compiling())
        if cpu_loss and eager:
            # Row-chunked head + softcap + loss: the (tokens x vocab) logits never exist as a whole.
            w = self.lm_head.weight[:V].to(x.dtype)
            return fused.softcap_cross_entropy(x.reshape(B * T, -1), w, targets.reshape(-1), LOGIT_SOFTCAP,
                                               loss_reduction)
        logits = self.lm_head(x)[..., :V].float()
        logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1,
                               reduction=loss_reduction)

    def _smear(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the previous position's embedding into each position, gated by the current one's first channels."""
        gate = self.smear_lambda.to(x.dtype) * torch.sigmoid(self.smear_gate(x[:, 1:, :SMEAR_CHANNELS]))
        return torch.cat((x[:, :1], x[:, 1:] + gate * x[:, :-1]), dim=1)

    def _band_mask(self, T: int, window: int, device) -> torch.Tensor:
        if torch.compiler.is_compiling():  # compiled graphs build (and fold) the mask themselves
            return band_mask(T, window, device)
        key = (T, window, str(device))
        if key not in self._masks:
            self._masks[key] = band_mask(T, window, device)
        return self._masks[key]

    def _check_input(self, idx, targets, loss_reduction) -> tuple[int, int]:
        if idx.dim() != 2:
            raise ValueError(f"idx has shape {tuple(idx.shape)}: pass token ids as a (batch, time) tensor")
        B, T = idx.shape
        if T > self.rope_cos.size(1):
            raise ValueError(f"sequence length {T} exceeds the rotary cache ({self.rope_cos.size(1)} positions = "
                             f"{ROPE_CACHE_FACTOR} x sequence_len): build the model with a larger sequence_len")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets shape {tuple(targets.shape)} != idx shape {tuple(idx.shape)}: pass one target per token")
        if loss_reduction not in ("mean", "sum", "none"):
            raise ValueError(f"loss_reduction={loss_reduction!r}: use 'mean', 'sum' or 'none'")
        return B, T

    # ------------------------------------------------------------------------------------ accounting
    def param_counts(self) -> dict[str, int]:
        """Parameters per group as upstream reports them (embeddings and lm_head include the vocab padding)."""
        def count(params):
            return sum(p.numel() for p in params)
        counts = {
            "wte": count(self.transformer.wte.parameters()),
            "value_embeds": count(self.value_embeds.parameters()),
            "lm_head": count(self.lm_head.parameters()),
            "transformer_matrices": count(self.transformer.h.parameters()),  # ve_gates included
            "scalars": count([self.resid_lambdas, self.x0_lambdas, self.smear_gate.weight,
                              self.smear_lambda, self.backout_lambda]),
        }
        counts["total"] = sum(counts.values())
        return counts

    def num_scaling_params(self) -> int:
        """Parameters the data horizon scales with: transformer matrices plus lm_head."""
        counts = self.param_counts()
        return counts["transformer_matrices"] + counts["lm_head"]

    def num_matmul_params(self) -> int:
        """Weights that multiply the token stream (every Linear: blocks, lm_head, smear gate)."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, Linear))

    def flops_per_token(self) -> int:
        """Training FLOPs per token: 6 per matmul weight, plus 12*H*hd per attended position per layer."""
        cfg = self.config
        attention = sum(12 * cfg.n_head * cfg.head_dim * min(w, cfg.sequence_len) for w in self.windows)
        return 6 * self.num_matmul_params() + attention
