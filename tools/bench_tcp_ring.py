#!/usr/bin/python3
"""The loopback TCP ceiling for a ring allreduce: the same bytes over the same ring, with nothing else.

    /usr/bin/python3 tools/bench_tcp_ring.py [--sizes 1M,11M,25M] [--worlds 2,4] [--iters 5] [--warmup 2] [--json]

A ring allreduce of S bytes makes every rank send 2(n-1)/n * S bytes to its next rank and receive as
many from its previous one. This script moves exactly that traffic over a ring of n processes on
127.0.0.1 and does nothing else: no reduction, no headers, no protocol; a sender thread with blocking
sendall() of 1 MB views and a receiver with blocking recv_into() of the same buffer. Its bus bandwidth
is therefore an upper bound for any ring allreduce over loopback TCP on this machine (gloo's and
segdist's both), and the ratio to it says how much of what the kernel allows an implementation gets.
Iterations, timing (slowest rank, median iteration) and bus bandwidth are as in tools/bench_gloo.py.

Output: a table, or with --json one JSON list of {world, elements, bytes, ms, algbw, busbw, cpuMs}.
Standard library only.
"""

import multiprocessing as mp
import socket
import threading

from allreduce_bench_common import free_ports, main, run_ranks, summarize, time_iterations

PIECE = 1 << 20


def ring_bytes(elements, world):
    """Bytes each rank sends (and receives) in a ring allreduce of `elements` float32."""
    return elements * 4 * 2 * (world - 1) // world


def rank_main(rank, world, ports, sizes, iters, warmup, barrier, queue):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", ports[rank]))
    listener.listen(1)
    barrier.wait()
    to_next = socket.create_connection(("127.0.0.1", ports[(rank + 1) % world]))
    from_prev, _ = listener.accept()
    for s in (to_next, from_prev):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    results = []
    for size in sizes:
        total = ring_bytes(size, world)
        src = memoryview(bytearray(size * 4 or 1))
        dst = memoryview(bytearray(size * 4 or 1))

        def send():
            sent = 0
            while sent < total:
                off = sent % len(src)
                n = min(PIECE, total - sent, len(src) - off)
                to_next.sendall(src[off : off + n])
                sent += n

        def step():
            sender = threading.Thread(target=send)
            sender.start()
            got = 0
            while got < total:
                off = got % len(dst)
                n = from_prev.recv_into(dst[off : off + min(PIECE, total - got, len(dst) - off)])
                if n == 0:
                    raise SystemExit(f"rank {rank}: the previous rank closed the ring")
                got += n
            sender.join()

        results.append(time_iterations(size, step, barrier.wait, iters, warmup))
    barrier.wait()
    for s in (to_next, from_prev, listener):
        s.close()
    queue.put((rank, results))


def run_world(world, sizes, iters, warmup):
    ctx = mp.get_context("fork")
    by_rank = run_ranks(ctx, rank_main, world, (world, free_ports(world), sizes, iters, warmup, ctx.Barrier(world)), "tcp ring")
    return summarize(by_rank, world, sizes, iters)


if __name__ == "__main__":
    main(__doc__.split("\n\n")[0], run_world, lambda: "plain TCP ring on 127.0.0.1 (a ring allreduce's traffic, no reduction)")
