"""The MuonAdamW optimizer: AdamW for embeddings, lm_head and scalars, Muon for the transformer-block matrices.

Owns the update maths (one step, single process) and the parameter grouping of nanochat's GPT:

- ``adamw_update(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1, beta2, eps, weight_decay)``
  decoupled-decay AdamW with bias correction, fp32 maths, one fused pass over a list of tensors
- ``muon_update(grads, params, momentum_buf, second_buf, momentum, lr, wd, beta2, ns_steps, polar_dtype, polar)``
  one stack of K same-shape matrices: Nesterov momentum -> MuonEq row equilibration -> Polar Express
  -> Muon+ norm -> NorMuon second moment -> cautious weight decay
- ``class MuonAdamW(param_groups, *, compile=False, polar_dtype=torch.float32, kernels="fast")``
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

from models.horizon import dmodel_lr_scale
from protocol.kernels import check_kernels

# Polar Express (Amsel et al. 2025) odd-polynomial coefficients (a, b, c) for 5 iterations.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
GRAM_MIN_ASPECT = 2      # Gram-space Polar Express where the longer side is >= 2x the shorter (cheaper there)
GRAM_RESTART_AFTER = 3   # ... restarted from X once, after this many iterations (keeps its rounding near fp32's)
ADAMW_KEYS = ("lr", "betas", "eps", "weight_decay")
MUON_KEYS = ("lr", "momentum", "ns_steps", "beta2", "weight_decay")


# ----------------------------------------------------------------------------------------------- AdamW
def adamw_update(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                 steps: list[int], *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """In-place AdamW step of same-device, same-dtype tensors, each at its own step count (1-based).

    p <- p*(1 - lr*wd); m <- lerp(m, g, 1-beta1); v <- lerp(v, g^2, 1-beta2);
    p <- p - lr/(1-beta1^t) * m / (sqrt(v/(1-beta2^t)) + eps)
    This is the update torch's fused AdamW kernel performs (maths in fp32 for bf16 tensors, state kept in the
    param dtype), in one pass over all the tensors instead of ~10 elementwise passes per tensor.
    """
    step_t = [torch.full((), float(t), dtype=torch.float32, device=p.device) for p, t in zip(params, steps)]
    torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], step_t, lr=lr, beta1=beta1, beta2=beta2,
                        weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False)


# ------------------------------------------------------------------------------------------------ Muon
# The Muon maths works on (K, r, c) stacks. Per-row/column factors are computed from small reductions and
# applied in one multiply each, so the full-size tensors are read as few times as possible.
def _nesterov(grads: Tensor, momentum_buf: Tensor, momentum: Tensor) -> Tensor:
    """Update the momentum buffer and return the Nesterov look-ahead, reusing the grads' storage."""
    mu = momentum.to(grads.dtype)
    momentum_buf.lerp_(grads, 1 - mu)
    return grads.lerp_(momentum_buf, mu)


def _equilibrate_and_normalize(u: Tensor) -> Tensor:
    """MuonEq (every row rescaled to the mean row norm ||U||_F/sqrt(r)), then X = U'/(1.01*||U'||_F + 1e-6).

    Both steps are per-row factors known from the row norms alone, so U is read twice (norms, one multiply).
    """
    row_norm = torch.linalg.vector_norm(u, dim=-1, keepdim=True, dtype=torch.float32)
    target = row_norm.square().sum(dim=-2, keepdim=True).sqrt() / u.size(-2) ** 0.5
    eq = target / row_norm.clamp_min(1e-6)  # rows below 1e-6 are scaled as if their norm were 1e-6
    eq_norm = (row_norm * eq).square().sum(dim=-2, keepdim=True).sqrt()
    return u * (eq / (eq_norm * 1.01 + 1e-6)).to(u.dtype)


def _polar_express(x: Tensor, ns_steps: int) -> Tensor:
    """Odd-polynomial iteration X <- aX + (bA + cA^2)X with A = XX^T (X <- aX + X(bA + cA^2), A = X^T X if tall).

    baddbmm folds each scale-and-add into its matmul (one rounding, no separate elementwise pass).
    """
    tall = x.size(-2) > x.size(-1)
    for a, b, c in POLAR_EXPRESS_COEFFS[:ns_steps]:
        gram = x.mT @ x if tall else x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, x, poly, beta=a) if tall else torch.baddbmm(x, poly, x, beta=a)
    return x


def _polar_express_gram(x: Tensor, ns_steps: int) -> Tensor:
    """The same polynomial iteration as ``_polar_express``, evaluated in the small (m x m) Gram space.

    With X wide (m x n, m < n; a tall X is transposed first) every iterate is X_k = Q_k X_0 with Q_k a polynomial
    in A_0 = X_0 X_0^T, so each step needs only m x m products: P = aI + bA + cA^2, Q <- P Q, A <- P A P (the
    next iterate's Gram matrix, since P and A commute). X_0 is multiplied in once at the end. Per step that is
    4 m^3-products instead of 2 m^2 n + m^3: for the MLP matrices (n = 4m) about 45 % fewer FLOPs. Q's entries
    grow with the iteration (as 1/sigma for small singular values), and so does its rounding; one restart from
    X after ``GRAM_RESTART_AFTER`` steps keeps the result within ~2x the direct iteration's fp32 rounding
    (measured: relative error vs an fp64 reference 1.1e-5, direct 5.6e-6, no restart 2.8e-4; docs/performance.md).
    """
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    coeffs = POLAR_EXPRESS_COEFFS[:ns_steps]
    for phase in (coeffs[:GRAM_RESTART_AFTER], coeffs[GRAM_RESTART_AFTER:]):
        if not phase:
            continue
        gram = x @ x.mT
        eye = torch.eye(gram.size(-1), dtype=gram.dtype, device=gram.device)
        q = None
        for i, (a, b, c) in enumerate(phase):
            poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c) + a * eye
            q = poly if q is None else poly @ q
            if i < len(phase) - 1:
                gram = poly @ gram @ poly
        x = q @ x
    return x.mT if tall else x


def _orthogonalize(x: Tensor, ns_steps: int, polar: str) -> Tensor:
    """Polar Express of a (K, r, c) stack: the Gram-space form (``polar="gram"``) where it is cheaper and the
    maths is fp32, else the direct iteration (always for ``polar="direct"``, upstream's operation order)."""
    long, short = max(x.shape[-2:]), min(x.shape[-2:])
    if polar == "gram" and x.dtype == torch.float32 and long >= GRAM_MIN_ASPECT * short:
        return _polar_express_gram(x, ns_steps)
    return _polar_express(x, ns_steps)


def _scaled_update(x: Tensor, second_buf: Tensor, beta2: Tensor, lr: Tensor) -> Tensor:
    """lr * NorMuon(Muon+(X)). Muon+ snaps ||X||_F to sqrt(min(r, c)); NorMuon divides each row (each column
    if wide) by its RMS from an EMA of mean squares, keeping the Frobenius norm. All three are per-row/column
    factors, found from one reduction pass over X and applied in one multiply."""
    red_dim = -1 if x.size(-2) >= x.size(-1) else -2
    n = x.size(red_dim)
    mean_sq = torch.linalg.vector_norm(x, dim=red_dim, keepdim=True, dtype=torch.float32).square() / n
    plus = min(x.size(-2), x.size(-1)) ** 0.5 / (mean_sq.sum(dim=(-2, -1), keepdim=True) * n).sqrt().clamp_min(1e-6)
    mean_sq = mean_sq * plus.square()  # the mean squares of plus * X
    norm = (mean_sq.sum(dim=(-2, -1), keepdim=True) * n).sqrt()
    second_buf.lerp_(mean_sq.to(second_buf.dtype), 1 - beta2.to(second_buf.dtype))  # EMA, no bias correction
    rsqrt = second_buf.clamp_min(1e-10).rsqrt().float()
    new_norm = (mean_sq * rsqrt.square()).sum(dim=(-2, -1), keepdim=True).mul(n).sqrt()
    return x * (lr * plus * rsqrt * (norm / new_norm.clamp_min(1e-10))).to(x.dtype)


def _cautious_step(params: Tensor, step: Tensor, lr_wd: Tensor) -> None:
    """p <- p - lr*U - lr*wd*p, the decay only where U and p agree in sign (``step`` = lr*U, lr > 0).

    Plain tensor ops: a 0-d tensor given as a Scalar argument (addcmul's value) would sync a GPU in eager mode.
    """
    agree = (step * params) >= 0
    params.sub_(step + lr_wd * params * agree)


def muon_update(grads: Tensor, params: Tensor, momentum_buf: Tensor, second_buf: Tensor, momentum: Tensor,
                lr: Tensor, wd: Tensor, beta2: Tensor, ns_steps: int, polar_dtype: torch.dtype,
                polar: str = "direct") -> None:
    """In-place Muon step of a (K, r, c) stack; ``lr`` already includes the sqrt(max(1, r/c)) shape factor.

    Nesterov momentum -> MuonEq -> Polar Express (in ``polar_dtype``; ``polar`` "direct" or "gram", see
    ``_orthogonalize``) -> Muon+ -> NorMuon -> cautious decay.
    The hyperparameters are fp32 0-d tensors so a compiled version is not recompiled when they change.
    """
    g = _nesterov(grads, momentum_buf, momentum)
    x = _orthogonalize(_equilibrate_and_normalize(g.to(polar_dtype)), ns_steps, polar).to(params.dtype)
    _cautious_step(params, _scaled_update(x, second_buf, beta2, lr), lr * wd)


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

    ``compile=True`` runs each Muon group's update through ``torch.compile(dynamic=False, fullgraph=True)``
    (one graph per matrix shape); its hyperparameters enter as fp32 0-d tensors on the params' device, so
    changing them every step never recompiles. AdamW groups always use torch's fused kernel (one pass, nothing to compile).
    ``polar_dtype`` is the dtype of the Polar Express iteration (bf16 when the model computes in bf16, else fp32).
    ``kernels="fast"`` evaluates Polar Express in Gram space where that is cheaper (same maths, other rounding);
    ``"parity"`` keeps upstream's operation order (bit-identical updates to upstream's under torch.compile).
    ``free_grads=True`` drops each gradient (``p.grad = None``) as soon as its group's update no longer needs it,
    as ``zero_grad(set_to_none=True)`` after the step would, but early: the embedding and head gradients are gone
    before the Muon groups make their temporaries, and a Muon group's own gradients once they are stacked.
    """

    def __init__(self, param_groups: list[dict], *, compile: bool = False, polar_dtype: torch.dtype = torch.float32,
                 kernels: str = "fast", free_grads: bool = False):
        if polar_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"polar_dtype={polar_dtype}: use torch.float32 or torch.bfloat16 (fp16 overflows in Polar Express)")
        check_kernels(kernels)
        super().__init__(param_groups, defaults={})
        self.polar_dtype = polar_dtype
        self.kernels = kernels
        self.free_grads = free_grads
        self._polar = "gram" if kernels == "fast" else "direct"
        self._muon = _kernel(muon_update, compile)
        self._hp: dict = {}  # device -> fp32 0-d hyperparameter tensors fed to the Muon kernel

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
            if self.free_grads:
                for p in group["params"]:
                    p.grad = None
        return loss

    def _hyperparameters(self, device: torch.device, **values: float) -> dict:
        """This step's values in 0-d fp32 tensors on the params' device, reused so no compiled graph recompiles."""
        if device not in self._hp:
            self._hp[device] = {n: torch.zeros((), dtype=torch.float32, device=device) for n in values}
        hp = self._hp[device]
        for name, value in values.items():
            hp[name].fill_(value)
        return hp

    def _step_adamw(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
        beta1, beta2 = group["betas"]
        for bucket in _by_device_and_dtype(params):  # the fused kernel takes one device and dtype per call
            states = [self.state[p] for p in bucket]
            adamw_update(bucket, [p.grad for p in bucket], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], [s["step"] for s in states], lr=group["lr"],
                         beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])

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
        hp = self._hyperparameters(params[0].device, lr=group["lr"] * max(1.0, rows / cols) ** 0.5,
                                   wd=group["weight_decay"], momentum=group["momentum"], beta2=group["beta2"])
        stacked, grads = torch.stack(params), torch.stack([p.grad for p in params])
        if self.free_grads:
            for p in params:
                p.grad = None
        self._muon(grads, stacked, state["momentum_buffer"],
                   state["second_momentum_buffer"], hp["momentum"], hp["lr"], hp["wd"], hp["beta2"],
                   group["ns_steps"], self.polar_dtype, self._polar)
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


def _by_device_and_dtype(params: list[Tensor]) -> list[list[Tensor]]:
    buckets: dict = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    return list(buckets.values())


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
                    polar_dtype: torch.dtype | None = None, kernels: str = "fast",
                    free_grads: bool = False) -> MuonAdamW:
    """nanochat's groups for a GPT: six AdamW groups, then one Muon group per block-matrix shape (ascending).

    LR arguments are the CLI values; ``batch_lr_scale`` (sqrt(B/2^19)) multiplies all but the smear group,
    and the embedding/VE/lm_head groups are also scaled by (d/768)^-0.5. ``weight_decay`` is Muon's
    (already horizon-scaled) decay; the AdamW decays are fixed. ``polar_dtype`` defaults to bf16 exactly when
    the model computes in bf16 (its ``compute_dtype``, else the dtype it keeps the token embedding in).
    ``kernels``, ``free_grads``: see MuonAdamW ("parity" for exact-parity runs against upstream).
    """
    d_scale = dmodel_lr_scale(model.transformer.wte.weight.size(1))
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
        compute_dtype = getattr(model, "compute_dtype", model.transformer.wte.weight.dtype)
        polar_dtype = torch.bfloat16 if compute_dtype == torch.bfloat16 else torch.float32
    return MuonAdamW(groups, compile=compile, polar_dtype=polar_dtype, kernels=kernels, free_grads=free_grads)


def _adamw_group(params, lr: float, betas: tuple[float, float], weight_decay: float) -> dict:
    return dict(kind="adamw", params=list(params), lr=lr, betas=betas, eps=1e-10, weight_decay=weight_decay)


def _check_covers_model(model: torch.nn.Module, groups: list[dict]) -> None:
    """Every trainable parameter in exactly one group: a new parameter must be given an optimizer group."""
    grouped = [id(p) for g in groups for p in g["params"]]
    unique = set(grouped)
    left_out = sorted(n for n, p in model.named_parameters() if id(p) not in unique)
    if left_out or len(grouped) != len(unique):
        raise ValueError(f"optimizer groups do not cover the model exactly once (not grouped: {left_out}); "
                         "assign each parameter to one group in build_optimizer")
