/* corral engine: what the Redis backend's files share (corral/redis.h). */
#ifndef CORRAL_REDIS_INT_H
#define CORRAL_REDIS_INT_H

/* CLOCK_MONOTONIC seconds. */
double cr__redis_now(void);
/* Sleeps s seconds (through EINTR). */
void cr__redis_sleep(double s);

/* A new connection (not connected yet: it connects on its first call) to
 * c's server, for a thread of its own. 0 or CR_ENOMEM. */
struct cr_redis;
int cr__redis_clone(const struct cr_redis *c, struct cr_redis **out);

/* ---- the feeder (redis_feed.c) ----------------------------------------------
 * A thread that sends a Queue's puts behind the caller's back, many in one
 * script call, as Python's Queue has a feeder thread: put hands the item
 * over and returns. Used for unbounded Queues (a bounded one must answer
 * "full" at once, a JoinableQueue must count the item at once). */
typedef struct cr__feed cr__feed_t;
/* Starts a feeder on a connection of its own for the stream and closed
 * mark keys. 0, CR_ENOMEM or -errno. */
int cr__feed_start(const struct cr_redis *c, const char *stream, const char *closed, cr__feed_t **out);
/* Hands an item (and its signature, siglen 0: none) over: 0, CR_ECLOSED
 * once the feeder learnt that the queue is closed, CR_ENOMEM. Waits while
 * very many items wait to be sent. */
int cr__feed_put(cr__feed_t *f, const void *data, size_t len, const void *sig, size_t siglen);
/* Waits until every item handed over was sent and answered. */
void cr__feed_flush(cr__feed_t *f);
/* Flushes, stops the thread and frees (in the process that started it; a
 * forked copy is only forgotten: its thread is not there). */
void cr__feed_stop(cr__feed_t *f);
/* Whether f belongs to this process. */
int cr__feed_mine(const cr__feed_t *f);

#endif
