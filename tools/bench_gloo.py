#!/usr/bin/python3
"""PyTorch gloo allreduce bandwidth on loopback: the reference bench/allreduce.ts compares against.

    /usr/bin/python3 tools/bench_gloo.py [--sizes 1M,11M,25M] [--worlds 2,4] [--iters 5] [--warmup 2] [--json]

For each world size, spawns that many processes (torch.multiprocessing), joins them in a gloo process
group on 127.0.0.1 (TCP, like our ring), and times dist.all_reduce (SUM) of float32 tensors of each
size: `warmup` untimed calls, then `iters` timed ones, each after a barrier so the ranks start
together. A collective is as slow as its slowest rank, so the time of an iteration is the maximum over
ranks; the median of those is reported. Bus bandwidth is bytes * 2(n-1)/n / time, the rate each rank's
link carries (nccl-tests' definition), the same formula bench/allreduce.ts uses.

Output: a table, or with --json one JSON list of {world, elements, bytes, ms, algbw, busbw, cpuMs}
(GB/s = 1e9 bytes/s; cpuMs is CPU time per rank per allreduce, all threads, user + system).
Needs /usr/bin/python3 with torch (Debian's python3-torch); no GPU.
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


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank, world, port, sizes, iters, warmup, threads, queue):
    # Each rank gets its share of the cores for its own (tiny) compute; gloo's I/O runs in its own threads.
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    # Without this gloo picks the interface the host name resolves to, which may not be loopback.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}")
    results = []
    for size in sizes:
        t = torch.arange(size, dtype=torch.float32).remainder_(17).add_(rank)
        ms, cpu = [], []
        for it in range(warmup + iters):
            dist.barrier()
            c0 = time.process_time()
            t0 = time.perf_counter()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            elapsed = (time.perf_counter() - t0) * 1e3
            c = (time.process_time() - c0) * 1e3
            if it >= warmup:
                ms.append(elapsed)
                cpu.append(c)
        results.append({"size": size, "ms": ms, "cpuMs": cpu})
    dist.barrier()
    dist.destroy_process_group()
    queue.put((rank, results))


def run_world(world, sizes, iters, warmup):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // world)
    procs = [ctx.Process(target=rank_main, args=(r, world, port, sizes, iters, warmup, threads, queue)) for r in range(world)]
    for p in procs:
        p.start()
    by_rank = {}
    for _ in range(world):
        rank, res = queue.get()
        by_rank[rank] = res
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise SystemExit(f"gloo world {world}: a rank exited with {p.exitcode}")
    rows = []
    for k, size in enumerate(sizes):
        # Per iteration, the slowest rank; then the median over iterations.
        per_iter = [max(by_rank[r][k]["ms"][i] for r in range(world)) for i in range(iters)]
        ms = statistics.median(per_iter)
        cpu = sum(statistics.median(by_rank[r][k]["cpuMs"]) for r in range(world)) / world
        nbytes = size * 4
        algbw = nbytes / (ms / 1e3) / 1e9
        busbw = algbw * 2 * (world - 1) / world
        rows.append({"world": world, "elements": size, "bytes": nbytes, "ms": ms, "algbw": algbw, "busbw": busbw, "cpuMs": cpu})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1M,11M,25M", help="float32 element counts, e.g. 1M,11M,25M")
    ap.add_argument("--worlds", default="2,4", help="world sizes, e.g. 2,4")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    a = ap.parse_args()
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    worlds = [int(w) for w in a.worlds.split(",")]
    try:
        import torch  # noqa: F401
        import torch.distributed as dist
    except ImportError as e:
        raise SystemExit(f"bench_gloo.py needs torch ({e}); on Debian: apt install python3-torch, run with /usr/bin/python3")
    if not dist.is_available() or not dist.is_gloo_available():
        raise SystemExit("this torch build has no gloo backend")
    rows = []
    if not a.json:
        print(f"gloo allreduce float32 over 127.0.0.1, torch {torch.__version__}, {os.cpu_count()} CPUs "
              f"(load {os.getloadavg()[0]:.1f}), median of {a.iters}")
        print("world  elements      MB   time ms   algbw GB/s   busbw GB/s   cpu ms/rank")
    for w in worlds:
        for r in run_world(w, sizes, a.iters, a.warmup):
            rows.append(r)
            if not a.json:
                print(f"{w:5d}  {r['elements']:8d}  {r['bytes'] / 1e6:6.1f}  {r['ms']:8.1f}  {r['algbw']:11.2f}  {r['busbw']:11.2f}  {r['cpuMs']:12.1f}")
                sys.stdout.flush()
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
