# The seed's counter: two processes, one adding 1 and one subtracting 1,
# 100000 times each, under the Value's lock; the total time including the
# processes' start and join. Same workload as seed_counter.lua.
import multiprocessing as mp
import time

N = 100000


def work(counter, d):
    for _ in range(N):
        with counter.get_lock():
            counter.value += d


def run():
    counter = mp.Value("i", 0)
    t0 = time.perf_counter()
    a = mp.Process(target=work, args=(counter, 1))
    b = mp.Process(target=work, args=(counter, -1))
    a.start(); b.start(); a.join(); b.join()
    assert counter.value == 0
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    print("RESULT seed_counter_locked %.1f ms" % min(run() for _ in range(3)))
