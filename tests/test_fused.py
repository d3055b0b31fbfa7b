"""The eager fast paths: forwards bit-identical to the plain expressions, backwards equal to the true derivative."""
import pytest
import torch
import torch.nn.functional as F

from models import fused
from models.config import GPTConfig
from models.gpt import GPT, rotary_tables


def rand(*shape, dtype=torch.float32, seed=0, requires_grad=False):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return t.requires_grad_(requires_grad)


def plain_rotate(x, cos, sin):
    half = x.size(-1) // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), -1) * sin


def plain_softcap_ce(x, w, targets, cap, reduction):
    logits = cap * torch.tanh(F.linear(x, w).to(torch.promote_types(x.dtype, torch.float32)) / cap)
    return F.cross_entropy(logits, targets, ignore_index=-1, reduction=reduction)


def _perturbed_gpt(cfg, **kw) -> GPT:
    """An fp32 GPT moved off its init (zero projections, zero smear) so that every path shapes the loss."""
    model = GPT(cfg, compute_dtype=torch.float32, **kw)
    model.init_weights(42)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forwards_are_bit_identical_to_the_plain_expressions(dtype):
    x, x0 = rand(2, 16, 3, 32, dtype=dtype), rand(2, 16, 3, 32, dtype=dtype, seed=1)
    cos, sin = rotary_tables(16, 32, dtype)
    a, b = torch.tensor(1.13), torch.tensor(0.17)
    assert torch.equal(fused.rms_norm(x), F.rms_norm(x, (32,)))
    assert torch.equal(fused.relu_square(x), F.relu(x).square())
    assert torch.equal(fused.rotary(x, cos, sin), plain_rotate(x, cos, sin))
    assert torch.equal(fused.mix(x, x0, a, b), a * x + b * x0)


def test_backwards_match_numerical_derivatives():
    x, x0 = rand(2, 5, 2, 8, dtype=torch.float64, requires_grad=True), rand(2, 5, 2, 8, dtype=torch.float64, seed=1)
    cos, sin = rotary_tables(5, 8, torch.float64)
    a, b = torch.tensor(1.1, dtype=torch.float64, requires_grad=True), torch.tensor(0.3, dtype=torch.float64)
    x0.requires_grad_(True)
    b.requires_grad_(True)
    assert torch.autograd.gradcheck(fused.rms_norm, (x,))
    assert torch.autograd.gradcheck(fused.relu_square, (x,))
    assert torch.autograd.gradcheck(lambda t: fused.rotary(t, cos, sin), (x,))
    assert torch.autograd.gradcheck(fused.mix, (x, x0, a, b))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softcap_cross_entropy_matches_numerical_derivatives_across_chunks(reduction):
    x = rand(7, 6, dtype=torch.float64, requires_grad=True)
    w = (rand(10, 6, dtype=torch.float64, seed=1) * 3).requires_grad_(True)  # large logits: the cap is active
    targets = torch.tensor([3, -1, 0, 9, 9, 2, -1])
    # 2 rows per chunk: three full chunks and a remainder
    loss = lambda x, w: fused.softcap_cross_entropy(x, w, targets, 2.0, reduction, chunk_bytes=2 * 4 * 10)
    assert torch.autograd.gradcheck(loss, (x, w))
    torch.testing.assert_close(loss(x, w), plain_softcap_ce(x, w, targets, 2.0, reduction))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_softcap_cross_entropy_agrees_with_the_plain_loss_and_grads(dtype):
    x = rand(300, 64, dtype=dtype, requires_grad=True)
    w = (rand(500, 64, seed=1) * 0.5).to(dtype).requires_grad_(True)
    targets = torch.randint(0, 500, (300,), generator=torch.Generator().manual_seed(2))
    targets[:11] = -1
    ours = fused.softcap_cross_entropy(x, w, targets, 15.0, "mean", chunk_bytes=64 * 4 * 500)
    (gx, gw) = torch.autograd.grad(ours, (x, w))
    theirs = plain_softcap_ce(x, w, targets, 15.0, "mean")
    (px, pw) = torch.autograd.grad(theirs, (x, w))
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-3, rtol=2e-2)
    torch.testing.assert_close(ours, theirs, **tol)
    torch.testing.assert_close(gx, px, **tol)
    torch.testing.assert_close(gw, pw, **tol)


def test_softcap_cross_entropy_refuses_a_cap_that_could_overflow():
    with pytest.raises(ValueError, match="softcap 100"):
        fused.softcap_cross_entropy(rand(2, 4), rand(3, 4), torch.tensor([0, 1]), 100.0)


def test_gpt_fast_and_plain_paths_give_the_same_loss_and_gradients():
    cfg = GPTConfig(sequence_len=128, vocab_size=500, n_layer=3, n_head=4, n_kv_head=2, n_embd=64, window_pattern="SL")
    idx = torch.randint(0, 500, (2, 128), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 500, (2, 128), generator=torch.Generator().manual_seed(1))
    results = []
    for fast in (True, False):
        model = _perturbed_gpt(cfg)
        model.fast_paths = fast
        loss = model(idx, targets)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_fast, grads_fast), (loss_plain, grads_plain) = results
    torch.testing.assert_close(loss_fast, loss_plain, atol=1e-6, rtol=0)
    for name, grad in grads_plain.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads_fast[name], grad, atol=1e-5 * scale, rtol=0, msg=name)


@pytest.mark.parametrize("eager", [True, False], ids=["fused-ops", "plain-ops"])
def test_gpt_fast_and_parity_kernels_give_the_same_loss_and_gradients(eager):
    """Same maths, other order: q/k rotary + norm apart, and the chunked loss with its gradients in the forward."""
    cfg = GPTConfig(sequence_len=128, vocab_size=500, n_layer=3, n_head=4, n_kv_head=2, n_embd=64, window_pattern="SL")
    idx = torch.randint(0, 500, (2, 128), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 500, (2, 128), generator=torch.Generator().manual_seed(1))
    results = {}
    for kernels in ("fast", "parity"):
        model = _perturbed_gpt(cfg, kernels=kernels)
        model.fast_paths = eager
        loss = model(idx, targets)
        loss.backward()
        results[kernels] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()}, model)
    torch.testing.assert_close(results["fast"][0], results["parity"][0], atol=1e-6, rtol=0)
    for name, grad in results["parity"][1].items():
        torch.testing.assert_close(results["fast"][1][name], grad, atol=1e-5 * grad.abs().max().item(), rtol=0,
                                   msg=name)
    fast_model = results["fast"][2]
    with torch.no_grad():  # per-token losses (the BPB eval) and logits take the shared path
        per_token = fast_model(idx, targets, loss_reduction="none")
    assert per_token.shape == (2 * 128,)
    with pytest.raises(ValueError, match="kernels='exact'.*fast, parity"):
        GPT(cfg, kernels="exact")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_softcap_cross_entropy_matches_numerical_derivatives_across_chunks(reduction):
    x = rand(7, 6, dtype=torch.float64, requires_grad=True)
    w = (rand(10, 6, dtype=torch.float64, seed=1) * 3).requires_grad_(True)  # large logits: the cap is active
    targets = torch.tensor([3, -1, 0, 9, 9, 2, -1])
    loss = lambda x, w: fused.linear_softcap_cross_entropy(x, w, targets, 2.0, reduction, chunk_bytes=2 * 4 * 10)
    assert torch.autograd.gradcheck(loss, (x, w))  # the backward's scaling by the incoming gradient included
    torch.testing.assert_close(loss(x, w), plain_softcap_ce(x, w, targets, 2.0, reduction))


@pytest.mark.parametrize("compiled", [False, True])
def test_linear_softcap_cross_entropy_agrees_with_the_plain_loss_and_grads(compiled):
    x = rand(300, 64, requires_grad=True)
    w = (rand(500, 64, seed=1) * 0.5).requires_grad_(True)
    targets = torch.randint(0, 500, (300,), generator=torch.Generator().manual_seed(2))
    targets[:11] = -1
    ours = fused.linear_softcap_cross_entropy(x, w, targets, 15.0, "mean", chunk_bytes=64 * 4 * 500,
                                              compiled=compiled)
    (gx, gw) = torch.autograd.grad(ours, (x, w))
    theirs = plain_softcap_ce(x, w, targets, 15.0, "mean")
    (px, pw) = torch.autograd.grad(theirs, (x, w))
    for a, b in ((ours, theirs), (gx, px), (gw, pw)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_linear_softcap_cross_entropy_keeps_nothing_vocab_wide_for_the_backward():
    x, w = rand(64, 8, requires_grad=True), rand(4000, 8, seed=1, requires_grad=True)
    loss = fused.linear_softcap_cross_entropy(x, w, torch.zeros(64, dtype=torch.long), 15.0, chunk_bytes=16 * 4 * 4000)
    kept = loss.grad_fn.saved_tensors
    assert sum(t.numel() for t in kept) == x.numel() + w.numel()  # dx and dw, no (64 x 4000) logits or tanh


def test_linear_softcap_cross_entropy_refuses_per_row_losses():
    with pytest.raises(ValueError, match="reduction='none'"):
        fused.linear_softcap_cross_entropy(rand(2, 4), rand(3, 4), torch.tensor([0, 1]), 15.0, "none")


def test_relu_square_linear_is_the_plain_expression_bit_for_bit_forward_and_backward():
    u, w = rand(4, 16, 32, requires_grad=True), rand(8, 32, seed=1, requires_grad=True)
    ours = fused.relu_square_linear(u, w)
    kept = ours.grad_fn.saved_tensors
    assert sum(t.numel() for t in kept) == u.numel() + w.numel()  # relu(u) and w: no relu(u)^2 kept
    del kept
    gu, gw = torch.autograd.grad(ours.square().sum(), (u, w))
    u2, w2 = u.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    plain = F.linear(fused.relu_square(u2), w2)  # the eager path before: relu^2 Function, then a linear layer
    pu, pw = torch.autograd.grad(plain.square().sum(), (u2, w2))
    assert torch.equal(ours, plain) and torch.equal(gu, pu) and torch.equal(gw, pw)


def test_rms_norm_keeps_its_output_not_its_input_and_scales_like_the_plain_expression():
    x = rand(3, 5, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fused.rms_norm(x, 1.2), (x,))
    x32 = rand(3, 5, 64, requires_grad=True)
    y = fused.rms_norm(x32, 1.2)
    assert torch.equal(y, F.rms_norm(x32, (64,)) * 1.2)  # the plain expression norm(x) * scale, same bits
    assert y.grad_fn.saved_tensors[0].data_ptr() == y.data_ptr()  # the output is what it keeps
