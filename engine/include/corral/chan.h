/* corral engine: channels, the transport under Queue, JoinableQueue,
 * SimpleQueue and Pipe. Raw bytes in, raw bytes out; no Lua.
 *
 * ---- the queue ----------------------------------------------------------
 * A queue is one shared object in the arena: a ring of 64-byte slots plus
 * two 64-bit tickets, `head` (next put) and `tail` (next get), on cache
 * lines of their own. Each slot has one atomic 64-bit state word,
 *     high 32 bits: sequence (low 32 bits of 2*ticket or 2*ticket+1)
 *     low 32 bits:  0 (nobody holds the slot) or the pid of the process
 *                   holding it, with bit 31 set for a reader.
 * For ticket p the slot is free when its sequence is 2p, published when it
 * is 2p+1, and free again for the next lap at 2(p+nslots) (per-slot
 * sequence numbers as in Vyukov's bounded MPMC queue, doubled so that a
 * one-slot ring works too). A producer claims the slot for p with one CAS
 * on that word (2p,0) -> (2p,pid); only then does it move `head` (anyone
 * who finds a claimed slot helps move it), write the message and publish
 * with a release store (2p+1,0). A consumer claims with a CAS
 * (2p+1,0) -> (2p+1,pid|R), moves `tail`, hands the bytes to a sink while
 * it holds the slot, and frees it with (2(p+nslots),0). So a reader never
 * sees half a message: bytes are read only between a publish and a free.
 * The 32-bit sequences are compared by signed difference, which is exact
 * because a slot is never more than one lap (2*nslots) from a ticket.
 *
 * Messages up to 48 bytes sit in the slot. Longer ones are copied into a
 * block of their own in the arena before a slot is claimed (the slot then
 * holds its offset), so any size works without the ring being that large,
 * and a slot is held only for a few stores. Freed blocks go to a small
 * per-queue cache (stacks by size class under a robust lock of the
 * queue's own), so steady traffic of large messages neither takes the
 * arena lock nor faults in fresh pages. A block is at every step either
 * recorded in one word of the queue (its slot, the overflow list's pending
 * word), in the cache or in the arena: the cache and the arena move a
 * block to or from a record as one step for a kill (they note the block
 * and the record under their lock, and whoever takes a dead holder's lock
 * over finishes or undoes the move), so the recovery of a slot or of the
 * overflow list finds every block a killed process had.
 *
 * Killed processes (SIGKILL at any instruction):
 *  - a producer dead after its claim leaves (2p,pid). Whoever finds such a
 *    slot at tail (a consumer about to sleep, a put that finds the ring
 *    full, qsize) checks whether that pid still runs (kill(pid,0), and
 *    /proc/PID/stat so that a zombie counts as gone); if not, it takes the
 *    claim over and frees the slot for the next lap, (2(p+nslots),0),
 *    moving tail past it: the half-written message is never seen, and no
 *    reader need come for the room to open. A dead claim behind published
 *    messages is reached, and freed, as they are taken.
 *  - a consumer dead after its claim leaves (2p+1,pid|R) with the message
 *    intact (a reader frees its slot before it frees the block). The
 *    process that reaps it (corral/refs.h) calls cr_queue_forget for each
 *    queue in its ledger, which marks such slots orphans, (2p+1,R), and
 *    moves a counter on the consumers' line; a get that finds the counter
 *    moved takes the oldest orphan over with a CAS and delivers it before
 *    the message at tail: it keeps its place in the order. So a get pays
 *    nothing for this but one load of a line it reads anyway. Before the
 *    reaper runs, a consumer that has slept a full wait slice (0.2 s), or
 *    is about to report the end, finds such slots itself (kill(pid,0) and
 *    /proc/PID/stat, a zombie counting as gone) and marks them. Nothing is
 *    lost.
 *  - wake-ups cannot be lost to a dead sleeper: waking is "bump the event
 *    word and wake every sleeper", done only when a sleeper flagged the
 *    word (so no system call while nobody sleeps); a dead sleeper simply
 *    does not flag it again.
 *  - what a death can cost: for a message that carries handles, the
 *    references not yet given back when a death falls inside their drop;
 *    for a JoinableQueue, a count off by one if the death falls between
 *    two adjacent stores. No message block is lost.
 *
 * Waiting is the engine's one way (as in sync.h): an empty get or a full
 * put spins for a bounded time (about 50 us, yielding the CPU between
 * checks once past the first few), then sleeps on a futex with an
 * absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), in slices of at
 * most 0.2 s so the recovery above runs even if no one wakes it. Waits are
 * bracketed with cr_intr_begin/end and give CR_EINTR on SIGINT.
 *
 * maxsize: a bounded queue of maxsize <= 65536 has exactly maxsize slots,
 * which is its bound. An unbounded queue (maxsize 0) has 8192 slots; when
 * they are full the producer spins briefly for room and then appends to an
 * overflow list (arena blocks under a robust mutex; a consumer copies out
 * under that mutex, so a reader's death leaves the message linked). While
 * the overflow list is not empty, every put goes there, and a get takes
 * from the ring first: each producer's order is kept. A maxsize above
 * 65536 uses the same overflow, bounded by a count that may overshoot by
 * the number of racing producers.
 *
 * close: marks the queue closed for every process. put then gives
 * CR_ECLOSED; get drains what is left, then gives CR_ECLOSED. A put racing
 * with close may still land.
 *
 * ---- the pipe -------------------------------------------------------------
 * A pipe is two end objects and a shared core holding two unbounded queues
 * (one per direction; one queue for a simplex pipe, end 0 reading and end
 * 1 writing) and, for each end, a table of holders: (pid, open handles in
 * that process). Every handle a process records in its ledger
 * (corral/refs.h) registers there too, and a process that ends has its
 * entry cleared by the one that reaps it. Every handle
 * also holds one reference on its end object, so references beyond the
 * registered handles are handles in flight (inside a message, or being
 * handed to a forked child): they keep the end open. recv on an end
 * reports CR_ECLOSED once its queue is drained and the far end is gone:
 * nothing in flight, and its handle count is 0 or every process in its
 * table has ended; send then gives CR_ECLOSED. The counts are checked on
 * every empty recv and every send; the processes (kill(pid,0) and
 * /proc/PID/stat: a zombie is gone) by recv before sleeping and after each
 * 0.1 s wait slice, and by send each time about 4 MiB or 1024 messages
 * were sent while messages wait, so the death of the last far process is
 * seen by a reader within about 0.1 s and by a writer within that much
 * data, whether or not anyone has reaped it yet. An end found gone stays
 * gone until its holders change (a counter moves with each of them). A
 * pid reused by an unrelated process in the meantime would keep the end
 * open (not detected). */
#ifndef CORRAL_CHAN_H
#define CORRAL_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "corral/arena.h"

/* ---- queues ---------------------------------------------------------------- */

#define CR_QUEUE_JOINABLE 1u /* unfinished-task count, task_done, join */
#define CR_QUEUE_SIMPLE   2u /* only a label for the bindings */

#define CR_QUEUE_MAX_SLOTS   65536 /* largest ring; bounds above use overflow */
#define CR_QUEUE_UNBOUNDED_SLOTS 8192
#define CR_QUEUE_INLINE      48    /* bytes carried in the slot itself */

/* Receives a message: `data` points into shared memory and is valid only
 * during the call. Whatever the sink returns, the message is consumed; a
 * negative return is passed on by the get (so the caller learns that its
 * sink failed). CR_CHAN_SINK_DROP: the sink took references of its own to
 * what the message names, and the engine drops the message's (the
 * cr_refs_on_message_drop hook) once the message can no longer be
 * delivered again; a reader killed inside the sink leaves the message whole
 * for the next one. NULL sink: the message is dropped. */
typedef int (*cr_chan_sink_fn)(void *ud, const void *data, size_t len);
#define CR_CHAN_SINK_DROP 1

/* Creates a queue. maxsize 0 = unbounded, else at most maxsize items
 * (maxsize < 0: CR_EINVAL). flags: CR_QUEUE_*. One reference for the
 * caller. CR_ENOMEM when the arena is full (nothing allocated). */
int cr_queue_new(cr_arena_t *a, int64_t maxsize, unsigned flags, cr_off_t *out);

/* Drops a reference; the last one frees the queue and every message,
 * block and cached block it holds. Returns 1 when it freed it. */
int cr_queue_release(cr_arena_t *a, cr_off_t q);

/* Copies `len` bytes into the queue. timeout < 0 waits forever for room,
 * 0 does not wait. Returns 0; CR_EFULL when no room came in time;
 * CR_ECLOSED once the queue is closed; CR_EINTR on SIGINT; CR_ENOMEM when
 * the arena cannot hold the message. On any failure the queue is unchanged,
 * except that slots held at tail by dead producers may have been freed.
 * No system call unless the ring is full or it has to wake a sleeper. */
int cr_queue_put(cr_arena_t *a, cr_off_t q, const void *data, size_t len, double timeout);
/* The same, for a message in two pieces (head, then body) that are copied
 * into shared memory once, one after the other: a header and a large
 * string need not be joined first. */
int cr_queue_put2(cr_arena_t *a, cr_off_t q, const void *head, size_t hlen, const void *body, size_t blen,
                  double timeout);

/* Takes the oldest message and hands it to `sink`. Returns 0 (or the
 * sink's negative return: the message is consumed all the same);
 * CR_EEMPTY when nothing came in time; CR_ECLOSED when the queue is closed
 * and drained; CR_EINTR on SIGINT (nothing consumed). */
int cr_queue_get(cr_arena_t *a, cr_off_t q, cr_chan_sink_fn sink, void *ud, double timeout);

/* Messages in the queue: exact whenever no put or get is in flight (a put
 * counts from the moment it claims a slot; an orphan, the message of a
 * reader that died in a get, counts again once cr_queue_forget marked it).
 * First frees the slots at tail of producers that died in a put, so a dead
 * put is no longer counted unless published messages are still before it. */
int64_t cr_queue_size(cr_arena_t *a, cr_off_t q);
int64_t cr_queue_maxsize(cr_arena_t *a, cr_off_t q);
unsigned cr_queue_flags(cr_arena_t *a, cr_off_t q);

/* Closes the queue for every process and wakes every waiter. Idempotent. */
void cr_queue_close(cr_arena_t *a, cr_off_t q);
int cr_queue_is_closed(cr_arena_t *a, cr_off_t q);

/* Process `pid` has ended (its reaper calls this for each queue its ledger
 * records, corral/refs.h): the messages it held in the middle of a get
 * become orphans, delivered first by the next get. */
void cr_queue_forget(cr_arena_t *a, cr_off_t q, int pid);

/* JoinableQueue: one task done. CR_ETOOMANY when called more often than
 * put (count unchanged), CR_EINVAL for a queue that is not joinable. */
int cr_queue_task_done(cr_arena_t *a, cr_off_t q);
/* Waits until every put has had its task_done: 0, CR_ETIMEDOUT, CR_EINTR. */
int cr_queue_join(cr_arena_t *a, cr_off_t q, double timeout);
int64_t cr_queue_unfinished(cr_arena_t *a, cr_off_t q);

#ifdef CORRAL_TESTING
/* Test hook (a testing build only), for deterministic kill tests: the next
 * put (CR_QUEUE_PARK_PUT) or get (CR_QUEUE_PARK_GET) of this process stops
 * forever right in the middle (slot claimed, message not written / not
 * released), after adding one to the queue's parked counter. */
#define CR_QUEUE_PARK_PUT 1
#define CR_QUEUE_PARK_GET 2
/* ... or in the middle of moving a message block: a get that has
 * delivered its message and is about to give the block back (GIVE), or
 * is putting it into the queue's block cache (RETURN); a put taking a
 * block out of that cache (TAKE). */
#define CR_QUEUE_PARK_GIVE   3
#define CR_QUEUE_PARK_RETURN 4
#define CR_QUEUE_PARK_TAKE   5
void cr_queue_test_park(int where);
uint32_t cr_queue_test_parked(cr_arena_t *a, cr_off_t q);
/* The same count for the queue that pipe end `end` receives from (0 for
 * a write-only end). */
uint32_t cr_pipe_test_parked(cr_arena_t *a, cr_off_t end);
#endif

/* ---- pipes ------------------------------------------------------------------- */

/* Creates a pipe: ends[0] and ends[1], one reference each for the caller,
 * no holder registered yet. duplex 0: ends[0] only receives, ends[1] only
 * sends. CR_ENOMEM (nothing allocated). */
int cr_pipe_new(cr_arena_t *a, int duplex, cr_off_t ends[2]);

/* Drops a reference to an end object (freeing the pipe with the last
 * reference of both ends). Holders are separate: see cr_pipe_hold. */
int cr_pipe_release(cr_arena_t *a, cr_off_t end);

/* Registers one more (hold) or one fewer (unhold) open handle of `end` in
 * process `pid`. Each registered handle must own one reference on the end
 * object (cr_obj_retain before a hold; release after an unhold). When the last handle of an end goes, readers of the far
 * end are woken to see the end of stream. */
void cr_pipe_hold(cr_arena_t *a, cr_off_t end, int pid);
void cr_pipe_unhold(cr_arena_t *a, cr_off_t end, int pid);
/* Open handles of `end` registered for process `pid`. */
int cr_pipe_held_by(cr_arena_t *a, cr_off_t end, int pid);
/* Process `pid` ended holding `handles` handles of `end` (its ledger says
 * so, corral/refs.h): unregisters them all, its table entry and any that
 * overflowed the table. The reaper calls it before it drops the references
 * those handles held. */
void cr_pipe_forget(cr_arena_t *a, cr_off_t end, int pid, int handles);

/* Which end (0 or 1), and what it may do. */
int cr_pipe_index(cr_arena_t *a, cr_off_t end);
int cr_pipe_readable(cr_arena_t *a, cr_off_t end);
int cr_pipe_writable(cr_arena_t *a, cr_off_t end);

/* Sends a message to the far end; never blocks. CR_ECLOSED when the far
 * end is gone (as recv sees it, above: every handle closed, or every
 * process holding one ended); CR_ESTATE on a read-only end. */
int cr_pipe_send(cr_arena_t *a, cr_off_t end, const void *data, size_t len);
/* Receives as cr_queue_get. CR_ECLOSED after draining once the far end is
 * gone; CR_ESTATE on a write-only end. */
int cr_pipe_recv(cr_arena_t *a, cr_off_t end, cr_chan_sink_fn sink, void *ud, double timeout);
/* Waits until recv would not block (a message, or end of stream): 0, or
 * CR_EEMPTY when the timeout passed; CR_EINTR; CR_ESTATE (write-only). */
int cr_pipe_poll(cr_arena_t *a, cr_off_t end, double timeout);

#endif
