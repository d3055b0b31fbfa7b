"""models.optim: AdamW and Muon steps against independent re-derivations, grouping, state, and upstream parity."""
import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from models import horizon, optim
from models.config import GPTConfig, config_from_depth
from models.gpt import GPT
from models.optim import MuonAdamW, build_optimizer

# Polar Express coefficients as upstream's nanochat/optim.py has them at the pin 92d63d4 (retyped, not imported).
COEFFS = [(8.156554524902461, -22.48329292557795, 15.878769915207462),
          (4.042929935166739, -2.808917465908714, 0.5000178451051316),
          (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
          (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
          (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)]
# (lr multiplier, Muon momentum, Muon weight decay) of three consecutive steps
SCHEDULE = [(1.0, 0.85, 0.2), (0.7, 0.88, 0.15), (0.4, 0.9, 0.1)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _param(array):
    return torch.nn.Parameter(torch.tensor(array, dtype=torch.float32))


# ------------------------------------------------------------------------------------------------- AdamW
def test_adamw_step_equals_the_closed_form_with_bias_correction_and_decoupled_decay():
    rng = _rng(1)
    p0, grads = rng.normal(size=(5, 7)), [rng.normal(size=(5, 7)) for _ in SCHEDULE]
    lr0, (b1, b2), eps, wd = 0.01, (0.8, 0.95), 1e-10, 0.1
    p = _param(p0)
    opt = MuonAdamW([dict(kind="adamw", params=[p], lr=lr0, betas=(b1, b2), eps=eps, weight_decay=wd)])
    ref, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, ((lrm, _, _), g) in enumerate(zip(SCHEDULE, grads), start=1):
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.set_schedule(lrm, 0.0, 0.0)
        opt.step()
        lr = lr0 * lrm
        ref = ref * (1 - lr * wd)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        ref = ref - lr / (1 - b1 ** t) * m / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(p.detach().numpy(), ref, rtol=2e-6, atol=1e-7)
    assert opt.state[p]["step"] == 3


def test_adamw_keeps_bf16_params_and_moments_in_bf16():
    p = torch.nn.Parameter(torch.zeros(8, 4, dtype=torch.bfloat16))  # zeros: the moved-to values round finely
    p.grad = torch.randn(8, 4).bfloat16()
    opt = MuonAdamW([dict(kind="adamw", params=[p], lr=0.1, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0)])
    before = p.detach().clone()
    opt.step()
    assert p.dtype == opt.state[p]["exp_avg"].dtype == opt.state[p]["exp_avg_sq"].dtype == torch.bfloat16
    # the first bias-corrected Adam step moves every element by ~lr*sign(g)
    np.testing.assert_allclose((before - p.detach()).float().numpy(), 0.1 * np.sign(p.grad.float().numpy()), rtol=0.005)


# -------------------------------------------------------------------------------------------------- Muon
def _muon_reference(p, m, v, g, mu, lr, wd, beta2=0.9):
    """One Muon step of one matrix in float64, written out from upstream's algorithm (nanochat/optim.py at the pin:
    Nesterov momentum, row equilibration, Polar Express, Muon+, NorMuon), independently of models/optim.py."""
    r, c = p.shape
    m = mu * m + (1 - mu) * g
    u = (1 - mu) * g + mu * m
    u = u * (np.linalg.norm(u) / np.sqrt(r)) / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-6)
    x = u / (1.01 * np.linalg.norm(u) + 1e-6)
    for a, b, cc in COEFFS:
        if r > c:
            gram = x.T @ x
            x = a * x + x @ (b * gram + cc * gram @ gram)
        else:
            gram = x @ x.T
            x = a * x + (b * gram + cc * gram @ gram) @ x
    x = x * np.sqrt(min(r, c)) / max(np.linalg.norm(x), 1e-6)
    q = (x ** 2).mean(axis=1, keepdims=True) if r >= c else (x ** 2).mean(axis=0, keepdims=True)
    v = beta2 * v + (1 - beta2) * q
    y = x / np.sqrt(np.maximum(v, 1e-10))
    x = y * np.linalg.norm(x) / max(np.linalg.norm(y), 1e-10)
    lr = lr * np.sqrt(max(1.0, r / c))
    p = p - lr * x - lr * wd * p * ((x * p) >= 0)
    return p, m, v


@pytest.mark.parametrize("kernels", ["fast", "parity"])
@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (24, 24)], ids=["tall", "wide", "square"])
def test_muon_steps_equal_an_independent_float64_derivation(shape, kernels):
    rng, k, lr0 = _rng(2), 3, 0.02
    starts = [rng.normal(size=shape) * 0.1 for _ in range(k)]
    params = [_param(a) for a in starts]
    opt = MuonAdamW([dict(kind="muon", params=params, lr=lr0, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.0)],
                    kernels=kernels)
    refs = [(a.copy(), np.zeros(shape), np.zeros((shape[0], 1) if shape[0] >= shape[1] else (1, shape[1])))
            for a in starts]
    for lrm, mu, wd in SCHEDULE:
        grads = [rng.normal(size=shape) for _ in range(k)]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.set_schedule(lrm, mu, wd)
        opt.step()
        refs = [_muon_reference(*ref, g, mu, lr0 * lrm, wd) for ref, g in zip(refs, grads)]
    for p, (ref, _, _) in zip(params, refs):
        np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def _ill_conditioned(k, rows, cols, smallest=1e-4, seed=5):
    """K matrices with singular values log-spaced from 1 down to ``smallest``, scaled as Muon feeds Polar Express."""
    g = torch.Generator().manual_seed(seed)
    m = min(rows, cols)
    u = torch.linalg.qr(torch.randn(k, rows, m, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(k, cols, m, generator=g, dtype=torch.float64))[0]
    x = u @ torch.diag_embed(torch.logspace(0, np.log10(smallest), m, dtype=torch.float64)) @ v.mT
    return x / (x.norm(dim=(-2, -1), keepdim=True) * 1.01)


@pytest.mark.parametrize("shape", [(3, 64, 256), (3, 256, 64)], ids=["wide", "tall"])
def test_gram_space_polar_express_is_the_same_polynomial_with_fp32_sized_rounding(shape):
    x = _ill_conditioned(*shape)
    direct64 = optim._polar_express(x, 5)
    # the same maths: in fp64 the two orders agree to fp64 rounding
    assert (optim._polar_express_gram(x, 5) - direct64).abs().max() < 1e-10
    # in fp32 the Gram order rounds more (Q grows as 1/sigma), the restart keeps it within a few x the direct order's
    def rel(y):
        return ((y.double() - direct64).norm(dim=(-2, -1)) / direct64.norm(dim=(-2, -1))).max().item()
    direct32, gram32 = rel(optim._polar_express(x.float(), 5)), rel(optim._polar_express_gram(x.float(), 5))
    assert direct32 < 2e-5 and gram32 < 1e-4, (direct32, gram32)
    # without the restart the error would be ~25x larger: the restart is what keeps it small
    saved = optim.GRAM_RESTART_AFTER
    try:
        optim.GRAM_RESTART_AFTER = 5
        assert rel(optim._polar_express_gram(x.float(), 5)) > 5 * gram32
    finally:
        optim.GRAM_RESTART_AFTER = saved


def test_orthogonalize_picks_the_gram_form_only_for_fast_fp32_elongated_stacks(monkeypatch):
    calls = []
    monkeypatch.setattr(optim, "_polar_express_gram", lambda x, n: calls.append(("gram", tuple(x.shape))) or x)
    monkeypatch.setattr(optim, "_polar_express", lambda x, n: calls.append(("direct", tuple(x.shape))) or x)
    for shape, dtype, polar in [((2, 8, 16), torch.float32, "gram"), ((2, 16, 8), torch.float32, "gram"),
                                ((2, 8, 12), torch.float32, "gram"), ((2, 8, 8), torch.float32, "gram"),
                                ((2, 8, 16), torch.bfloat16, "gram"), ((2, 8, 16), torch.float32, "direct")]:
        optim._orthogonalize(torch.zeros(shape, dtype=dtype), 5, polar)
    assert calls == [("gram", (2, 8, 16)), ("gram", (2, 16, 8)), ("direct", (2, 8, 12)), ("direct", (2, 8, 8)),
                     ("direct", (2, 8, 16)), ("direct", (2, 8, 16))]


def test_kernels_choose_the_polar_express_order_and_refuse_unknown_names():
    p = [_param(np.ones((4, 8)))]
    spec = dict(kind="muon", params=p, lr=0.02, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.0)
    assert MuonAdamW([spec])._polar == "gram"
    assert MuonAdamW([dict(spec, params=[_param(np.ones((4, 8)))])], kernels="parity")._polar == "direct"
    with pytest.raises(ValueError, match="kernels='quick'.*fast, parity"):
        MuonAdamW([dict(spec, params=[_param(np.ones((4, 8)))])], kernels="quick")


def test_muon_state_is_stacked_under_the_groups_first_param():
    tall = [_param(np.ones((6, 4))) for _ in range(2)]
    wide = [_param(np.ones((4, 6))) for _ in range(3)]
    spec = dict(kind="muon", lr=0.02, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.0)
    opt = MuonAdamW([dict(spec, params=tall), dict(spec, params=wide)])
    for p in tall + wide:
        p.grad = torch.randn(p.shape)
    opt.step()
    assert opt.state[tall[0]]["momentum_buffer"].shape == (2, 6, 4)
    assert opt.state[tall[0]]["second_momentum_buffer"].shape == (2, 6, 1)
    assert opt.state[wide[0]]["second_momentum_buffer"].shape == (3, 1, 6)
    assert tall[1] not in opt.state and wide[2] not in opt.state


# -------------------------------------------------------------------------------------- the full optimizer
def _tiny_gpt(seed=0):
    cfg = GPTConfig(sequence_len=16, vocab_size=100, n_layer=3, n_head=2, n_kv_head=2, n_embd=64, window_pattern="L")
    model = GPT(cfg, compute_dtype=torch.float32)
    model.init_weights(seed=seed)
    return model


def _train_steps(model, opt, steps, seed=0):
    """Optimizer steps on fixed random gradients, so two runs differ only by their update kernels."""
    gen = torch.Generator().manual_seed(seed)
    for lrm, mu, wd in steps:
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=gen) * 0.01
        opt.set_schedule(lrm, mu, wd)
        opt.step()
        model.zero_grad(set_to_none=True)


def test_compiled_and_eager_muon_kernels_agree_and_never_recompile():
    rng = _rng(4)
    starts = [rng.normal(size=shape) * 0.1 for shape in [(32, 16)] * 2 + [(16, 32)] * 2]  # tall and wide (2 graphs)
    runs = []
    for compile in (False, True):
        params = [_param(a) for a in starts]
        spec = dict(kind="muon", lr=0.02, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.0)
        opt = MuonAdamW([dict(spec, params=params[:2]), dict(spec, params=params[2:])], compile=compile)
        grads = _rng(5)
        for i, (lrm, mu, wd) in enumerate(SCHEDULE):
            for p in params:
                p.grad = torch.tensor(grads.normal(size=p.shape), dtype=torch.float32)
            opt.set_schedule(lrm, mu, wd)
            # new lr/momentum/decay values every step must not recompile the kernels
            with torch._dynamo.config.patch(error_on_recompile=i > 0):
                opt.step()
        runs.append([p.detach() - torch.tensor(a, dtype=torch.float32) for p, a in zip(params, starts)])
    for eager, compiled in zip(*runs):
        torch.testing.assert_close(compiled, eager, rtol=0, atol=2e-5 * eager.abs().max())


def test_state_dict_round_trip_continues_identically():
    model = _tiny_gpt()
    opt = build_optimizer(model, weight_decay=0.2)
    _train_steps(model, opt, SCHEDULE[:1])
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, weight_decay=0.2)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train_steps(model, opt, SCHEDULE[1:], seed=5)
    _train_steps(twin, twin_opt, SCHEDULE[1:], seed=5)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def _meta_gpt(depth, vocab, seq_len=2048, pattern="SSSL"):
    with torch.device("meta"):
        return GPT(config_from_depth(depth, vocab, max_seq_len=seq_len, window_pattern=pattern),
                   compute_dtype=torch.float32)


def test_groups_follow_upstreams_order_shapes_and_hyperparameters():
    model = _meta_gpt(4, 4096, 256, "L")
    groups = build_optimizer(model, weight_decay=0.25986).param_groups
    adamw, muon = groups[:6], groups[6:]
    assert [g["params"] for g in adamw] == [[model.lm_head.weight], [model.transformer.wte.weight],
                                          [model.value_embeds["1"].weight, model.value_embeds["3"].weight],
                                          [model.resid_lambdas], [model.x0_lambdas],
                                          [model.smear_gate.weight, model.smear_lambda, model.backout_lambda]]
    assert [g["betas"] for g in adamw] == [(0.8, 0.96), (0.8, 0.995), (0.8, 0.995), (0.8, 0.95), (0.96, 0.95), (0.8, 0.95)]
    assert [g["weight_decay"] for g in adamw] == [0.01, 0.001, 0.01, 0.05, 0.0, 0.0]
    assert all(g["eps"] == 1e-10 and g["kind"] == "adamw" for g in adamw)
    assert [(tuple(g["params"][0].shape), len(g["params"])) for g in muon] == [
        ((2, 12), 2), ((256, 256), 16), ((256, 1024), 4), ((1024, 256), 4)]
    assert all(g["kind"] == "muon" and g["weight_decay"] == 0.25986 and g["ns_steps"] == 5 and g["beta2"] == 0.9
               for g in muon)
    block0 = model.transformer.h[0]
    assert muon[1]["params"][:4] == [block0.attn.c_q.weight, block0.attn.c_k.weight, block0.attn.c_v.weight,
                                     block0.attn.c_proj.weight]
    assert all(g["initial_lr"] == g["lr"] for g in groups)


def test_polar_express_runs_in_bf16_exactly_when_the_model_computes_in_bf16():
    for dtype, expected in [(torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32), (torch.float16, torch.float32)]:
        with torch.device("meta"):
            model = GPT(config_from_depth(2, 256, max_seq_len=64), compute_dtype=dtype)
        assert build_optimizer(model).polar_dtype == expected


# (depth, vocab, seq, pattern, batch) -> initial lr of lm_head, wte, VE, resid, x0, smear, Muon: the param groups
# upstream's GPT.setup_optimizer builds at the pin for these flags (d4 row: the optimizer state such a run saved)
REFERENCE_LRS = [
    ((12, 32768, 2048, "SSSL", -1), (0.008, 0.3, 0.15, 0.005, 0.5, 0.2, 0.02)),
    ((20, 32768, 2048, "SSSL", -1), (0.0087636, 0.328634, 0.164317, 0.0070711, 0.707107, 0.2, 0.0282843)),
    ((26, 32768, 2048, "SSSL", -1), (0.0076862, 0.288231, 0.144115, 0.0070711, 0.707107, 0.2, 0.0282843)),
    ((4, 4096, 256, "L", 1024), (6.12372e-4, 0.022964, 0.011482, 2.20971e-4, 0.0220971, 0.2, 8.83883e-4)),
]


@pytest.mark.parametrize("run,lrs", REFERENCE_LRS, ids=["d12", "d20", "d26", "d4-local"])
def test_initial_lrs_match_upstreams_reference_runs(run, lrs):
    depth, vocab, seq, pattern, batch = run
    model = _meta_gpt(depth, vocab, seq, pattern)
    plan = horizon.resolve_horizon(scaling_params=model.num_scaling_params(),
                                   reference_scaling_params=_meta_gpt(12, vocab, seq, pattern).num_scaling_params(),
                                   flops_per_token=model.flops_per_token(), total_batch_size=batch)
    groups = build_optimizer(model, batch_lr_scale=plan.batch_lr_scale).param_groups
    assert [g["lr"] for g in groups[:7]] == pytest.approx(list(lrs), rel=1e-5)


# ------------------------------------------------------------------------------------------- bad inputs
def test_bad_groups_are_one_line_errors_naming_the_fix():
    p = _param(np.ones((4, 4)))
    with pytest.raises(ValueError, match="kind='adamw' or kind='muon'"):
        MuonAdamW([dict(kind="sgd", params=[p], lr=0.1)])
    with pytest.raises(ValueError, match=r"lacks \['betas', 'eps'\]"):
        MuonAdamW([dict(kind="adamw", params=[p], lr=0.1, weight_decay=0.0)])
    with pytest.raises(ValueError, match="one group per shape"):
        MuonAdamW([dict(kind="muon", params=[p, _param(np.ones((4, 5)))], lr=0.1, momentum=0.9, ns_steps=5,
                        beta2=0.9, weight_decay=0.0)])
    with pytest.raises(ValueError, match="polar_dtype"):
        MuonAdamW([dict(kind="adamw", params=[p], lr=0.1, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.0)],
                  polar_dtype=torch.float16)


def test_a_muon_group_with_some_grads_missing_is_refused():
    a, b = _param(np.ones((4, 4))), _param(np.ones((4, 4)))
    opt = MuonAdamW([dict(kind="muon", params=[a, b], lr=0.1, momentum=0.9, ns_steps=5, beta2=0.9, weight_decay=0.0)])
    a.grad = torch.ones(4, 4)
    with pytest.raises(RuntimeError, match="some grads missing"):
        opt.step()


def test_a_parameter_outside_every_group_is_refused():
    model = _tiny_gpt()
    model.extra = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"not grouped: \['extra'\]"):
        build_optimizer(model)


# --------------------------------------------------------------------------------------- upstream parity
_UPSTREAM_SCRIPT = textwrap.dedent('''
    import sys, torch
    clone, blob_path, out_path = sys.argv[1:4]
    sys.path.insert(0, clone)
    from nanochat.optim import MuonAdamW
    blob = torch.load(blob_path)
    params = [torch.nn.Parameter(t.clone()) for t in blob["params"]]
    groups = [dict(spec, params=[params[i] for i in idx]) for spec, idx in blob["groups"]]
    opt = MuonAdamW(groups)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    for (lrm, mu, wd), grads in zip(blob["schedule"], blob["grads"]):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * lrm
            if g["kind"] == "muon":
                g["momentum"], g["weight_decay"] = mu, wd
        opt.step()
    torch.save([p.detach() for p in params], out_path)
''')


class _Parity:
    """One set of params, groups and per-step grads, run through upstream's MuonAdamW (own process) or ours."""

    def __init__(self, tmp_path, schedule):
        self.tmp, self.schedule = tmp_path, schedule
        self.model = _tiny_gpt(seed=3)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.before = [p.detach().clone() for p in self.model.parameters()]
        gen = torch.Generator().manual_seed(7)
        self.grads = [[torch.randn(p.shape, generator=gen) * 0.01 for p in self.before] for _ in schedule]

    def _optimizer(self, model, polar_dtype=torch.float32):
        return build_optimizer(model, batch_lr_scale=0.5, weight_decay=1.0, polar_dtype=polar_dtype)

    def ours(self, polar_dtype=torch.float32):
        model = copy.deepcopy(self.model)
        opt = self._optimizer(model, polar_dtype)
        for (lrm, mu, wd), step_grads in zip(self.schedule, self.grads):
            for p, g in zip(model.parameters(), step_grads):
                p.grad = g.clone()
            opt.set_schedule(lrm, mu, wd)
            opt.step()
        return [p.detach() for p in model.parameters()]

    def upstream(self, repo, dtype="float32", compile=False):
        index = {id(p): i for i, p in enumerate(self.model.parameters())}
        specs = [({k: v for k, v in g.items() if k != "params"}, [index[id(p)] for p in g["params"]])
                 for g in self._optimizer(self.model).param_groups]
        blob, out = self.tmp / "in.pt", self.tmp / f"out_{dtype}_{compile}.pt"
        torch.save(dict(params=self.before, groups=specs, schedule=self.schedule, grads=self.grads), blob)
        env = dict(os.environ, NANOCHAT_DTYPE=dtype, TORCHINDUCTOR_CACHE_DIR=str(self.tmp / "inductor"))
        if not compile:
            env["TORCHDYNAMO_DISABLE"] = "1"  # upstream's kernels run as plain eager code: same maths, no compile wait
        script = self.tmp / "run_upstream.py"
        script.write_text(_UPSTREAM_SCRIPT)
        subprocess.run([sys.executable, "-I", str(script), str(repo), str(blob), str(out)],
                       check=True, env=env, cwd=self.tmp, timeout=600)
        return torch.load(out)

    def assert_updates_close(self, ours, theirs, rel, flips_per_mille: float = 0.0):
        """Each tensor's total change equals upstream's to ``rel`` of the change's largest element.

        Polar Express in fp32 is itself only good to ~4e-6 of the update (upstream vs a float64 derivation),
        and two correct fp32 implementations differ by about that much.

        With cautious weight decay, an update element within rounding of zero can land on either side of zero in
        two correct implementations, and the decay mask then flips for that element: it differs by at most one
        decay term lr*wd*|p| per step. ``flips_per_mille`` allows that many such elements per 1,000 of a Muon
        tensor (at most that difference each); a mask that were wrong would flip about half of them.
        """
        allowance = self.decay_allowance()
        for name, p0, a, b in zip(self.names, self.before, ours, theirs):
            tol = rel * (b - p0).abs().max()
            off = (a - b).abs() > tol
            if name in allowance and off.any():
                bound = tol + allowance[name] * torch.maximum(p0.abs(), torch.maximum(a.abs(), b.abs()))
                assert off.sum() <= flips_per_mille / 1000 * off.numel(), f"{name}: {int(off.sum())} elements off"
                assert ((a - b).abs() <= bound).all(), f"{name}: an element differs by more than one decay flip"
            else:
                torch.testing.assert_close(a - p0, b - p0, rtol=0, atol=tol, msg=lambda m: f"{name}: {m}")

    def decay_allowance(self) -> dict[str, float]:
        """Per Muon parameter: the sum over steps of lr*wd, lr with its shape factor (the most a flip can move p)."""
        model = copy.deepcopy(self.model)
        opt = self._optimizer(model)
        names = {id(p): n for n, p in model.named_parameters()}
        out = {}
        for group in opt.param_groups:
            if group["kind"] != "muon":
                continue
            rows, cols = group["params"][0].shape
            per_unit = sum(group["initial_lr"] * lrm * wd for lrm, _mu, wd in self.schedule)
            for p in group["params"]:
                out[names[id(p)]] = per_unit * max(1.0, rows / cols) ** 0.5
        return out

    def muon_distance(self, a, b):
        """Frobenius distance between two runs' Muon updates, relative to the size of b's."""
        pairs = [(x - p0, y - p0) for n, p0, x, y in zip(self.names, self.before, a, b) if ".h." in n]
        return (sum((x - y).square().sum() for x, y in pairs) / sum(y.square().sum() for _, y in pairs)).sqrt()


NO_DECAY = [(lrm, mu, 0.0) for lrm, mu, _ in SCHEDULE]


@pytest.mark.upstream
def test_three_steps_match_upstreams_optimizer_without_muon_decay(upstream_repo, tmp_path):
    run = _Parity(tmp_path, NO_DECAY)
    run.assert_updates_close(run.ours(), run.upstream(upstream_repo), rel=2e-5)


@pytest.mark.upstream
def test_three_steps_match_upstreams_optimizer_with_cautious_decay(upstream_repo, tmp_path):
    # a near-zero update element can flip the cautious mask on one CPU and not another (seen: 1 of 4,096 on an AMD
    # EPYC, none on an Intel Xeon), so up to 2 per 1,000 may differ by one decay term; everything else as without decay
    run = _Parity(tmp_path, SCHEDULE)
    run.assert_updates_close(run.ours(), run.upstream(upstream_repo), rel=2e-5, flips_per_mille=2)


@pytest.mark.upstream
def test_bf16_polar_express_is_as_close_to_upstreams_as_bf16_rounding_allows(upstream_repo, tmp_path):
    # bf16 rounds differently with every op order, so no two implementations agree tightly; the yardstick is
    # how far upstream's own bf16 run lies from its fp32 run (~3 % here)
    run = _Parity(tmp_path, NO_DECAY)
    ours, theirs = run.ours(torch.bfloat16), run.upstream(upstream_repo, "bfloat16")
    floor = run.muon_distance(run.upstream(upstream_repo, "float32"), theirs)
    assert run.muon_distance(ours, theirs) < 1.5 * floor
    assert run.muon_distance(ours, run.ours()) > 0.1 * floor  # the bf16 path really ran in bf16


@pytest.mark.upstream
@pytest.mark.slow
def test_three_steps_match_upstreams_compiled_kernels(upstream_repo, tmp_path):
    run = _Parity(tmp_path, NO_DECAY)
    run.assert_updates_close(run.ours(), run.upstream(upstream_repo, compile=True), rel=2e-5)


def test_free_grads_drops_each_gradient_after_its_update_and_changes_no_value():
    def run(free):
        torch.manual_seed(0)
        params = [_param(np.full((4, 8), 0.1)) for _ in range(2)] + [_param(np.ones(3))]
        spec = dict(kind="muon", lr=0.02, momentum=0.95, ns_steps=5, beta2=0.9, weight_decay=0.1)
        opt = MuonAdamW([dict(spec, params=params[:2]),
                         dict(kind="adamw", params=params[2:], lr=0.1, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0)],
                        free_grads=free)
        for p in params:
            p.grad = torch.randn(p.shape)
        opt.step()
        return params
    kept, freed = run(False), run(True)
    assert all(p.grad is not None for p in kept) and all(p.grad is None for p in freed)
    for a, b in zip(kept, freed):
        assert torch.equal(a.detach(), b.detach())
