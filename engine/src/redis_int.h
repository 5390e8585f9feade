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
struct cr_redis_reply;
int cr__redis_clone(const struct cr_redis *c, struct cr_redis **out);

/* Runs n commands in one round trip (command i: argc[i] words argv[i] of
 * lens[i] bytes), as cr_redis_call, but an error reply is no failure:
 * it is left in out[i] (CR_REDIS_ERROR) for the caller to read. Commands
 * sent ahead are written first and their replies read (and dropped)
 * first. All n are sent again after a lost connection: each must be safe
 * to repeat. Returns 0 with out[0..n) the replies (free each), or
 * CR_ECONN, CR_EAUTH, CR_ENOMEM with out[] all NULL. */
int cr__redis_pipe(cr_redis_t *c, int n, const int *argc, const char *const *argv[], const size_t *const lens[],
                   double block, double retry, cr_redis_reply_t **out);
/* Sends a command now and returns without its reply: the next call on c
 * reads the reply before its own (and drops it, or keeps it for
 * cr__redis_kept with CR__SEND_KEEP), and writes the command again first
 * if the connection broke in between (so it must be safe to repeat);
 * freeing c waits for the replies (one try). CR__SEND_MORE: more follow
 * at once, the last one writes them all. At most 8 wait: the oldest is
 * then answered first. Nothing says whether the server accepted it. 0,
 * CR_ENOMEM, or a connection code from answering the oldest. */
#define CR__SEND_KEEP 1u
#define CR__SEND_MORE 2u
int cr__redis_send(cr_redis_t *c, int argc, const char **argv, const size_t *lens, unsigned flags);
/* Takes the replies of the first n commands sent ahead with `keep` (out[]:
 * free each), reading them when they were not read yet: 0; CR_EEMPTY when
 * fewer than n were kept (none sent, or sent by the parent of a forked
 * child); or a connection code. */
int cr__redis_kept(cr_redis_t *c, int n, double retry, cr_redis_reply_t **out);

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
