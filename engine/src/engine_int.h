/* corral engine: internals shared by engine.c and proc.c. */
#ifndef CORRAL_ENGINE_INT_H
#define CORRAL_ENGINE_INT_H

#include "corral/engine.h"
#include "corral/proc.h"

#include <stdint.h>
#include <stdatomic.h>

struct cr_proc_s {
  cr_engine_t *engine;
  struct cr_proc_s *next;        /* engine's list of children */
  uv_process_t uvp;              /* spawn method only */
  int is_spawned;
  int uvp_open;
  int pid;
  int owner_pid;                 /* process that started it */
  int daemon;
  cr_proc_state_t state;
  int exitcode;
  int refs;                      /* caller + engine list */
  cr_off_t handoff; /* reclaimed at exit (refs.h) */
  cr_proc_exit_cb on_exit;
  void *data;
  int traced;                    /* started while this process traced: its lifetime is written */
  int64_t t_start;               /* cr_trace_now() before it started */
  char name[64];                 /* for the log and the trace */
};

struct cr_engine_s {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  cr_arena_t *arena;
  int pid;
  uv_signal_t sigchld;
  int sigchld_on;
  uv_async_t wake;               /* woken from the SIGINT handler */
  uv_timer_t timer;              /* wait deadlines */
  cr_proc_t *children;
  int finished;
  int refs_slot;                 /* this process's slot in the process table, -1: none */
  uv_async_t serve_async;        /* a watch rang (corral/watch.h) */
  struct cr_watch_s *watches;    /* this process's watches */
  int nwatches;
  int serving;                   /* inside cr_engine_serve */
  int loop_serving;              /* ... called from the loop (inside uv_run) */
  _Atomic int rung;              /* a watch rang since the last serve */
  _Atomic int child_rang;        /* SIGCHLD came during a wait: every watch rings */
  int no_signals;                /* the host handles SIGINT and SIGCHLD itself */
};

/* proc.c: reaps forked children that exited (SIGCHLD or before a wait). */
void cr__proc_reap(cr_engine_t *e);
/* proc.c: a forked child forgets its parent's children. */
void cr__proc_forget_all(cr_engine_t *e);
/* engine.c: the forked child takes over the engine with a fresh loop. */
void cr__engine_after_fork(cr_engine_t *e);
/* engine.c: runs the loop once without blocking. */
void cr__engine_run_nowait(cr_engine_t *e);
/* engine.c: make sure SIGCHLD is watched before a child starts. */
int cr__engine_watch_children(cr_engine_t *e);

/* watch.c: every watch rings (a child ended); a forked child forgets its
 * parent's watches; close stops every watch. */
void cr__watch_ring_all(cr_engine_t *e);
void cr__watch_after_fork(cr_engine_t *e);
void cr__watch_close_all(cr_engine_t *e);

/* refs.c: the process table and this process's ledger (corral/refs.h).
 * open: creates the table (a new arena) or finds it (attach), and takes a
 * slot for this process. close: gives back what this process holds. reap:
 * gives back what an ended child held. */
int cr__refs_open(cr_engine_t *e, int create);
void cr__refs_close(cr_engine_t *e);
/* drop 0: the ledger's references are another owner's (a start message
 * the child died decoding): recorded holders are forgotten, nothing dropped. */
void cr__refs_reap(cr_engine_t *e, int pid, int drop);
/* refs.c, around fork: prepare copies this process's ledger for the child
 * and takes its references (CR_ENOMEM: no slot or no room, nothing taken);
 * abort gives them back when the fork failed; parent and child each mark
 * the slot as the child's (whichever comes first), and the child registers
 * its inherited pipe handles. */
typedef struct { int slot; } cr__refs_fork_t;
int cr__refs_fork_prepare(cr_engine_t *e, cr__refs_fork_t *f);
void cr__refs_fork_abort(cr_engine_t *e, cr__refs_fork_t *f);
void cr__refs_fork_parent(cr_engine_t *e, cr__refs_fork_t *f, int pid);
void cr__refs_fork_child(cr_engine_t *e, cr__refs_fork_t *f);

#endif
