/* corral engine: internals shared by engine.c and proc.c. */
#ifndef CORRAL_ENGINE_INT_H
#define CORRAL_ENGINE_INT_H

#include "corral/engine.h"
#include "corral/proc.h"

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
  cr_proc_exit_cb on_exit;
  void *data;
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

#endif
