/* corral engine: cross-process synchronisation.
 *
 *   Lock       a robust mutex owned by the process that acquired it
 *   RLock      the same, reentrant, with a depth count
 *   Semaphore  a counter of slots; bounded or not
 *   Event      a flag that waiters sleep on
 *   Condition  wait/notify over a Lock or RLock
 *   Barrier    parties meeting round after round
 *
 * Every object lives in the shared arena (it starts with cr_obj_t) and is
 * named by its offset, so any process of the engine can use it. Functions
 * return 0 or a negative code (errors.h); the comment above each says what
 * state a failure leaves. Every wait takes a timeout in seconds (< 0 waits
 * forever, 0 does not wait), measured on CLOCK_MONOTONIC; every blocking wait
 * is bracketed with cr_intr_begin/end and gives up with CR_EINTR when SIGINT
 * arrives (the object is left as if the wait had timed out).
 *
 * Waiting is the kernel's, and the same for every object here, the
 * channels (chan.h) and the managed objects: a bounded spin of about 50 us
 * (waking a sleeping process costs about as much; a Lock backs off between
 * looks, the others yield the CPU between checks once past the first few),
 * then a futex wait with an absolute CLOCK_MONOTONIC deadline
 * (FUTEX_WAIT_BITSET). Nothing polls while the objects are used normally.
 *
 * Robustness: what happens when a process dies (SIGKILL) at the wrong time.
 *
 * - Lock / RLock: a process-shared robust pthread mutex. The kernel keeps a
 *   robust-futex list per thread; when the owner dies it marks the mutex
 *   word FUTEX_OWNER_DIED and wakes one waiter, at once. The next acquirer
 *   gets CR_EOWNERDEAD *with the lock held* (already made consistent, the
 *   RLock at depth 1): the data it protects may be half updated. We block on
 *   the mutex's futex word ourselves (not in pthread_mutex_*lock) so that the
 *   deadline is monotonic and SIGINT interrupts the wait. Ownership is what
 *   makes this work: only the owning process can release a Lock
 *   (CR_ENOTOWNER otherwise), unlike Python's Lock.
 *
 * - Semaphore: a slot has no kernel-tracked owner. Each acquire records the
 *   acquiring process (pid + start time, so a recycled pid is not mistaken
 *   for it) with a count in a small table inside the object
 *   (CR_SEM_HOLDERS entries, claimed lock-free); a release by that process
 *   takes one back off. A release by a process that holds no slot (a
 *   semaphore used as a signal) just adds one. Dead holders are found only
 *   when someone cannot get a slot: a non-blocking acquire that fails scans
 *   the table once; a blocking acquirer scans it every slice of its wait
 *   (50 ms, doubling up to 1 s while nothing is found), woken in between or
 *   not. The slots of a holder that has ended are given back and waiters
 *   woken. So: a holder that dies is recovered within about a second, and
 *   uncontended or normally contended use never polls.
 *   A slot moves between the free count and a holder's record in two
 *   words that no single instruction changes together, and a process may
 *   be killed between any two instructions (on a busy machine, most often
 *   where it enters the kernel: reading /proc for its own identity on its
 *   first acquire, or restoring signal handlers after a blocking wait, both
 *   of which once lay between taking a slot and recording it). So each
 *   move is announced in the mover's entry first, made by one
 *   compare-and-swap that also tags the semaphore's word with the entry,
 *   and only then recorded; whoever overwrites the tag first completes the
 *   record, and whoever reclaims a dead process's entry completes or drops
 *   its announced move by whether the word still carries its tag (sem.c
 *   says how). No kill, of a holder, a waiter or a process giving back the
 *   slots of the dead, loses a slot or gives one back twice. Caveats, by
 *   design: a process that acquires without ever releasing (consuming a
 *   signal) gives its slot back when it ends; holds beyond the table's
 *   capacity are not tracked (they behave as in Python).
 *
 * - Event: no owner, nothing to recover.
 *
 * - Condition: each waiter takes a slot in a table inside the object (state
 *   word + identity + FIFO ticket) and sleeps on its own state word.
 *   notify(n) moves exactly n live waiters, oldest first, to NOTIFIED and
 *   wakes each; a waiter whose process has ended is skipped and its slot
 *   freed, so a dead waiter never swallows a notification. A notify with
 *   nobody waiting is not stored. A waiter that times out withdraws its slot
 *   with a compare-and-swap, so a notify and a timeout racing resolve to
 *   exactly one outcome. A process that dies holding the Condition's lock is
 *   the Lock case above; one that dies after being notified but before
 *   reacquiring loses that one wakeup (as a thread would).
 *
 * - Barrier: a robust internal mutex guards its state; a party that dies
 *   inside it (e.g. in the action) breaks the barrier for the others
 *   (CR_EBROKEN). A party that dies while waiting is not replaced: the
 *   others wait for their timeout, which breaks the barrier (as in Python).
 */
#ifndef CORRAL_SYNC_H
#define CORRAL_SYNC_H

#include <stdint.h>

#include "corral/arena.h"

/* ---- objects in general --------------------------------------------------- */

/* Frees what an object of any kind of this header owns beyond its block (a
 * Condition's reference to its lock, a Barrier's attached bytes). A
 * cr_obj_destroy_fn for cr_obj_release. */
void cr_sync_destroy(cr_arena_t *a, cr_off_t off);

/* ---- Lock ------------------------------------------------------------------- */

/* Creates an unlocked Lock (one reference held by the caller). CR_ENOMEM. */
int cr_lock_new(cr_arena_t *a, cr_off_t *off);
/* Acquires. 0; CR_EOWNERDEAD: acquired, but the previous owner died holding
 * it; CR_ETIMEDOUT / CR_EINTR: not acquired. A Lock is not reentrant:
 * acquiring it again from the owning thread waits (and times out). */
int cr_lock_acquire(cr_arena_t *a, cr_off_t off, double timeout);
/* Releases. CR_ETOOMANY when it is not locked, CR_ENOTOWNER when another
 * process holds it; unchanged on failure. */
int cr_lock_release(cr_arena_t *a, cr_off_t off);
/* 1 when locked (by anyone), 0 when free. */
int cr_lock_locked(cr_arena_t *a, cr_off_t off);

/* ---- RLock ------------------------------------------------------------------ */

int cr_rlock_new(cr_arena_t *a, cr_off_t *off);
/* As cr_lock_acquire; the owner may acquire again (depth + 1). */
int cr_rlock_acquire(cr_arena_t *a, cr_off_t off, double timeout);
/* Depth - 1, released at 0. CR_ETOOMANY when it is not locked (as
 * cr_lock_release), CR_ENOTOWNER when another process holds it; unchanged
 * on failure. */
int cr_rlock_release(cr_arena_t *a, cr_off_t off);
/* 1 when locked (by anyone), 0 when free. */
int cr_rlock_locked(cr_arena_t *a, cr_off_t off);
/* The caller's depth (0 when it does not hold it). */
int cr_rlock_depth(cr_arena_t *a, cr_off_t off);

/* ---- Semaphore -------------------------------------------------------------- */

#define CR_SEM_HOLDERS 64
#define CR_SEM_MAX     0x7fffffff

/* Creates a semaphore with `value` free slots (0..CR_SEM_MAX, else
 * CR_EINVAL). `bounded`: releases beyond the initial value fail. */
int cr_sem_new(cr_arena_t *a, long value, int bounded, cr_off_t *off);
/* Takes a slot. 0, CR_ETIMEDOUT or CR_EINTR (no slot taken). */
int cr_sem_acquire(cr_arena_t *a, cr_off_t off, double timeout);
/* Gives a slot back and wakes a waiter. CR_EOVERFLOW: a bounded semaphore
 * would exceed its initial value (or any would exceed CR_SEM_MAX);
 * unchanged. */
int cr_sem_release(cr_arena_t *a, cr_off_t off);
/* Free slots now. */
int cr_sem_value(cr_arena_t *a, cr_off_t off);
int cr_sem_is_bounded(cr_arena_t *a, cr_off_t off);
/* Gives back the slots of holders that have ended; returns how many. */
int cr_sem_recover(cr_arena_t *a, cr_off_t off);

/* ---- Event -------------------------------------------------------------------- */

int cr_event_new(cr_arena_t *a, cr_off_t *off);
/* Sets the flag and wakes every waiter. */
void cr_event_set(cr_arena_t *a, cr_off_t off);
void cr_event_clear(cr_arena_t *a, cr_off_t off);
int cr_event_is_set(cr_arena_t *a, cr_off_t off);
/* Waits for the flag. 0 when it is set, or was set at some moment during
 * the wait (even if cleared since); CR_ETIMEDOUT; CR_EINTR. */
int cr_event_wait(cr_arena_t *a, cr_off_t off, double timeout);

/* ---- Condition ---------------------------------------------------------------- */

#define CR_COND_WAITERS 128

/* Creates a Condition over the Lock or RLock at lock_off (retained for the
 * Condition's life). CR_EINVAL when lock_off names no Lock/RLock. */
int cr_cond_new(cr_arena_t *a, cr_off_t lock_off, cr_off_t *off);
/* The lock's offset. */
cr_off_t cr_cond_lock(cr_arena_t *a, cr_off_t off);
/* Releases the lock (an RLock at any depth), waits for a notify, reacquires
 * the lock (same depth), in that order. The caller must hold the lock
 * (CR_ENOTOWNER otherwise, nothing done). Returns 0 (notified),
 * CR_ETIMEDOUT, CR_EINTR (the lock is held again in every case), or
 * CR_EOWNERDEAD (notified or not: the lock was reacquired after a holder
 * died), or CR_EFULL when CR_COND_WAITERS processes already wait (nothing
 * done). The reacquisition itself is not interruptible. */
int cr_cond_wait(cr_arena_t *a, cr_off_t off, double timeout);
/* Wakes up to n waiters (n < 0: all), oldest first; returns how many were
 * woken (>= 0) or CR_ENOTOWNER when the caller does not hold the lock. */
int cr_cond_notify(cr_arena_t *a, cr_off_t off, int n);
/* Waiters now (live or not yet found dead). */
int cr_cond_waiters(cr_arena_t *a, cr_off_t off);

/* ---- Barrier ------------------------------------------------------------------ */

/* Creates a barrier for `parties` (>= 1, else CR_EINVAL). default_timeout
 * (< 0: none) is only stored, for cr_barrier_timeout. */
int cr_barrier_new(cr_arena_t *a, int parties, double default_timeout, cr_off_t *off);
/* Run by the last party of a round, before any party returns; nonzero
 * breaks the barrier. */
typedef int (*cr_barrier_action_fn)(void *arg);
/* Waits for the round to fill. 0 with *index = arrival order in the round
 * (0..parties-1; the last arrival runs `action` if not NULL); CR_EBROKEN
 * when the barrier is or becomes broken (abort, reset while waiting, a
 * failed action, a party timing out); CR_ETIMEDOUT is never returned: a
 * timeout breaks the barrier and returns CR_EBROKEN, as in Python; CR_EINTR
 * also breaks it. */
int cr_barrier_wait(cr_arena_t *a, cr_off_t off, double timeout, int *index,
                    cr_barrier_action_fn action, void *arg);
/* Back to the empty, unbroken state; parties waiting get CR_EBROKEN. */
int cr_barrier_reset(cr_arena_t *a, cr_off_t off);
/* Breaks it: waiting and future parties get CR_EBROKEN until reset. */
int cr_barrier_abort(cr_arena_t *a, cr_off_t off);
int cr_barrier_parties(cr_arena_t *a, cr_off_t off);
int cr_barrier_n_waiting(cr_arena_t *a, cr_off_t off);
int cr_barrier_broken(cr_arena_t *a, cr_off_t off);
double cr_barrier_timeout(cr_arena_t *a, cr_off_t off);
/* Attaches `len` opaque bytes to the barrier (the bindings keep its action
 * there so that any process can find it). Replaces what was attached; freed
 * with the barrier. CR_ENOMEM (unchanged). */
int cr_barrier_attach(cr_arena_t *a, cr_off_t off, const void *p, size_t len);
/* The attached bytes (NULL and *len = 0 when none). */
const void *cr_barrier_attached(cr_arena_t *a, cr_off_t off, size_t *len);

#endif
