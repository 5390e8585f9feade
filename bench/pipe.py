# Pipe round-trip latency with Python's multiprocessing: an echo process;
# send a small integer, wait for it to come back, repeat. Same as pipe.lua.
import multiprocessing as mp
import os
import time

N = int(os.environ.get("BENCH_N", "100000")) // 5
ctx = mp.get_context("fork")


def echo(other, conn):
    other.close()  # an inherited unused end would keep the stream open
    while True:
        try:
            v = conn.recv()
        except EOFError:
            return
        conn.send(v)


if __name__ == "__main__":
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(a, b))
    p.start()
    b.close()
    for i in range(1000):
        a.send(i)
        a.recv()
    t0 = time.monotonic()
    for i in range(N):
        a.send(i)
        a.recv()
    dt = time.monotonic() - t0
    a.close()
    p.join()
    print("RESULT pipe_roundtrip %.2f us" % (dt / N * 1e6))
