# Pool overheads and speedup with Python's multiprocessing; same workloads as pool.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "100000"))


def double(x):
    return x * 2


def count_primes(lo, hi):
    n = 0
    for k in range(max(lo, 2), hi + 1):
        prime, d = True, 2
        while d * d <= k:
            if k % d == 0:
                prime = False
                break
            d += 1
        if prime:
            n += 1
    return n


if __name__ == "__main__":
    items = list(range(1, N + 1))
    with mp.Pool(2) as pool:
        pool.map(double, [1, 2, 3])
        t0 = time.perf_counter()
        pool.map(double, items)
        print("RESULT map_default_per_task %.4f us" % ((time.perf_counter() - t0) / N * 1e6))
        t0 = time.perf_counter()
        pool.map(double, items, 1)
        print("RESULT map_chunksize1_per_task %.3f us" % ((time.perf_counter() - t0) / N * 1e6))
        M = 5000
        t0 = time.perf_counter()
        for i in range(M):
            pool.apply_async(double, (i,)).get()
        print("RESULT apply_async_roundtrip %.2f us" % ((time.perf_counter() - t0) / M * 1e6))
    LIMIT, CHUNKS = 2000000, 64
    step = LIMIT // CHUNKS
    ranges = [(c * step, (c + 1) * step - 1) for c in range(CHUNKS)]
    times = {}
    for n in (1, 2):
        with mp.Pool(n) as pool:
            t0 = time.perf_counter()
            total = sum(pool.starmap(count_primes, ranges, 1))
            times[n] = time.perf_counter() - t0
            assert total == 148933, total
            print("RESULT primes_%dworker %.3f s" % (n, times[n]))
    print("RESULT primes_speedup_1_to_2 %.2f x" % (times[1] / times[2]))
