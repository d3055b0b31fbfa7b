"""Eager-mode fast paths: autograd Functions with hand-written backward passes for the model's elementwise chains.

Each forward computes exactly what the plain PyTorch expression computes (same ops in the same order, so the
same bits); the backward is the same derivative written with fewer full-size temporaries and memory passes than
autograd's op-by-op version. On CPU, where nothing fuses these chains, that is a large share of a step.
``models.gpt`` uses them when it is not being traced by torch.compile (which fuses the plain ops itself).
One exception computes the same maths in another order: ``linear_softcap_cross_entropy`` (head + softcap + loss
with its gradients made chunk by chunk in the forward; the "fast" kernels, eager or compiled, never parity runs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import Function

_EPS = torch.finfo(torch.float32).eps  # F.rms_norm's default eps for fp32, used for every dtype (computed in fp32)
_LOW = (torch.bfloat16, torch.float16)


def _up(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _LOW else x


class _RMSNorm(Function):
    """y = scale * x / sqrt(mean(x^2) + eps) over the last dim, no weight (``scale`` a Python float, usually 1).

    Keeps its output, not its input, for the backward: the next op (a linear layer, attention) keeps the same
    tensor, so nothing extra stays alive, and the input can be freed. With x^ = y/s and r = rstd:
    dx = s*r*(g - x^ * mean(g*x^)) = (g - y * mean(g*y)/s^2) * (s*r).
    """

    @staticmethod
    def forward(ctx, x, scale):
        xf = _up(x)
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(_EPS))
        y = (xf * rstd).to(x.dtype)
        if scale != 1.0:
            y = y * scale  # as the plain expression norm(x) * scale rounds it
        ctx.save_for_backward(y, rstd)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, g):
        y, rstd = ctx.saved_tensors
        s = ctx.scale
        yf, gf = _up(y), _up(g)
        coef = (gf * yf).mean(-1, keepdim=True)
        if s != 1.0:
            coef.div_(s * s)
        dx = gf - yf * coef
        return dx.mul_(rstd * s if s != 1.0 else rstd).to(y.dtype), None


class _ReluSquare(Function):
    """y = relu(u)^2; dy/du = 2*relu(u)."""

    @staticmethod
    def forward(ctx, u):
        h = torch.relu(u)
        ctx.save_for_backward(h)
        return h.square()

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        return torch.mul(g, h).mul_(2)  # = g*(2h) exactly: doubling is exact


class _ReluSquareLinear(Function):
    """y = relu(u)^2 @ w.T (the MLP's activation and output projection), keeping only relu(u) for the backward.

    Autograd op by op would keep relu(u) (for the square's derivative) and relu(u)^2 (the projection's input), two
    (tokens x 4*width) tensors; here relu(u)^2 is recomputed in the backward (the same bits). The matmuls are the
    ones a separate linear layer's backward makes, so the gradients are the same bits too.
    """

    @staticmethod
    def forward(ctx, u, w):
        h = torch.relu(u)
        ctx.save_for_backward(h, w)
        return F.linear(h.square(), w)

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        # dw first, so that the recomputed relu(u)^2 is freed before dz (the same size) is made
        dw = g.reshape(-1, g.size(-1)).t().mm(h.square().reshape(-1, h.size(-1))) if ctx.needs_input_grad[1] else None
        dz = g.matmul(w)
        return dz.mul_(h).mul_(2), dw


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    return torch.cat((x[..., half:], x[..., :half]), dim=-1)


class _Rotary(Function):
    """y = x*cos + swap_halves(x)*sin with the tables of models.gpt.rotary_tables (sin has its second half negated).

    The rotation is orthogonal, so its backward is the inverse rotation: dx = g*cos - swap_halves(g)*sin.
    """

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        y = x * cos
        return y.add_(_swap_halves(x).mul_(sin))

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        dx = g * cos
        return dx.sub_(_swap_halves(g).mul_(sin)), None, None


class _Mix(Function):
    """y = a*x + b*x0 for 0-d tensors a, b (the per-layer resid/x0 lambdas)."""

    @staticmethod
    def forward(ctx, x, x0, a, b):
        ctx.save_for_backward(x, x0, a, b)
        y = a * x
        return y.add_(b * x0)

    @staticmethod
    def backward(ctx, g):
        x, x0, a, b = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx = g * a if need[0] else None
        dx0 = g * b if need[1] else None
        # Scalar grads as dot products: one read of each tensor, no full-size temporary.
        da = _dot(g, x).to(a.dtype) if need[2] else None
        db = _dot(g, x0).to(b.dtype) if need[3] else None
        return dx, dx0, da, db


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.dot(_up(u).reshape(-1), _up(v).reshape(-1))


def _head_grads(grad: torch.Tensor, w: torch.Tensor, x: torch.Tensor, dx: torch.Tensor, dw: torch.Tensor) -> None:
    """One chunk of the head's backward: dx = grad @ w into its rows, dw += grad.T @ x (fp32 sum for low precision)."""
    torch.mm(grad, w, out=dx)
    if x.dtype == dw.dtype:
        dw.addmm_(grad.t(), x)
    else:  # low-precision matmul per chunk, summed in fp32
        dw.add_(torch.mm(grad.t(), x))


class _SoftcapCrossEntropy(Function):
    """Per-row loss of cross_entropy(cap*tanh((x @ w.T)/cap), targets), ignore_index -1, in row chunks.

    Chunks keep each (rows x vocab) block in cache; the full-size tanh output is kept for the backward:
    d loss/d logits = (softmax(z) - onehot(target)) * (1 - tanh^2), z = cap*tanh. As |z| <= cap, the
    log-sum-exp needs no max-shift while exp(cap) * vocab stays far from overflow (cap <= 60 is checked).
    """

    @staticmethod
    def forward(ctx, x, w, targets, cap, rows):
        n, vocab = x.size(0), w.size(0)
        acc = torch.promote_types(x.dtype, torch.float32)  # logits math in fp32 (fp64 stays fp64, for gradcheck)
        keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        tanh_all = torch.empty(n, vocab, dtype=acc, device=x.device) if keep else None
        lse = torch.empty(n, dtype=acc, device=x.device)
        picked = torch.empty(n, dtype=acc, device=x.device)
        index = targets.clamp(min=0).unsqueeze(1)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            if keep and x.dtype == acc:
                t = torch.mm(x[s:e], w.t(), out=tanh_all[s:e])  # straight into the kept buffer
            else:
                t = torch.mm(x[s:e], w.t()).to(acc)
                if keep:
                    t = tanh_all[s:e].copy_(t)
            t.div_(cap).tanh_()
            torch.log(torch.mul(t, cap).exp_().sum(1), out=lse[s:e])
            picked[s:e] = t.gather(1, index[s:e]).squeeze(1).mul_(cap)
        valid = targets != -1
        ctx.save_for_backward(x, w, tanh_all, lse, index, valid)
        ctx.cap, ctx.rows = cap, rows
        return (lse - picked).masked_fill_(~valid, 0.0)

    @staticmethod
    def backward(ctx, g):
        x, w, tanh_all, lse, index, valid = ctx.saved_tensors
        cap, rows = ctx.cap, ctx.rows
        scale = (g.to(lse.dtype) * valid).unsqueeze(1)
        one = torch.ones((), dtype=lse.dtype, device=lse.device)
        dx = torch.empty_like(x)
        dw = torch.zeros(w.shape, dtype=lse.dtype, device=w.device)
        for s in range(0, x.size(0), rows):
            e = min(x.size(0), s + rows)
            t = tanh_all[s:e]
            grad = torch.mul(t, cap).sub_(lse[s:e, None]).exp_()  # softmax(z)
            grad.scatter_add_(1, index[s:e], -one.expand(e - s, 1))  # - onehot(target)
            grad.mul_(torch.addcmul(one, t, t, value=-1)).mul_(scale[s:e])  # through the softcap; loss weight
            _head_grads(grad.to(x.dtype), w, x[s:e], dx[s:e], dw)
        return dx, dw.to(w.dtype), None, None, None


def _chunk_loss_and_grad(logits: torch.Tensor, index: torch.Tensor, scale: torch.Tensor, cap: float):
    """Per-row loss of the soft-capped chunk and d(sum of scale*loss)/d logits, no max-shift (|z| <= cap).

    One function of plain ops so that torch.compile fuses it into a reduction pass and a pointwise pass.
    """
    t = torch.tanh(logits / cap)
    z = t * cap
    lse = torch.log(torch.exp(z).sum(1, keepdim=True))
    picked = z.gather(1, index)
    onehot = torch.arange(logits.size(1), device=logits.device)[None, :] == index
    grad = (torch.exp(z - lse) - onehot.to(z.dtype)) * (1 - t * t) * scale
    return (lse - picked).squeeze(1), grad


_COMPILED_CHUNK: dict = {}


def _chunk_kernel(compiled: bool):
    if not compiled:
        return _chunk_loss_and_grad
    if "fn" not in _COMPILED_CHUNK:
        _COMPILED_CHUNK["fn"] = torch.compile(_chunk_loss_and_grad, dynamic=False, fullgraph=True)
    return _COMPILED_CHUNK["fn"]


class _LinearSoftcapCrossEntropy(Function):
    """Reduced loss of cross_entropy(cap*tanh((x @ w.T)/cap), targets), with its gradients made in the forward.

    Chunk by chunk: logits = x_c @ w.T, the loss rows and d loss/d logits from them (``_chunk_loss_and_grad``),
    then dx_c = grad @ w and dw += grad.T @ x_c. Nothing of size (tokens x vocab) outlives a chunk: what the
    backward keeps is dx (tokens x width) and dw (vocab x width). The backward scales them by the incoming
    gradient, a scalar; when it is exactly 1.0 (``loss.backward()``) it hands them on as they are, so no second
    copy of either exists at the backward's start (where a d12 step's memory peaks).
    Same FLOPs as a separate forward and backward (one forward and two backward matmuls per chunk).
    """

    @staticmethod
    def forward(ctx, x, w, targets, cap, rows, reduction, compiled):
        n = x.size(0)
        acc = torch.promote_types(x.dtype, torch.float32)
        need = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        valid = targets != -1
        count = valid.sum()
        weight = valid.to(acc) / count.clamp_min(1).to(acc) if reduction == "mean" else valid.to(acc)
        index = targets.clamp(min=0).unsqueeze(1)
        loss_rows = torch.empty(n, dtype=acc, device=x.device)
        dx = torch.empty_like(x) if need else None
        dw = torch.zeros(w.shape, dtype=acc, device=w.device) if need else None
        kernel = _chunk_kernel(compiled)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            logits = torch.mm(x[s:e], w.t()).to(acc)
            loss_rows[s:e], grad = kernel(logits, index[s:e], weight[s:e, None], cap)
            if need:
                _head_grads(grad.to(x.dtype), w, x[s:e], dx[s:e], dw)
        ctx.save_for_backward(dx, dw)
        ctx.w_dtype = w.dtype
        loss = (loss_rows * valid).sum()
        return loss / count if reduction == "mean" else loss

    @staticmethod
    def backward(ctx, g):
        dx, dw = ctx.saved_tensors
        if g.device.type == "cpu" and bool(g == 1):  # loss.backward(): hand on the kept tensors, no second copy
            return dx, dw.to(ctx.w_dtype), None, None, None, None, None
        g = g.to(dw.dtype)
        return (dx * g.to(dx.dtype)), (dw * g).to(ctx.w_dtype), None, None, None, None, None


@torch.compiler.disable  # a graph break: the chunk loop runs eagerly, each chunk's elementwise part compiled
def linear_softcap_cross_entropy(x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, cap: float,
                                 reduction: str = "mean", chunk_bytes: int = 1 << 22,
                                 compiled: bool = False) -> torch.Tensor:
    """Mean or summed loss of the soft-capped logits x @ w.T without ever holding them whole (see the Function).

    ``compiled`` runs each chunk's elementwise maths through torch.compile (one fused kernel pair per chunk shape).
    For reduction "none" with gradients use ``softcap_cross_entropy`` (its backward needs per-row weights).
    """
    if not 0 < cap <= 60:
        raise ValueError(f"softcap {cap}: the unshifted log-sum-exp needs 0 < cap <= 60")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction={reduction!r}: linear_softcap_cross_entropy reduces with 'mean' or 'sum'")
    rows = max(1, chunk_bytes // (4 * w.size(0)))
    return _LinearSoftcapCrossEntropy.apply(x, w, targets, cap, rows, reduction, compiled)


def rms_norm(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return _RMSNorm.apply(x, scale)


def relu_square_linear(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return _ReluSquareLinear.apply(u, w)


def relu_square(u: torch.Tensor) -> torch.Tensor:
    return _ReluSquare.apply(u)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _Rotary.apply(x, cos, sin)


def mix(x: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _Mix.apply(x, x0, a, b)


def softcap_cross_entropy(x: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, cap: float,
                          reduction: str = "mean", chunk_bytes: int = 1 << 22) -> torch.Tensor:
    """Loss of the soft-capped logits x @ w.T (x: (N, C) activations, w: (V, C) in x's dtype, targets: (N,))."""
    if not 0 < cap <= 60:
        raise ValueError(f"softcap {cap}: the unshifted log-sum-exp needs 0 < cap <= 60")
    rows = max(1, chunk_bytes // (4 * w.size(0)))
    per_row = _SoftcapCrossEntropy.apply(x, w, targets, cap, rows)
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / (targets != -1).sum()  # mean over counted targets, as F.cross_entropy does
