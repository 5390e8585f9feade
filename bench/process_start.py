# Process start+join latency with Python's multiprocessing, per start method.
# Same workload as process_start.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "300"))


def noop():
    pass


def measure(method, n):
    ctx = mp.get_context(method)
    for _ in range(3):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    t0 = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        assert p.exitcode == 0
    return (time.perf_counter() - t0) / n


if __name__ == "__main__":
    print("RESULT start_join_fork %.4f ms" % (measure("fork", N) * 1000))
    print("RESULT start_join_spawn %.4f ms" % (measure("spawn", max(N // 10, 10)) * 1000))
    print("RESULT start_join_forkserver %.4f ms" % (measure("forkserver", max(N // 3, 10)) * 1000))
