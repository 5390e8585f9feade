# The host of bench/embed_timer.lua in Python: a 10 ms repeating timer on
# an asyncio loop while a multiprocessing Pool(2) runs the same CPU-bound
# map_async and a second Pool(2) the map of the host's pipeline (their
# callbacks come on the pools' result threads, handed to the loop);
# reports the timer's worst lateness over RUNS runs, the median of the
# runs' worst, and the worst while the pipeline's map worked.
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


async def one_run(pool, pipe):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    pipe_done = loop.create_future()
    worst = worst_pipe = 0.0
    items = [3000000 + i for i in range(1, 9)]
    pool.map_async(burn, items, 1, callback=lambda r: loop.call_soon_threadsafe(done.set_result, r))
    steps = [200000 + i for i in range(1, 13)]
    pipe.map_async(burn, steps, 1, callback=lambda r: loop.call_soon_threadsafe(pipe_done.set_result, r))
    last = time.perf_counter()
    while not done.done() or not pipe_done.done():
        running = not pipe_done.done()
        await asyncio.sleep(TICK)
        now = time.perf_counter()
        late = (now - last - TICK) * 1000
        worst = max(worst, late)
        if running:
            worst_pipe = max(worst_pipe, late)
        last = now
    return worst, worst_pipe


async def main():
    each, worst_pipe = [], 0.0
    with mp.Pool(2) as pool, mp.Pool(2) as pipe:
        for _ in range(RUNS):
            w, wp = await one_run(pool, pipe)
            each.append(w)
            worst_pipe = max(worst_pipe, wp)
    each.sort()
    print("RESULT timer_worst_lateness %.2f ms" % max(each))
    print("RESULT timer_median_worst_lateness %.2f ms" % each[(len(each) - 1) // 2])
    print("RESULT timer_worst_lateness_while_pipeline %.2f ms" % worst_pipe)


if __name__ == "__main__":
    asyncio.run(main())
