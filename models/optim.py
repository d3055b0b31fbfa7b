"""The MuonAdamW optimizer: AdamW for embeddings, lm_head and scalars, Muon for the transformer-block matrices.

Owns the update maths (one step, single process) and the parameter grouping of nanochat's GPT:

- ``adamw_update(p, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, wd)``  one tensor, fp32 maths
- ``muon_update(grads, params, momentum_buf, second_buf, momentum, lr, wd, beta2, ns_steps, polar_dtype)``
  one stack of K same-shape matrices: Nesterov momentum -> MuonEq row equilibration -> Polar Express
  -> Muon+ norm -> NorMuon second moment -> cautious weight decay
- ``class MuonAdamW(param_groups, *, compile=False, polar_dtype=torch.float32)``
- ``build_optimizer(model, *, embedding_lr, unembedding_lr, matrix_lr, scalar_lr, weight_decay, batch_lr_scale, ...)``

Groups carry ``kind`` ('adamw' | 'muon') and ``initial_lr``; the trainer sets ``lr`` (= initial_lr * schedule)
and, on Muon groups, ``momentum`` and ``weight_decay`` before every ``step()``. Gradients must already be
averaged across ranks: there is no distributed code here. State layout matches upstream's checkpoints:
AdamW ``step``/``exp_avg``/``exp_avg_sq`` per tensor; Muon ``momentum_buffer`` (K,r,c) and
``second_momentum_buffer`` (K,r,1) or (K,1,c) stored once per group, under its first parameter.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Polar Express (Amsel et al. 2025) odd-polynomial coefficients (a, b, c) for 5 iterations.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
ADAMW_KEYS = ("lr", "betas", "eps", "weight_decay")
MUON_KEYS = ("lr", "momentum", "ns_steps", "beta2", "weight_decay")


# ----------------------------------------------------------------------------------------------- AdamW
def adamw_update(p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor, lr: Tensor,
                 beta1: Tensor, beta2: Tensor, eps: Tensor, wd: Tensor) -> None:
    """In-place AdamW step of one tensor; maths in fp32 so bf16 params and moments keep their precision."""
    p32, m, v, g = p.float(), exp_avg.float(), exp_avg_sq.float(), grad.float()
    p32.mul_(1 - lr * wd)  # decoupled decay, scaled by the scheduled lr
    m.lerp_(g, 1 - beta1)
    v.lerp_(g.square(), 1 - beta2)
    denom = (v / (1 - beta2 ** step)).sqrt() + eps
    p32.sub_((lr / (1 - beta1 ** step)) * (m / denom))
    # Write back: self-copies (no-ops) when everything is already fp32.
    p.copy_(p32)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


# ------------------------------------------------------------------------------------------------ Muon
def _nesterov(grads: Tensor, momentum_buf: Tensor, momentum: Tensor) -> Tensor:
    """Update the momentum buffer and return the Nesterov look-ahead, reusing the grads' storage."""
    mu = momentum.to(grads.dtype)
    momentum_buf.lerp_(grads, 1 - mu)
    return grads.lerp_(momentum_buf, mu)


def _equilibrate_rows(x: Tensor) -> Tensor:
    """MuonEq: give every row the mean row norm, ||X||_F / sqrt(rows), to condition the polar iteration."""
    xf = x.float()
    target = xf.norm(dim=(-2, -1), keepdim=True) / x.size(-2) ** 0.5
    row_norm = xf.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return x * (target / row_norm).to(x.dtype)


def _polar_express(x: Tensor, ns_steps: int) -> Tensor:
    """Approximate the orthogonal polar factor of each matrix with odd polynomials, on the smaller Gram side."""
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * 1.01 + 1e-6)  # singular values into (0, 1)
    tall = x.size(-2) > x.size(-1)
    for a, b, c in POLAR_EXPRESS_COEFFS[:ns_steps]:
        gram = x.mT @ x if tall else x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A@A in one BLAS call
        x = torch.baddbmm(x, x, poly, beta=a) if tall else torch.baddbmm(x, poly, x, beta=a)
    return x


def _muon_plus(x: Tensor) -> Tensor:
    """Snap each matrix's Frobenius norm to sqrt(min(r, c)), that of an exactly semi-orthogonal matrix."""
    target = min(x.size(-2), x.size(-1)) ** 0.5
    return x * (target / x.float().norm(dim=(-2, -1), keepdim=True).clamp_min(1e-6)).to(x.dtype)


def _normuon(x: Tensor, second_buf: Tensor, beta2: Tensor) -> Tensor:
    """NorMuon: per-row (tall/square) or per-column (wide) RMS normalisation, Frobenius norm preserved."""
    red_dim = -1 if x.size(-2) >= x.size(-1) else -2
    n = x.size(red_dim)
    mean_sq = x.float().square().mean(dim=red_dim, keepdim=True)
    norm = (mean_sq.sum(dim=(-2, -1), keepdim=True) * n).sqrt()
    second_buf.lerp_(mean_sq.to(second_buf.dtype), 1 - beta2.to(x.dtype))  # EMA, no bias correction
    scale = second_buf.clamp_min(1e-10).rsqrt()
    new_norm = ((mean_sq * n) * scale.float().square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    return x * (scale * (norm / new_norm.clamp_min(1e-10))).to(x.dtype)


def _cautious_step(params: Tensor, update: Tensor, lr: Tensor, wd: Tensor) -> None:
    """p -= lr*U + lr*wd*p, decaying only where the update and the weight agree in sign."""
    lr, wd = lr.to(update.dtype), wd.to(update.dtype)
    agree = (update * params) >= 0
    params.sub_(lr * update + lr * wd * params * agree)


def muon_update(grads: Tensor, params: Tensor, momentum_buf: Tensor, second_buf: Tensor, momentum: Tensor,
                lr: Tensor, wd: Tensor, beta2: Tensor, ns_steps: int, polar_dtype: torch.dtype) -> None:
    """In-place Muon step of a (K, r, c) stack; ``lr`` already includes the sqrt(max(1, r/c)) shape factor."""
    g = _nesterov(grads, momentum_buf, momentum)
    x = _equilibrate_rows(g.to(polar_dtype))
    x = _polar_express(x, ns_steps).to(params.dtype)
    x = _normuon(_muon_plus(x), second_buf, beta2)
    _cautious_step(params, x, lr, wd)


_COMPILED: dict = {}


def _kernel(fn, compile: bool):
    """The eager function, or its compiled version (built once per process, shared by all optimizers)."""
    if not compile:
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
    return _COMPILED[fn]


# ------------------------------------------------------------------------------------------- optimizer
class MuonAdamW(torch.optim.Optimizer):
    """AdamW on 'adamw' groups, Muon on 'muon' groups (each a list of same-shape 2-D matrices, updated stacked).

    ``compile=True`` runs each update through ``torch.compile(dynamic=False, fullgraph=True)``; the hyper-
    parameters enter as fp32 0-d CPU tensors, so changing them every step never recompiles. ``polar_dtype``
    is the dtype of the Polar Express iteration (bf16 when the model computes in bf16, else fp32).
    """

    def __init__(self, param_groups: list[dict], *, compile: bool = False, polar_dtype: torch.dtype = torch.float32):
        if polar_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"polar_dtype={polar_dtype}: use torch.float32 or torch.bfloat16 (fp16 overflows in Polar Express)")
        super().__init__(param_groups, defaults={})
        self.polar_dtype = polar_dtype
        self._adamw = _kernel(adamw_update, compile)
        self._muon = _kernel(muon_update, compile)
        names = ("step", "lr", "beta1", "beta2", "eps", "wd", "momentum")
        self._hp = {n: torch.zeros((), dtype=torch.float32) for n in names}

    def add_param_group(self, group: dict) -> None:
        """Validate a group before torch stores it; 'initial_lr' defaults to its 'lr'."""
        kind = group.get("kind")
        if kind not in ("adamw", "muon"):
            raise ValueError(f"param group kind={kind!r}: every group needs kind='adamw' or kind='muon'")
        missing = [k for k in (ADAMW_KEYS if kind == "adamw" else MUON_KEYS) if k not in group]
        if missing:
            raise ValueError(f"{kind} param group lacks {missing}; give them explicitly (there are no defaults)")
        group.setdefault("initial_lr", group["lr"])
        super().add_param_group(group)
        if kind == "muon":
            _check_muon_group(self.param_groups[-1])

    def set_schedule(self, lrm: float, momentum: float, weight_decay: float) -> None:
        """Apply this step's schedule: every lr = initial_lr * lrm; Muon momentum and weight decay set as given."""
        for group in self.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = momentum
                group["weight_decay"] = weight_decay

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "adamw":
                self._step_adamw(group)
            else:
                self._step_muon(group)
        return loss

    def _fill(self, **values: float) -> None:
        for name, value in values.items():
            self._hp[name].fill_(value)

    def _step_adamw(self, group: dict) -> None:
        beta1, beta2 = group["betas"]
        self._fill(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], wd=group["weight_decay"])
        hp = self._hp
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            hp["step"].fill_(state["step"])
            self._adamw(p, p.grad, state["exp_avg"], state["exp_avg_sq"], hp["step"], hp["lr"],
                        hp["beta1"], hp["beta2"], hp["eps"], hp["wd"])

    def _step_muon(self, group: dict) -> None:
        params = group["params"]
        if all(p.grad is None for p in params):
            return
        if any(p.grad is None for p in params):
            raise RuntimeError(f"Muon group of shape {tuple(params[0].shape)} has some grads missing; "
                               "every matrix of a group must take part in the loss")
        rows, cols = params[0].shape
        state = self._muon_state(params)
        # Wide matrices keep lr; tall ones get sqrt(rows/cols) (e.g. c_fc x2). The decay uses this lr too.
        self._fill(lr=group["lr"] * max(1.0, rows / cols) ** 0.5, wd=group["weight_decay"],
                   momentum=group["momentum"], beta2=group["beta2"])
        stacked = torch.stack(params)
        hp = self._hp
        self._muon(torch.stack([p.grad for p in params]), stacked, state["momentum_buffer"],
                   state["second_momentum_buffer"], hp["momentum"], hp["lr"], hp["wd"], hp["beta2"],
                   group["ns_steps"], self.polar_dtype)
        torch._foreach_copy_(params, list(stacked.unbind(0)))

    def _muon_state(self, params: list[Tensor]) -> dict:
        """The group's buffers, kept under its first parameter (upstream's checkpoint layout)."""
        state = self.state[params[0]]
        if not state:
            p, k = params[0], len(params)
            rows, cols = p.shape
            second = (k, rows, 1) if rows >= cols else (k, 1, cols)
            state["momentum_buffer"] = torch.zeros((k, rows, cols), dtype=p.dtype, device=p.device)
            state["second_momentum_buffer"] = torch.zeros(second, dtype=p.dtype, device=p.device)
        return state


def _check_muon_group(group: dict) -> None:
    shapes = {tuple(p.shape) for p in group["params"]}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"a muon group must hold 2-D matrices of one shape, got shapes {sorted(shapes)}; "
                         "make one group per shape")
    if not 1 <= group["ns_steps"] <= len(POLAR_EXPRESS_COEFFS):
        raise ValueError(f"ns_steps={group['ns_steps']}: Polar Express has coefficients for 1..{len(POLAR_EXPRESS_COEFFS)} steps")


# --------------------------------------------------------------------------------------------- grouping
def build_optimizer(model: torch.nn.Module, *, embedding_lr: float = 0.3, unembedding_lr: float = 0.008,
                    matrix_lr: float = 0.02, scalar_lr: float = 0.5, weight_decay: float = 0.0,
                    batch_lr_scale: float = 1.0, compile: bool = False,
                    polar_dtype: torch.dtype | None = None) -> MuonAdamW:
    """nanochat's groups for a GPT: six AdamW groups, then one Muon group per block-matrix shape (ascending).

    LR arguments are the CLI values; ``batch_lr_scale`` (sqrt(B/2^19)) multiplies all but the smear group,
    and the embedding/VE/lm_head groups are also scaled by (d/768)^-0.5. ``weight_decay`` is Muon's
    (already horizon-scaled) decay; the AdamW decays are fixed. ``polar_dtype`` defaults to the dtype the
    model keeps its token embedding in, which is bf16 exactly when it computes in bf16.
    """
    d_scale = (model.transformer.wte.weight.size(1) / 768) ** -0.5
    # Same multiplication order as upstream so every initial lr is bit-identical to its.
    emb, unemb = embedding_lr * batch_lr_scale, unembedding_lr * batch_lr_scale
    scalar, matrix = scalar_lr * batch_lr_scale, matrix_lr * batch_lr_scale
    matrices = list(model.transformer.h.parameters())
    groups = [
        _adamw_group(model.lm_head.parameters(), unemb * d_scale, (0.8, 0.96), 0.01),
        _adamw_group(model.transformer.wte.parameters(), emb * d_scale, (0.8, 0.995), 0.001),
        _adamw_group(model.value_embeds.parameters(), emb * d_scale * 0.5, (0.8, 0.995), 0.01),
        _adamw_group([model.resid_lambdas], scalar * 0.01, (0.8, 0.95), 0.05),
        _adamw_group([model.x0_lambdas], scalar, (0.96, 0.95), 0.0),  # x0 mixing wants a slower first moment
        _adamw_group([model.smear_gate.weight, model.smear_lambda, model.backout_lambda], 0.2, (0.8, 0.95), 0.0),
    ]
    for shape in sorted({tuple(p.shape) for p in matrices}):
        same = [p for p in matrices if tuple(p.shape) == shape]
        groups.append(dict(kind="muon", params=same, lr=matrix, momentum=0.95, ns_steps=5, beta2=0.9,
                           weight_decay=weight_decay))
    _check_covers_model(model, groups)
    if polar_dtype is None:
        polar_dtype = torch.bfloat16 if model.transformer.wte.weight.dtype == torch.bfloat16 else torch.float32
    return MuonAdamW(groups, compile=compile, polar_dtype=polar_dtype)


def _adamw_group(params, lr: float, betas: tuple[float, float], weight_decay: float) -> dict:
    return dict(kind="adamw", params=list(params), lr=lr, betas=betas, eps=1e-10, weight_decay=weight_decay)


def _check_covers_model(model: torch.nn.Module, groups: list[dict]) -> None:
    """Every trainable parameter in exactly one group: a new parameter must be given an optimizer group."""
    grouped = [id(p) for g in groups for p in g["params"]]
    named = {id(p): n for n, p in model.named_parameters()}
    left_out = sorted(n for i, n in named.items() if i not in set(grouped))
    if left_out or len(grouped) != len(set(grouped)):
        raise ValueError(f"optimizer groups do not cover the model exactly once (not grouped: {left_out}); "
                         "assign each parameter to one group in build_optimizer")
