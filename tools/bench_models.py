#!/usr/bin/python3
"""The PyTorch half of bench/models.ts: forward+backward time and peak memory of one model config.

    /usr/bin/python3 tools/bench_models.py --spec SPEC.json

SPEC.json (written by bench/models.ts): model (the `model` section of a segdist config), num_classes,
size, batch, reps, warmup, threads, aux_weight, ignore_index. The model is
tools/parity/reference.build_reference(model, num_classes), the PyTorch twin of segdist's buildModel.

One step, as segdist's: train mode (BN on batch statistics), cross_entropy(out) + aux_weight *
cross_entropy(aux) against random labels, loss.backward() with every .grad set to None before; no
optimizer update. After --warmup untimed steps, --reps timed ones (CPU time of the process and wall
time); the peak RSS (ru_maxrss) is read then, and one more step runs under torch.profiler with
profile_memory for the tensor peak: bytes of parameters, buffers and inputs plus the running maximum
of the allocator's [memory] events during the step.

Prints one JSON object per line: each step as it finishes, then {"event": "result", ...}.
"""

import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from parity.reference import build_reference  # noqa: E402


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(spec, msg):
    print(f"  [{spec.get('label', 'model')} PyTorch] {msg}", file=sys.stderr, flush=True)


def blas_library():
    """The BLAS this process loaded (Debian's python3-torch goes through the libblas.so.3 alternative:
    the slow reference BLAS unless e.g. libopenblas0-pthread is installed)."""
    torch.ones(4, 4) @ torch.ones(4, 4)
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    return ", ".join(sorted(os.path.realpath(p) for p in libs)) or "unknown"


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    k, n, size = spec["num_classes"], spec["batch"], spec["size"]
    model = build_reference(spec["model"], k).train()
    x = torch.rand(n, 3, size, size) * 4 - 2
    y = torch.randint(0, k, (n, size, size))
    ignore, aux_weight = spec["ignore_index"], spec["aux_weight"]
    params = list(model.parameters())

    def step():
        for p in params:
            p.grad = None
        out, aux = model(x)
        loss = F.cross_entropy(out, y, ignore_index=ignore)
        if aux is not None:
            loss = loss + aux_weight * F.cross_entropy(aux, y, ignore_index=ignore)
        loss.backward()
        return loss.item()

    n_params = sum(p.numel() for p in params)
    blas = blas_library()
    log(spec, f"{n_params / 1e6:.2f}M parameters, {n}x{size}x{size}, {torch.get_num_threads()} thread(s); BLAS {blas}")
    warm = []
    for i in range(spec["warmup"]):
        c0 = time.process_time()
        loss = step()
        warm.append((time.process_time() - c0) * 1000)
        emit({"event": "warmup", "cpu_ms": warm[-1]})
        log(spec, f"warm-up {i + 1}/{spec['warmup']}: {warm[-1] / 1000:.1f} s cpu, loss {loss:.4f}")
    cpu, wall = [], []
    for i in range(spec["reps"]):
        w0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
        emit({"event": "step", "cpu_ms": cpu[-1], "wall_ms": wall[-1]})
        log(spec, f"step {i + 1}/{spec['reps']}: {cpu[-1] / 1000:.1f} s cpu, {wall[-1] / 1000:.1f} s wall")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # Tensor peak: what is live before the step (grads are set to None inside it) plus the running
    # maximum of the allocations and frees recorded during it.
    for p in params:
        p.grad = None
    live = tensor_bytes(list(model.parameters()) + list(model.buffers()) + [x, y])
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_us(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    log(spec, f"tensor peak {(live + peak) / 2**20:.0f} MB, peak RSS {peak_rss / 2**20:.0f} MB")

    def median(xs):
        s = sorted(xs)
        m = len(s) // 2
        return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2

    emit({"event": "result", "status": "ok", "threads": torch.get_num_threads(), "cpu_ms": cpu, "wall_ms": wall,
          "warmup_cpu_ms": warm, "median_cpu_ms": median(cpu), "median_wall_ms": median(wall),
          "tensor_peak_bytes": live + peak, "peak_rss_bytes": peak_rss, "base_rss_bytes": base_rss,
          "parameters": n_params, "loss": loss, "version": f"PyTorch {torch.__version__}", "blas": blas})


if __name__ == "__main__":
    sys.exit(main())
