# Uncontended Lock acquire/release pair, in one process. Same workload as
# lock_uncontended.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "2000000"))

if __name__ == "__main__":
    lock = mp.Lock()
    for _ in range(10000):
        lock.acquire(); lock.release()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(N):
            lock.acquire(); lock.release()
        best = min(best, (time.perf_counter() - t0) / N)
    print("RESULT lock_pair_uncontended %.1f ns" % (best * 1e9))
