/* corral engine: the Redis backend, for queues and pools shared between
 * machines. Built only when hiredis and libcrypto were found (CORRAL_REDIS
 * is then defined); raw bytes in, raw bytes out, no Lua.
 *
 * ---- the connection (redis_conn.c) -----------------------------------------
 * A cr_redis_t is one connection to one server, named by a url
 *     redis://[[user]:password@]host[:port][/name]
 * (port 6379 by default; the path is a name the caller may use, e.g. the
 * pool that `corral worker` serves). It belongs to the process that opened
 * it: used in a forked child, it connects again (the child never writes on
 * its parent's socket). Every failure leaves a message in the connection
 * (cr_redis_strerror) that starts with the url, so an error says which
 * server it is about.
 *
 * Lost connections: a call whose connection broke (the server restarted,
 * the network dropped) reconnects with back-off (10 ms doubling to 0.5 s)
 * and sends the command again, for at most the call's retry budget; then it
 * gives CR_ECONN. A command sent again may have run once already (its
 * reply was lost): callers make their commands safe to repeat or accept
 * that (see redis_queue.c).
 *
 * ---- the queue (redis_queue.c) ---------------------------------------------
 * A queue `name` is a Redis stream `corral:{name}:q` read through one
 * consumer group; `corral:{name}:closed` marks it closed. put appends an
 * entry (a Lua script checks closed and maxsize in the same step); get
 * takes the oldest entry not yet delivered, or first an entry that another
 * consumer took and did not acknowledge within the visibility timeout (a
 * consumer that died: XAUTOCLAIM). A bounded Queue acknowledges and
 * deletes the entry in the step that takes it; an unbounded one takes a
 * batch of new entries at once (64, growing to 256 while the consumer
 * uses them up fast; with as many idle ones of another consumer, in one
 * round trip without a script) and sends their acknowledgement just
 * before it hands out the last, reading the answer with its next call; a
 * fast consumer sends its next fetch then too (a batch older than half
 * the visibility timeout is let go with only its handed-out entries
 * acknowledged: the rest may be another's by then; a handle freed gives
 * the entries it holds back at once); a JoinableQueue
 * on task_done (the oldest item this handle got and has not marked done),
 * so an item whose consumer died before task_done goes to another
 * consumer. join waits for the stream to be empty: every item put has
 * been marked done somewhere. Acknowledged entries are deleted: those
 * older than every pending entry with one XTRIM MINID, the rest (past
 * another consumer's pending entry) one by one, so the stream holds only
 * entries not yet delivered and pending ones.
 *
 * An unbounded Queue's put hands the item to a feeder thread of the
 * process (redis_feed.c) that appends up to 256 items per script call;
 * every other call of the queue, the queue's free and the process's exit
 * wait until the feeder sent what it holds. A bounded Queue's and a
 * JoinableQueue's put return once the server has the item.
 *
 * Signing: with a key, every item travels with an HMAC-SHA256 of its bytes
 * under that key, and a get refuses (acknowledges and drops) an item
 * whose signature is missing or wrong: CR_EAUTH. Without a key items go
 * unsigned; the bindings then decode them with functions disabled.
 *
 * Waiting: a get blocks on the server (XREADGROUP BLOCK) in slices of at
 * most 0.1 s, so close and a dead consumer's items are seen between slices;
 * a full put and join poll with back-off (1 ms doubling to 50 ms). A wait
 * gives CR_EINTR on SIGINT. */
#ifndef CORRAL_REDIS_H
#define CORRAL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "corral/chan.h"

typedef struct cr_redis cr_redis_t;
typedef struct cr_redis_reply cr_redis_reply_t;

#define CR_REDIS_RETRY 10.0 /* default seconds a call keeps reconnecting */

/* Opens a connection to url: connects (for at most `timeout` seconds; < 0
 * for the default 5), authenticates when the url has a password, and
 * checks with a PING that the server answers. Returns 0; CR_EINVAL for a
 * url that is not redis://...; CR_ECONN when the server cannot be reached
 * (refused, unknown host, no answer in time); CR_EAUTH when the server
 * wants a password the url lacks, or refuses the one it has; CR_ENOMEM.
 * On failure *out is NULL and err (when not NULL) holds the message. */
int cr_redis_open(const char *url, double timeout, cr_redis_t **out, char *err, size_t errlen);
void cr_redis_free(cr_redis_t *c);

/* The url as given, without its password; the url's path without its '/'
 * ("" when none). */
const char *cr_redis_url(const cr_redis_t *c);
const char *cr_redis_path(const cr_redis_t *c);
/* The message of the last failure, starting with the url. */
const char *cr_redis_strerror(const cr_redis_t *c);
/* Seconds a call keeps reconnecting after a lost connection (default
 * CR_REDIS_RETRY). */
void cr_redis_set_retry(cr_redis_t *c, double seconds);

/* Reply types, as hiredis's. */
enum { CR_REDIS_STRING = 1, CR_REDIS_ARRAY, CR_REDIS_INTEGER, CR_REDIS_NIL, CR_REDIS_STATUS, CR_REDIS_ERROR };

/* Runs one command (argv[i] of lens[i] bytes). `block` is how long the
 * command itself may wait on the server (XREADGROUP BLOCK), 0 for none;
 * `retry` the seconds to keep reconnecting (< 0: the connection's budget).
 * Returns 0 with *out the reply (free it with cr_redis_reply_free);
 * CR_ECONN (connection lost, budget spent); CR_EAUTH (NOAUTH, WRONGPASS);
 * CR_EREDIS when the server answered with an error (its message is in
 * cr_redis_strerror; *out is then NULL). */
int cr_redis_call(cr_redis_t *c, int argc, const char **argv, const size_t *lens, double block, double retry,
                  cr_redis_reply_t **out);
void cr_redis_reply_free(cr_redis_reply_t *r);
int cr_redis_reply_type(const cr_redis_reply_t *r);
/* STRING, STATUS, ERROR: the bytes. */
const char *cr_redis_reply_str(const cr_redis_reply_t *r, size_t *len);
long long cr_redis_reply_int(const cr_redis_reply_t *r);
/* ARRAY: its length and elements. */
size_t cr_redis_reply_len(const cr_redis_reply_t *r);
const cr_redis_reply_t *cr_redis_reply_at(const cr_redis_reply_t *r, size_t i);
/* Takes element i out of array r: the caller frees it (and r, apart). */
cr_redis_reply_t *cr_redis_reply_detach(cr_redis_reply_t *r, size_t i);

/* Runs a Lua script on the server by its SHA-1 (EVALSHA), loading it
 * (EVAL) when the server does not have it; as cr_redis_call otherwise.
 * argv holds the keys, then the other arguments. */
int cr_redis_eval(cr_redis_t *c, const char *script, int nkeys, int argc, const char **argv, const size_t *lens,
                  double retry, cr_redis_reply_t **out);

/* HMAC-SHA256 of data under key. */
#define CR_HMAC_LEN 32
void cr_hmac_sha256(const void *key, size_t klen, const void *data, size_t len, unsigned char out[CR_HMAC_LEN]);
/* Whether sig (siglen bytes) is the HMAC of data under key; compares in
 * constant time. */
int cr_hmac_check(const void *key, size_t klen, const void *data, size_t len, const void *sig, size_t siglen);

/* ---- the heartbeat ---------------------------------------------------------
 * A thread of the calling process, with a connection of its own to the
 * same server, that every `interval` seconds resets the idle time of the
 * stream entry the process is working on (XCLAIM ... JUSTID, which keeps
 * the delivery count), so a live consumer on a long task keeps its claim
 * however long the task runs. A process that is killed or stopped stops
 * its heartbeat with it: its entries then go idle and are reclaimed. */
typedef struct cr_redis_beat cr_redis_beat_t;
/* Starts a heartbeat for entries of `stream` in `group` held by
 * `consumer`. 0, CR_ECONN (as cr_redis_open), CR_ENOMEM, or -errno when
 * the thread could not start. */
int cr_redis_beat_start(const cr_redis_t *c, const char *stream, const char *group, const char *consumer,
                        double interval, cr_redis_beat_t **out);
/* The entry now held (NULL: none). Beats once at once when id is new. */
void cr_redis_beat_hold(cr_redis_beat_t *b, const char *id);
/* Stops the thread (in the process that started it) and frees. */
void cr_redis_beat_stop(cr_redis_beat_t *b);

/* ---- the queue ---------------------------------------------------------------- */
typedef struct cr_rqueue cr_rqueue_t;

/* Opens the queue `name` on connection c, which it takes over (freed with
 * the queue, also on failure). maxsize 0 = unbounded; flags
 * CR_QUEUE_JOINABLE or 0; visibility: seconds after which an item taken
 * and not acknowledged goes to another consumer (> 0); key: the signing
 * key (NULL or klen 0: none). Creates the stream and group when missing.
 * 0, CR_EINVAL, CR_ENOMEM, or a code of cr_redis_call. */
int cr_rqueue_open(cr_redis_t *c, const char *name, int64_t maxsize, unsigned flags, double visibility,
                   const void *key, size_t klen, cr_rqueue_t **out);
void cr_rqueue_free(cr_rqueue_t *q);
cr_redis_t *cr_rqueue_conn(cr_rqueue_t *q);
const char *cr_rqueue_name(const cr_rqueue_t *q);
unsigned cr_rqueue_flags(const cr_rqueue_t *q);
int64_t cr_rqueue_maxsize(const cr_rqueue_t *q);

/* As cr_queue_put: 0, CR_EFULL, CR_ECLOSED, CR_EINTR, or a connection
 * code (cr_redis_call). A put repeated after a lost reply may land twice.
 * An unbounded Queue's put only hands the item to the feeder: 0, or
 * CR_ECLOSED once the feeder learnt that the queue is closed. */
int cr_rqueue_put(cr_rqueue_t *q, const void *data, size_t len, double timeout);
/* As cr_queue_get: hands the item's bytes to sink (valid during the call).
 * 0 (or the sink's negative return); CR_EEMPTY, CR_ECLOSED (closed and
 * nothing left to deliver), CR_EINTR, CR_EAUTH (an item with a missing or
 * wrong signature was dropped), or a connection code. Reconnects within
 * the timeout. `signed_out` (may be NULL) is set to whether the item came
 * with a valid signature. */
int cr_rqueue_get(cr_rqueue_t *q, cr_chan_sink_fn sink, void *ud, double timeout, int *signed_out);
/* Items put and not yet delivered (a JoinableQueue: and delivered but not
 * yet marked done count in cr_rqueue_unfinished). Negative: a code. */
int64_t cr_rqueue_size(cr_rqueue_t *q);
int64_t cr_rqueue_unfinished(cr_rqueue_t *q);
int cr_rqueue_close(cr_rqueue_t *q);
/* 1 closed, 0 open, negative: a code. */
int cr_rqueue_is_closed(cr_rqueue_t *q);
/* JoinableQueue: acknowledges the oldest item this handle got and has not
 * marked done. CR_ETOOMANY when there is none, CR_EINVAL for a Queue. */
int cr_rqueue_task_done(cr_rqueue_t *q);
/* Waits until every item put was marked done: 0, CR_ETIMEDOUT, CR_EINTR,
 * or a connection code. */
int cr_rqueue_join(cr_rqueue_t *q, double timeout);

#endif
