# A Lock contended by 2 processes: each does N acquire/release pairs with
# an empty critical section; the metric is the wall time per pair. Same
# workload as lock_contended.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "200000"))


def work(lock, go):
    go.wait()
    for _ in range(N):
        lock.acquire(); lock.release()


if __name__ == "__main__":
    lock, go = mp.Lock(), mp.Event()
    ps = [mp.Process(target=work, args=(lock, go)) for _ in range(2)]
    for p in ps:
        p.start()
    t0 = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    print("RESULT lock_pair_contended_2 %.1f ns" % ((time.perf_counter() - t0) / (2 * N) * 1e9))
