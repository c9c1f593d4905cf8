"""What tools/bench_gloo.py and tools/bench_tcp_ring.py share: the command line, starting one process
per rank and collecting its timings, and turning those into the rows bench/allreduce.ts reads.

A rank reports, per size, {"size", "ms": [...], "cpuMs": [...]} over its timed iterations. A collective
is as slow as its slowest rank, so an iteration's time is the maximum over ranks; a run reports the
median iteration. Bus bandwidth is bytes * 2(n-1)/n / time (nccl-tests' definition), the formula
bench/allreduce.ts uses.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time


def parse_size(s):
    s = s.strip()
    mult = 1
    if s[-1:] in ("k", "K"):
        mult, s = 1000, s[:-1]
    elif s[-1:] in ("m", "M"):
        mult, s = 1000 * 1000, s[:-1]
    return int(round(float(s) * mult))


def free_ports(k):
    """k distinct free ports on 127.0.0.1 (all held open until all are chosen)."""
    socks = []
    for _ in range(k):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_ranks(ctx, target, world, args, label):
    """Starts target(rank, *args, queue) in `world` processes of ctx; returns each rank's results."""
    queue = ctx.SimpleQueue()
    procs = [ctx.Process(target=target, args=(r, *args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    by_rank = {}
    for _ in range(world):
        rank, res = queue.get()
        by_rank[rank] = res
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise SystemExit(f"{label} world {world}: a rank exited with {p.exitcode}")
    return by_rank


def time_iterations(size, step, barrier, iters, warmup):
    """Runs step() warmup + iters times, each after barrier(); a rank's result for one size."""
    ms, cpu = [], []
    for it in range(warmup + iters):
        barrier()
        c0 = time.process_time()
        t0 = time.perf_counter()
        step()
        elapsed = (time.perf_counter() - t0) * 1e3
        c = (time.process_time() - c0) * 1e3
        if it >= warmup:
            ms.append(elapsed)
            cpu.append(c)
    return {"size": size, "ms": ms, "cpuMs": cpu}


def summarize(by_rank, world, sizes, iters):
    rows = []
    for k, size in enumerate(sizes):
        per_iter = [max(by_rank[r][k]["ms"][i] for r in range(world)) for i in range(iters)]
        ms = statistics.median(per_iter)
        cpu = sum(statistics.median(by_rank[r][k]["cpuMs"]) for r in range(world)) / world
        nbytes = size * 4
        algbw = nbytes / (ms / 1e3) / 1e9
        rows.append({"world": world, "elements": size, "bytes": nbytes, "ms": ms, "algbw": algbw, "busbw": algbw * 2 * (world - 1) / world, "cpuMs": cpu})
    return rows


def main(description, run_world, title, check=None):
    """The shared command line: --sizes, --worlds, --iters, --warmup, --json; a table or one JSON list."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--sizes", default="1M,11M,25M", help="float32 element counts, e.g. 1M,11M,25M")
    ap.add_argument("--worlds", default="2,4", help="world sizes, e.g. 2,4")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    a = ap.parse_args()
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    worlds = [int(w) for w in a.worlds.split(",")]
    for w in worlds:
        if w < 2:
            raise SystemExit(f"--worlds: an allreduce between processes needs at least 2 ranks, got {w}")
    if check is not None:
        check()
    rows = []
    if not a.json:
        print(f"{title()}, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f}), median of {a.iters}")
        print("world  elements      MB   time ms   algbw GB/s   busbw GB/s   cpu ms/rank")
    for w in worlds:
        for r in run_world(w, sizes, a.iters, a.warmup):
            rows.append(r)
            if not a.json:
                print(f"{w:5d}  {r['elements']:8d}  {r['bytes'] / 1e6:6.1f}  {r['ms']:8.1f}  {r['algbw']:11.2f}  {r['busbw']:11.2f}  {r['cpuMs']:12.1f}")
                sys.stdout.flush()
    if a.json:
        print(json.dumps(rows))
