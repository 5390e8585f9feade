# Event wakeup round trip between two processes: the parent sets `ping`,
# the child waits for it, clears it and sets `pong`, which the parent waits
# for and clears. Same workload as event_roundtrip.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "5000"))


def child(ping, pong):
    for _ in range(N + 100):
        ping.wait(); ping.clear(); pong.set()


if __name__ == "__main__":
    ping, pong = mp.Event(), mp.Event()
    p = mp.Process(target=child, args=(ping, pong))
    p.start()
    for _ in range(100):
        ping.set(); pong.wait(); pong.clear()
    t0 = time.perf_counter()
    for _ in range(N):
        ping.set(); pong.wait(); pong.clear()
    print("RESULT event_roundtrip %.2f us" % ((time.perf_counter() - t0) / N * 1e6))
    p.join()
