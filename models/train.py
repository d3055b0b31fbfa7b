"""`python -m models.train`: pretrain our GPT the way upstream's base_train does, and write harness JSONL events.

Flag names follow upstream's scripts/base_train.py so one budget maps to both arms with the same words; the
extra flags are ours (--warmdown-shape, --seed, --metrics-out, --base-dir, --compile, --checkpoint-dir,
--checkpoint-before-eval, --muon-weight-decay-off, --kernels, --fast-setting). The loop mirrors upstream's: evaluate at step 0, every
--eval-every steps (and every --warmdown-eval-every steps in the warmdown) and at the end; exactly --num-iterations optimizer steps; dt covers the micro-steps, the
next batch's fetch, the optimizer step and the loss read-back.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch

from models import cuda_memory, distributed
from models.bpb import eval_steps, evaluate_bpb
from models.checkpoint import save_checkpoint
from models.config import config_from_depth
from models.data import iter_batches
from models.gpt import GPT
from models.horizon import Horizon, grad_accum_steps, resolve_horizon
from models.optim import build_optimizer
from models.schedule import lr_multiplier, muon_momentum, muon_weight_decay
from protocol.kernels import DEFAULT_KERNELS, KERNELS
from protocol.schedule import is_eval_step
from models.tokenizer import load_token_bytes, load_tokenizer
from protocol.events import EvalEvent, EventWriter, FinalEvent, StepEvent
from protocol.upstream_output import EMA_BETA  # smoothing of the printed training loss, as upstream


class UsageError(ValueError):
    """A flag value that cannot work; the message names the flag and the fix."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.train",
        description="Pretrain our nanochat-equivalent GPT and write JSONL events.",
        epilog="example: python -m models.train --depth=4 --max-seq-len=256 --device-batch-size=8 "
               "--total-batch-size=2048 --num-iterations=150 --base-dir=$NANOCHAT_BASE_DIR --metrics-out=events.jsonl")
    # Runtime
    p.add_argument("--device-type", default="", help="cuda|cpu (empty = cuda if available)")
    p.add_argument("--base-dir", default=os.environ.get("NANOCHAT_BASE_DIR", ""),
                   help="nanochat base dir with base_data_climbmix/*.parquet and tokenizer/ (default $NANOCHAT_BASE_DIR)")
    p.add_argument("--seed", type=int, default=42, help="seed of the weight init (upstream's is fixed at 42)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA, off for CPU)")
    p.add_argument("--compile-optimizer", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the Muon kernels, as upstream always does (one-time cost at step 0)")
    # Model architecture
    p.add_argument("--depth", type=int, default=20, help="number of transformer blocks")
    p.add_argument("--aspect-ratio", type=int, default=64, help="model_dim = depth * aspect_ratio, rounded up to head_dim")
    p.add_argument("--head-dim", type=int, default=128, help="attention head dimension")
    p.add_argument("--max-seq-len", type=int, default=2048, help="context length")
    p.add_argument("--window-pattern", default="SSSL", help="L=full context, S=short window, tiled over layers")
    # Training horizon (first that is set wins)
    p.add_argument("--num-iterations", type=int, default=-1, help="optimizer steps (-1 = derive from the next two)")
    p.add_argument("--target-flops", type=float, default=-1.0, help="train to this many FLOPs (-1 = disable)")
    p.add_argument("--target-param-data-ratio", type=float, default=12, help="tokens : scaling params (-1 = disable)")
    # Optimization
    p.add_argument("--device-batch-size", type=int, default=32, help="rows per micro-step per process")
    p.add_argument("--total-batch-size", type=int, default=-1, help="tokens per optimizer step (-1 = upstream's auto)")
    p.add_argument("--embedding-lr", type=float, default=0.3)
    p.add_argument("--unembedding-lr", type=float, default=0.008)
    p.add_argument("--weight-decay", type=float, default=0.28, help="Muon cautious weight decay before scaling")
    p.add_argument("--matrix-lr", type=float, default=0.02)
    p.add_argument("--scalar-lr", type=float, default=0.5)
    p.add_argument("--warmup-steps", type=int, default=40)
    p.add_argument("--warmdown-ratio", type=float, default=0.65)
    p.add_argument("--warmdown-shape", choices=["sqrt", "linear"], default="sqrt",
                   help="sqrt: lrm = final + (1-final)(1-sqrt(p)); linear: upstream's original")
    p.add_argument("--final-lr-frac", type=float, default=0.05)
    p.add_argument("--muon-weight-decay-off", action="store_true", help="Muon weight decay 0 (tightest parity checks)")
    p.add_argument("--kernels", choices=KERNELS, default=DEFAULT_KERNELS,
                   help="fast: same maths in our cheapest order (other rounding); parity: upstream's operation order, "
                        "bit-identical to upstream when both are compiled on CPU (exact-parity checks)")
    p.add_argument("--fast-setting", action="store_true",
                   help="other training arithmetic, judged by time-to-target only (never parity): compute in bf16, "
                        "as upstream does on GPUs; on CPU without torch.compile (compiled bf16 stalled at the smoke "
                        "budget: val BPB 3.11 vs 2.63 eager; eager bf16 stalls on some seeds too). docs/performance.md")
    # Evaluation
    p.add_argument("--eval-every", type=int, default=250, help="val bpb every N steps (-1 = never)")
    p.add_argument("--warmdown-eval-every", type=int, default=0,
                   help="also every N steps from the warmdown's first step, where BPB moves most (0 = no extra evals)")
    p.add_argument("--eval-tokens", type=int, default=80 * 524288)
    # Output
    p.add_argument("--metrics-out", default="", help="JSONL events file (step/eval/final records)")
    p.add_argument("--checkpoint-dir", default="", help="save the final checkpoint here (upstream's layout)")
    p.add_argument("--checkpoint-before-eval", action="store_true",
                   help="also save a checkpoint before each eval, so a crash in eval loses no training")
    p.add_argument("--quiet", action="store_true", help="print only evals and the summary")
    return p


def check_args(a: argparse.Namespace) -> None:
    """Reject values that cannot work, one line each, before anything heavy happens."""
    if not a.base_dir:
        raise UsageError("--base-dir is empty: point it (or $NANOCHAT_BASE_DIR) at a nanochat base dir")
    for name in ("depth", "max_seq_len", "device_batch_size", "head_dim", "aspect_ratio"):
        if getattr(a, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')}={getattr(a, name)}: must be a positive integer")
    if not 0 <= a.warmdown_ratio <= 1:
        raise UsageError(f"--warmdown-ratio={a.warmdown_ratio}: must be between 0 and 1")
    if a.warmdown_eval_every < 0:
        raise UsageError(f"--warmdown-eval-every={a.warmdown_eval_every}: must be >= 0 (0 = no extra evals)")
    if a.warmup_steps < 0:
        raise UsageError(f"--warmup-steps={a.warmup_steps}: must be >= 0")
    if a.device_type not in ("", "cpu", "cuda"):
        raise UsageError(f"--device-type={a.device_type!r}: use cpu or cuda")
    if a.device_type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device-type=cuda but this torch sees no CUDA device: use --device-type=cpu")


@dataclass
class RunState:
    step: int = 0
    smooth_loss: float = 0.0
    train_time_s: float = 0.0
    min_val_bpb: float = math.inf
    val_bpb: float | None = None


def build_model(a, vocab_size: int, device: torch.device) -> GPT:
    cfg = config_from_depth(a.depth, vocab_size, max_seq_len=a.max_seq_len, aspect_ratio=a.aspect_ratio,
                            head_dim=a.head_dim, window_pattern=a.window_pattern)
    with torch.device("meta"):
        model = GPT(cfg, kernels=a.kernels, compute_dtype=torch.bfloat16 if a.fast_setting else None)
    model.to_empty(device=device)
    model.init_weights(seed=a.seed)
    return model


def reference_scaling_params(a, vocab_size: int) -> int:
    """Scaling params of the d12 reference model with the same vocab/seq/aspect/head/pattern (upstream's D_REF basis)."""
    cfg = config_from_depth(12, vocab_size, max_seq_len=a.max_seq_len, aspect_ratio=a.aspect_ratio,
                            head_dim=a.head_dim, window_pattern=a.window_pattern)
    with torch.device("meta"):
        return GPT(cfg).num_scaling_params()


def debiased(smooth: float, step: int) -> float:
    return smooth / (1 - EMA_BETA ** (step + 1))


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        check_args(a)
        return train(a)
    except (UsageError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def train(a: argparse.Namespace) -> int:
    t_start = time.time()
    device_type = a.device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    dist_info, device = distributed.init(device_type)
    if device_type == "cuda":
        torch.set_float32_matmul_precision("high")
    say = (lambda *s: print(*s, flush=True)) if dist_info.is_main else (lambda *s: None)

    tokenizer = load_tokenizer(a.base_dir)
    token_bytes = load_token_bytes(a.base_dir, device=device)
    model = build_model(a, tokenizer.vocab_size, device)
    counts = model.param_counts()
    h: Horizon = resolve_horizon(
        num_iterations=a.num_iterations, target_flops=a.target_flops, target_param_data_ratio=a.target_param_data_ratio,
        total_batch_size=a.total_batch_size, scaling_params=model.num_scaling_params(),
        reference_scaling_params=reference_scaling_params(a, tokenizer.vocab_size),
        flops_per_token=model.flops_per_token(), base_weight_decay=a.weight_decay)
    micro_tokens = a.device_batch_size * a.max_seq_len * dist_info.world_size
    grad_accum = grad_accum_steps(h.total_batch_size, a.device_batch_size, a.max_seq_len, dist_info.world_size)
    optimizer = build_optimizer(model, embedding_lr=a.embedding_lr, unembedding_lr=a.unembedding_lr,
                                matrix_lr=a.matrix_lr, scalar_lr=a.scalar_lr, weight_decay=h.weight_decay,
                                batch_lr_scale=h.batch_lr_scale, compile=a.compile_optimizer, kernels=a.kernels,
                                # the loop drops the grads right after the step anyway; parity runs keep the
                                # order of frees upstream has (a memory change only, but parity runs change nothing)
                                free_grads=a.kernels == "fast")
    use_compile = a.compile if a.compile is not None else device_type == "cuda"
    if a.fast_setting and device_type == "cpu" and use_compile:
        say("fast setting: bf16 compute on CPU runs eager (compiled bf16 stalled at the smoke budget)")
        use_compile = False
    fwd = torch.compile(model, dynamic=False) if use_compile else model
    say(f"params {counts['total']:,} | tokens/step {h.total_batch_size:,} | grad accum {grad_accum} | "
        f"steps {h.num_iterations} | dtype {model.compute_dtype} | world {dist_info.world_size} | compile {use_compile}")

    n_eval = eval_steps(a.eval_tokens, a.device_batch_size, a.max_seq_len, dist_info.world_size)
    train_batches = iter_batches(a.base_dir, tokenizer, "train", a.device_batch_size, a.max_seq_len,
                                 rank=dist_info.rank, world_size=dist_info.world_size, device=device)
    events = EventWriter(a.metrics_out if dist_info.is_main else None)
    st = RunState()
    meta_common = dict(model_config=asdict(model.config), user_config=vars(a), device_batch_size=a.device_batch_size,
                       max_seq_len=a.max_seq_len, total_batch_size=h.total_batch_size)

    def checkpoint(step: int, loader_state: dict) -> None:
        if a.checkpoint_dir and dist_info.is_main:
            meta = dict(step=step, val_bpb=st.val_bpb, dataloader_state_dict=loader_state,
                        loop_state=dict(min_val_bpb=st.min_val_bpb, smooth_train_loss=st.smooth_loss,
                                        total_training_time=st.train_time_s), **meta_common)
            save_checkpoint(a.checkpoint_dir, step, model, meta)

    def run_eval(step: int, loader_state: dict) -> None:
        if a.checkpoint_before_eval and step > 0:
            checkpoint(step, loader_state)
        t0 = time.time()
        model.eval()
        with iter_batches(a.base_dir, tokenizer, "val", a.device_batch_size, a.max_seq_len,
                          rank=dist_info.rank, world_size=dist_info.world_size, device=device) as val:
            st.val_bpb = evaluate_bpb(fwd, val, n_eval, token_bytes)
        model.train()
        st.min_val_bpb = min(st.min_val_bpb, st.val_bpb)
        say(f"Step {step:05d} | Validation bpb: {st.val_bpb:.6f}")
        events.write(EvalEvent(step=step, val_bpb=st.val_bpb, eval_tokens=n_eval * micro_tokens,
                               dt_s=time.time() - t0, t_s=time.time() - t_start))

    try:  # the loader's prefetch thread must stop before exit: a thread left in native code aborts it
        N = h.num_iterations
        x, y, loader_state = next(train_batches)
        params = list(model.parameters())
        sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)
        while True:
            step = st.step
            if is_eval_step(step, N, a.eval_every, a.warmdown_ratio, a.warmdown_eval_every):
                run_eval(step, loader_state)
            if step == N:
                break
            sync()
            t0 = time.time()
            for _ in range(grad_accum):
                loss = fwd(x, y)
                last_loss = loss.detach()
                (loss / grad_accum).backward()
                x, y, loader_state = next(train_batches)
            distributed.average_gradients(params, dist_info.world_size)
            lrm = lr_multiplier(step, N, a.warmup_steps, a.warmdown_ratio, a.final_lr_frac, shape=a.warmdown_shape)
            wd = 0.0 if a.muon_weight_decay_off else muon_weight_decay(step, N, h.weight_decay)
            optimizer.set_schedule(lrm=lrm, momentum=muon_momentum(step, N, a.warmdown_ratio), weight_decay=wd)
            optimizer.step()
            model.zero_grad(set_to_none=True)
            loss_f = last_loss.item()  # host sync point
            sync()
            dt = time.time() - t0
            st.train_time_s += dt
            st.smooth_loss = EMA_BETA * st.smooth_loss + (1 - EMA_BETA) * loss_f
            tok_s = h.total_batch_size / dt
            events.write(StepEvent(step=step, loss=debiased(st.smooth_loss, step), lrm=lrm, dt_s=dt,
                                   tokens_per_s=tok_s, loss_raw=loss_f, t_s=time.time() - t_start))
            if not a.quiet:
                say(f"step {step:05d}/{N:05d} | loss: {debiased(st.smooth_loss, step):.6f} | lrm: {lrm:.2f} | "
                    f"dt: {dt * 1000:.2f}ms | tok/sec: {int(tok_s):,}")
            if step == 0:  # setup garbage is done: stop the cyclic GC from rescanning it every few steps
                gc.collect()
                gc.freeze()
                gc.disable()  # as upstream does: a cyclic-GC pass costs hundreds of ms and frees almost nothing here
            st.step += 1
    finally:
        train_batches.close()
    checkpoint(N, loader_state)
    peak = cuda_memory.peaks(device)
    events.write(FinalEvent(
        steps=N, tokens=N * h.total_batch_size, train_time_s=st.train_time_s, peak_mem_bytes=peak.allocated_bytes,
        min_val_bpb=None if math.isinf(st.min_val_bpb) else st.min_val_bpb, param_counts=counts,
        extra=dict(flops_per_token=model.flops_per_token(), scaling_params=model.num_scaling_params(),
                   total_batch_size=h.total_batch_size, grad_accum_steps=grad_accum, eval_steps=n_eval,
                   eval_tokens=n_eval * micro_tokens, weight_decay_scaled=h.weight_decay,
                   batch_lr_scale=h.batch_lr_scale, world_size=dist_info.world_size,
                   peak_reserved_bytes=peak.reserved_bytes, attention="sdpa",
                   dtype=str(model.compute_dtype), compile=use_compile, torch=torch.__version__,
                   kernels=a.kernels, fast_setting=a.fast_setting, threads=torch.get_num_threads()),
        t_s=time.time() - t_start))
    events.close()
    say(f"Total training time: {st.train_time_s / 60:.2f}m | Minimum validation bpb: {st.min_val_bpb:.6f}")
    distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
