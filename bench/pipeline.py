# Pipelines hand-rolled with Python's multiprocessing, as its users write
# them: a producer process, bounded Queues between stages, a sentinel per
# worker, the parent collecting. The same workloads as pipeline.lua.
import multiprocessing as mp
import os
import resource
import time

N = int(os.environ.get("BENCH_N", "200000"))
MAXSIZE = 256
STOP = None


def cpu_seconds():
    """CPU seconds of this process and its reaped children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def inc(x):
    return x + 1


def dbl(x):
    return x * 2


def upper(s):
    return s.upper()


def rev(s):
    return s[::-1]


def burn(x):
    s = 0
    for i in range(20000):
        s += (i * x) % 7
    return s


def producer(items, q, nsent, indexed):
    for i, v in enumerate(items):
        q.put((i, v) if indexed else v)
    for _ in range(nsent):
        q.put(STOP)


def stage(fn, qin, qout, indexed):
    while True:
        v = qin.get()
        if v is STOP:
            qout.put(STOP)
            return
        qout.put((v[0], fn(v[1])) if indexed else fn(v))


def run(items, fns, workers, ordered=False):
    """items through stages fns[i] with workers[i] processes; the results."""
    qs = [mp.Queue(MAXSIZE) for _ in range(len(fns) + 1)]
    procs = [mp.Process(target=producer, args=(items, qs[0], workers[0], ordered))]
    for k, fn in enumerate(fns):
        # each worker of a stage forwards one sentinel; the next stage needs one per worker
        nxt = workers[k + 1] if k + 1 < len(fns) else workers[k]
        assert nxt == workers[k], "hand-rolled sentinels need equal worker counts"
        for _ in range(workers[k]):
            procs.append(mp.Process(target=stage, args=(fn, qs[k], qs[k + 1], ordered)))
    for p in procs:
        p.start()
    out, left = [], workers[-1]
    if ordered:
        waiting, nxt = {}, 0
        while left:
            v = qs[-1].get()
            if v is STOP:
                left -= 1
                continue
            waiting[v[0]] = v[1]
            while nxt in waiting:
                out.append(waiting.pop(nxt))
                nxt += 1
    else:
        while left:
            v = qs[-1].get()
            if v is STOP:
                left -= 1
            else:
                out.append(v)
    for p in procs:
        p.join()
    return out


if __name__ == "__main__":
    items = list(range(1, N + 1))
    run(items[:100], [inc, dbl], [2, 2])
    t0, c0 = time.perf_counter(), cpu_seconds()
    r = run(items, [inc, dbl], [2, 2])
    assert len(r) == N
    print("RESULT trivial_2x2_unordered %.0f items/s" % (N / (time.perf_counter() - t0)))
    print("RESULT trivial_2x2_unordered_cpu_per_item %.3f us" % ((cpu_seconds() - c0) / N * 1e6))
    t0 = time.perf_counter()
    r = run(items, [inc, dbl], [2, 2], ordered=True)
    assert r[0] == 4 and r[-1] == 2 * (N + 1)
    print("RESULT trivial_2x2_ordered %.0f items/s" % (N / (time.perf_counter() - t0)))
    # long enough that starting the workers is a small part of it; 1 and 2
    # workers in turn, the best of five each, as other load on the machine
    # only ever slows a run
    M = 2000
    times = {1: float("inf"), 2: float("inf")}
    for _ in range(int(os.environ.get("BENCH_ROUNDS") or 5)):
        for w in (1, 2):
            t0 = time.perf_counter()
            run(items[:M], [burn], [w])
            times[w] = min(times[w], time.perf_counter() - t0)
    print("RESULT cpu_stage_1_worker %.0f items/s" % (M / times[1]))
    print("RESULT cpu_stage_2_workers %.0f items/s" % (M / times[2]))
    print("RESULT cpu_stage_speedup %.2f x" % (times[1] / times[2]))
    K = N // 4
    strings = [("%04d" % (i % 10000)) * 256 for i in range(K)]
    t0 = time.perf_counter()
    r = run(strings, [upper, rev], [2, 2])
    assert len(r) == K
    print("RESULT strings_1k_2x2 %.0f items/s" % (K / (time.perf_counter() - t0)))
