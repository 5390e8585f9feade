# The host of bench/embed_timer.lua in Python: a 10 ms repeating timer on
# an asyncio loop while a multiprocessing Pool(2) runs the same CPU-bound
# map_async (its callback comes on the pool's result thread, handed to the
# loop); reports the timer's worst lateness over RUNS runs and the median
# of the runs' worst.
import asyncio
import multiprocessing as mp
import os
import time

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TICK = 0.010


def burn(n):
    s = 0
    for i in range(1, n + 1):
        s = (s + i * i) % 1000003
    return s


async def one_run(pool):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    worst = 0.0
    items = [3000000 + i for i in range(1, 9)]
    pool.map_async(burn, items, 1, callback=lambda r: loop.call_soon_threadsafe(done.set_result, r))
    last = time.perf_counter()
    while not done.done():
        await asyncio.sleep(TICK)
        now = time.perf_counter()
        worst = max(worst, (now - last - TICK) * 1000)
        last = now
    return worst


async def main():
    each = []
    with mp.Pool(2) as pool:
        for _ in range(RUNS):
            each.append(await one_run(pool))
    each.sort()
    print("RESULT timer_worst_lateness %.2f ms" % max(each))
    print("RESULT timer_median_worst_lateness %.2f ms" % each[(len(each) - 1) // 2])


if __name__ == "__main__":
    asyncio.run(main())
