# Python's stdlib way to share a queue between machines: a
# multiprocessing.managers.BaseManager serving a queue.Queue over TCP on
# loopback, a producer process connected to it, the consumer here (the
# same workload as redis_queue.lua), measured in the consumer from its
# first item to its last.
import os
import queue
import socket
import time
from multiprocessing import Process
from multiprocessing.managers import BaseManager

N = int(os.environ.get("BENCH_N", "400000")) // 16  # Python is slower: fewer items, same rate
AUTHKEY = b"bench"


class QueueManager(BaseManager):
    pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(port):
    q = queue.Queue()
    QueueManager.register("get_queue", callable=lambda: q)
    QueueManager(address=("127.0.0.1", port), authkey=AUTHKEY).get_server().serve_forever()


def connect(port):
    QueueManager.register("get_queue")
    deadline = time.monotonic() + 10
    while True:
        try:
            m = QueueManager(address=("127.0.0.1", port), authkey=AUTHKEY)
            m.connect()
            return m.get_queue()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def producer(port, n):
    q = connect(port)
    for i in range(n):
        q.put(i)


if __name__ == "__main__":
    port = free_port()
    server = Process(target=serve, args=(port,), daemon=True)
    server.start()
    q = connect(port)
    p = Process(target=producer, args=(port, N))
    p.start()
    q.get()
    t0 = time.monotonic()
    for _ in range(N - 1):
        q.get()
    dt = time.monotonic() - t0
    p.join()
    print("RESULT remote_queue_put_get %.0f items/s" % ((N - 1) / dt))
    server.terminate()
    server.join()
