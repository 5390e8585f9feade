/* corral engine: child processes.
 *
 * Two start methods. fork: the child runs `child_fn(child_arg)` in a copy
 * of the parent and exits with its return value. spawn: the child is a fresh
 * executable started with uv_spawn; it inherits the arena fd at fd 3.
 * The parent learns of every exit through its loop (SIGCHLD, no polling),
 * reaps every child, and records the exit code: N for a normal exit,
 * -signum when killed. Daemon children get SIGKILL when their parent dies. */
#ifndef CORRAL_PROC_H
#define CORRAL_PROC_H

#include "corral/engine.h"

#define CR_PROC_STATE_MAP(XX) \
  XX(RUNNING, "running")      \
  XX(EXITED,  "exited")

typedef enum {
#define XX(name, str) CR_PROC_##name,
  CR_PROC_STATE_MAP(XX)
#undef XX
} cr_proc_state_t;

typedef struct cr_proc_s cr_proc_t;
typedef void (*cr_proc_exit_cb)(cr_proc_t *p, int exitcode, void *data);

/* fd number at which a spawned child finds the arena. */
#define CR_SPAWN_ARENA_FD 3

typedef struct {
  int daemon;                    /* killed when the parent dies; terminated at exit */
  int (*child_fn)(void *arg);    /* fork: runs in the child */
  void *child_arg;
  const char *file;              /* spawn: executable path */
  char **args;                   /* spawn: argv, NULL-terminated */
  char **env;                    /* spawn: environment, NULL = inherit */
  cr_off_t handoff;              /* spawn: the child's start message (cr_handoff_new);
                                    on success the engine reclaims it at the child's exit */
  cr_proc_exit_cb on_exit;       /* optional: called from the loop at exit */
  void *data;
  const char *name;              /* optional: its name in the log and the trace */
} cr_proc_options_t;

/* Starts a child. Returns 0 and a handle holding one reference for the
 * caller, or a negative code (nothing started). In the forked child,
 * cr_proc_fork never returns: the child exits with child_fn's result after
 * cr_engine_finish. */
int cr_proc_fork(cr_engine_t *e, const cr_proc_options_t *o, cr_proc_t **out);
int cr_proc_spawn(cr_engine_t *e, const cr_proc_options_t *o, cr_proc_t **out);

int cr_proc_pid(const cr_proc_t *p);
cr_proc_state_t cr_proc_state(const cr_proc_t *p);
/* Exit code once exited (N, or -signum); 0 while running. */
int cr_proc_exitcode(const cr_proc_t *p);
int cr_proc_is_daemon(const cr_proc_t *p);
/* True when this process started p (a forked child holds copies of its
 * siblings' handles: those are foreign). */
int cr_proc_is_mine(const cr_proc_t *p);

/* Waits for exit: 0, CR_ETIMEDOUT, CR_EINTR, or CR_ESTATE for a foreign
 * handle. timeout < 0 waits forever. */
int cr_proc_join(cr_proc_t *p, double timeout);
/* Notices an exit that already happened, without blocking (runs the loop
 * once without waiting). Returns the state. */
cr_proc_state_t cr_proc_poll(cr_proc_t *p);
/* Sends a signal. A child that already exited is not signalled (0). */
int cr_proc_signal(cr_proc_t *p, int signum);
/* Drops the caller's reference; the engine keeps reaping it. */
void cr_proc_release(cr_proc_t *p);

/* Children of this process still running (for active_children). */
int cr_proc_count_running(cr_engine_t *e);

/* Hooks around cr_proc_fork only (not the fork inside uv_spawn, whose child
 * execs at once): parent(pid, arg) runs in the parent right after a
 * successful fork, before cr_proc_fork returns; child(arg) runs in the
 * child before child_fn. The bindings use them to register, for the child,
 * the handles it inherits. At most 8; returns 0 or CR_ENOMEM. */
typedef void (*cr_proc_fork_parent_fn)(int pid, void *arg);
typedef void (*cr_proc_fork_child_fn)(void *arg);
int cr_proc_on_fork(cr_proc_fork_parent_fn parent, cr_proc_fork_child_fn child, void *arg);
/* fn runs in a child of cr_proc_fork when child_fn returned, before the
 * child's _exit (which runs no atexit handler): for work a process must
 * finish before it ends (a Redis Queue's unsent puts). At most 8; returns
 * 0 or CR_ENOMEM. */
int cr_proc_on_child_exit(void (*fn)(void));

#endif
