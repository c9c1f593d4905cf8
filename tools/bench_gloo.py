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

import os

from allreduce_bench_common import free_ports, main, run_ranks, summarize, time_iterations


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
        results.append(time_iterations(size, lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM), dist.barrier, iters, warmup))
    dist.barrier()
    dist.destroy_process_group()
    queue.put((rank, results))


def run_world(world, sizes, iters, warmup):
    import torch.multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // world)
    by_rank = run_ranks(mp.get_context("spawn"), rank_main, world, (world, free_ports(1)[0], sizes, iters, warmup, threads), "gloo")
    return summarize(by_rank, world, sizes, iters)


def check_torch():
    try:
        import torch.distributed as dist
    except ImportError as e:
        raise SystemExit(f"bench_gloo.py needs torch ({e}); on Debian: apt install python3-torch, run with /usr/bin/python3")
    if not dist.is_available() or not dist.is_gloo_available():
        raise SystemExit("this torch build has no gloo backend")


def title():
    import torch

    return f"gloo allreduce float32 over 127.0.0.1, torch {torch.__version__}"


if __name__ == "__main__":
    main(__doc__.split("\n\n")[0], run_world, title, check_torch)
