"""A real, tiny external trainer that speaks the ``command`` protocol, for runner and CLI tests.

It trains a small next-token model with torch on a synthetic rule-following sequence (so its loss really falls),
takes the budget flags the harness passes, and appends step/eval/final JSON lines to --metrics-out with plain
``json`` (as a non-Python trainer would). Test-only switches make it misbehave on purpose: die at a step for one
seed, sleep per step, hold extra memory, record each start in a file, ignore SIGTERM in a two-process tree.
"""
from __future__ import annotations

from pathlib import Path

TRAINER = r'''
import argparse, json, math, os, signal, subprocess, sys, time

p = argparse.ArgumentParser()
for name in ("depth", "max-seq-len", "device-batch-size", "total-batch-size", "num-iterations", "warmup-steps",
             "eval-every", "eval-tokens", "seed"):
    p.add_argument("--" + name, type=int, required=True)
p.add_argument("--warmdown-ratio", type=float, default=0.5)
p.add_argument("--final-lr-frac", type=float, default=0.05)
p.add_argument("--metrics-out", required=True)
p.add_argument("--die-at-step", type=int, default=-1)     # test switch: SIGKILL itself at this step ...
p.add_argument("--die-seed", type=int, default=-1)        # ... when running this seed
p.add_argument("--sleep-per-step", type=float, default=0.0)
p.add_argument("--alloc-mb", type=int, default=0)         # test switch: hold this much extra memory
p.add_argument("--calls-file", default="")                # test switch: append "pid seed" on start
p.add_argument("--stubborn", action="store_true")         # test switch: ignore SIGTERM, start a child that does too
a, _unused = p.parse_known_args()                         # the protocol allows flags a trainer ignores

# recorded before the slow `import torch`, so a test that kills early still knows the pids
child = None
if a.stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                              "print('ready', flush=True)\ntime.sleep(600)"], stdout=subprocess.PIPE, text=True)
    child.stdout.readline()                               # its handler is installed
if a.calls_file:
    with open(a.calls_file, "a") as fh:
        fh.write(f"{os.getpid()} {a.seed}\n" + (f"{child.pid} -1\n" if child else ""))
import torch
ballast = bytearray(a.alloc_mb * 2**20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1                                        # touch every page so it is resident
torch.manual_seed(a.seed)
torch.set_num_threads(1)
V, D, T, B = 32, 16, a.max_seq_len, a.device_batch_size
model = torch.nn.Sequential(torch.nn.Embedding(V, D), torch.nn.Linear(D, V))
opt = torch.optim.AdamW(model.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(a.seed)

def batch(n):
    x = torch.randint(0, V, (n, T), generator=gen)
    return x, (x * 3 + 1) % V                             # the rule to learn: next = 3x+1 mod V

def lrm(it, n):
    w = round(a.warmdown_ratio * n)
    if it < a.warmup_steps: return (it + 1) / a.warmup_steps
    if it <= n - w: return 1.0
    return a.final_lr_frac + (1 - a.final_lr_frac) * (1 - math.sqrt(1 - (n - it) / w))

out = open(a.metrics_out, "a")
def emit(**rec):
    out.write(json.dumps(rec) + "\n"); out.flush()

def evaluate(step):
    x, y = batch(max(1, a.eval_tokens // T))
    with torch.no_grad():
        bpb = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() / math.log(2)
    emit(event="eval", step=step, val_bpb=bpb, eval_tokens=x.numel())
    return bpb

N, t_start, smooth, train_time, bpbs = a.num_iterations, time.time(), 0.0, 0.0, []
for step in range(N + 1):
    if a.eval_every > 0 and (step == N or step % a.eval_every == 0):
        bpbs.append(evaluate(step))
    if step == N:
        break
    if step == a.die_at_step and a.seed == a.die_seed:
        os.kill(os.getpid(), signal.SIGKILL)
    t0 = time.time()
    for g in opt.param_groups:
        g["lr"] = 0.05 * lrm(step, N)
    for _ in range(a.total_batch_size // (B * T)):
        x, y = batch(B)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
    opt.step(); opt.zero_grad()
    time.sleep(a.sleep_per_step)
    dt = time.time() - t0
    train_time += dt
    smooth = 0.9 * smooth + 0.1 * loss.item()
    emit(event="step", step=step, loss=smooth / (1 - 0.9 ** (step + 1)), lrm=lrm(step, N), dt_s=dt,
         tokens_per_s=a.total_batch_size / dt, loss_raw=loss.item(), t_s=time.time() - t_start)
    print(f"step {step}/{N} loss {loss.item():.4f}", flush=True)
params = sum(p.numel() for p in model.parameters())
emit(event="final", steps=N, tokens=N * a.total_batch_size, train_time_s=train_time, peak_mem_bytes=None,
     min_val_bpb=min(bpbs) if bpbs else None, param_counts={"total": params},
     extra={"flops_per_token": 6 * params}, t_s=time.time() - t_start)
'''


def write_trainer(directory: str | Path) -> Path:
    path = Path(directory) / "tiny_trainer.py"
    path.write_text(TRAINER, encoding="utf-8")
    return path
