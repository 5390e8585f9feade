# Manager proxies: the cost of one list append, dict set and dict get,
# measured in a child process (as Manager proxies are used from workers).
# Same workload as manager.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N_PY", "20000"))


def best_of(f):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        best = min(best, (time.perf_counter() - t0) / N)
    return best


def child(l, d, results):
    r = {}

    def appends():
        for i in range(N):
            l.append(i)
    r["append"] = best_of(appends)
    for i in range(1, 1001):
        d["key%d" % i] = i

    def sets():
        for i in range(N):
            d["key%d" % (i % 1000 + 1)] = i
    r["set"] = best_of(sets)

    def gets():
        s = 0
        for i in range(N):
            s += d["key%d" % (i % 1000 + 1)]
    r["get"] = best_of(gets)
    results.put(r)


if __name__ == "__main__":
    with mp.Manager() as m:
        l, d = m.list(), m.dict()
        results = mp.Queue()
        p = mp.Process(target=child, args=(l, d, results))
        p.start()
        r = results.get()
        p.join()
        assert len(l) == 3 * N
        print("RESULT manager_list_append %.2f us" % (r["append"] * 1e6))
        print("RESULT manager_dict_set %.2f us" % (r["set"] * 1e6))
        print("RESULT manager_dict_get %.2f us" % (r["get"] * 1e6))
