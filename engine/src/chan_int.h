/* corral engine: internals shared by queue.c and pipe.c. Waits are the
 * engine's common ones (wait_int.h: the bounded spin, then event words),
 * and so are process identities (sync_int.h). */
#ifndef CORRAL_CHAN_INT_H
#define CORRAL_CHAN_INT_H

#include "corral/chan.h"
#include "sync_int.h"

/* This process's pid, cached (refreshed in a forked child). */
#define cr__chan_self() CR__ID_PID(cr__self_id())
/* 1 while pid runs (or is us), 0 when it is gone or a zombie. */
static inline int cr__chan_pid_alive(int pid) { return pid == cr__chan_self() || cr__pid_alive(pid); }

/* queue.c, for pipe.c: get with an end-of-stream test. `gone(ud, full)` is
 * asked when the queue is empty: full = 0 for the cheap test (every empty
 * attempt), 1 for the thorough one (before sleeping and after each slice).
 * `peek`: wait until a message is there but take nothing. */
typedef int (*cr__chan_gone_fn)(void *ud, int full);
int cr__queue_get_ex(cr_arena_t *a, cr_off_t q, cr_chan_sink_fn sink, void *ud, double timeout,
                     cr__chan_gone_fn gone, void *gone_ud, int peek, double slice);
/* Wakes every getter (end of stream changed). */
void cr__queue_wake_getters(cr_arena_t *a, cr_off_t q);
/* Messages waiting, as cr_queue_size but without its repairs (no system
 * call): for a quick look. */
int64_t cr__queue_backlog(cr_arena_t *a, cr_off_t q);
/* The word getters sleep on (for a watch's thread, corral/watch.h). */
_Atomic uint32_t *cr__queue_get_ev(cr_arena_t *a, cr_off_t q);

#endif
