# Queue throughput with Python's multiprocessing: the same workloads as
# queues.lua (1->1 small ints, 1 KiB and 1 MiB strings, 2->2, SimpleQueue),
# measured in the consumers from their first item to their last.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "400000")) // 4  # Python is slower: fewer items, same rate
ctx = mp.get_context("fork")


def producer(q, n, item, base=0):
    if item is None:
        for i in range(base + 1, base + n + 1):
            q.put(i)
    else:
        for _ in range(n):
            q.put(item)


def one_to_one(q, n, item=None):
    p = ctx.Process(target=producer, args=(q, n, item))
    p.start()
    q.get()
    t0 = time.monotonic()
    for _ in range(n - 1):
        q.get()
    dt = time.monotonic() - t0
    p.join()
    return (n - 1) / dt


def consumer(q, results):
    count, first, last = 0, None, None
    while True:
        v = q.get()
        if v == -1:
            break
        count += 1
        last = time.monotonic()
        if first is None:
            first = last
    results.put((count, first, last))


def two_to_two(n):
    q, results = ctx.Queue(), ctx.Queue()
    cs = [ctx.Process(target=consumer, args=(q, results)) for _ in range(2)]
    for c in cs:
        c.start()
    ps = [ctx.Process(target=producer, args=(q, n // 2, None, i * (n // 2))) for i in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    for _ in range(2):
        q.put(-1)
    count, first, last = 0, float("inf"), 0.0
    for _ in range(2):
        c, f, l = results.get()
        count += c
        first = min(first, f)
        last = max(last, l)
    for c in cs:
        c.join()
    assert count == n
    return n / (last - first)


if __name__ == "__main__":
    print("RESULT queue_small_1to1 %.0f msgs/s" % one_to_one(ctx.Queue(), N))
    print("RESULT queue_1KiB_1to1 %.0f msgs/s" % one_to_one(ctx.Queue(), N // 4, "x" * 1024))
    # Bounded, as in queues.lua: the steady flow, not a drain.
    rate = one_to_one(ctx.Queue(8), 400, "y" * (1024 * 1024))
    print("RESULT queue_1MiB_1to1 %.0f MB/s" % (rate * 1024 * 1024 / 1e6))
    print("RESULT queue_small_2to2 %.0f msgs/s" % two_to_two(N))
    print("RESULT simplequeue_small_1to1 %.0f msgs/s" % one_to_one(ctx.SimpleQueue(), N))
