/* corral engine: child processes (see corral/proc.h). */
#define _GNU_SOURCE
#include "engine_int.h"
#include "corral/errors.h"
#include "corral/log.h"
#include "corral/refs.h"
#include "corral/trace.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int cr_proc_pid(const cr_proc_t *p) { return p->pid; }
cr_proc_state_t cr_proc_state(const cr_proc_t *p) { return p->state; }
int cr_proc_exitcode(const cr_proc_t *p) { return p->state == CR_PROC_EXITED ? p->exitcode : 0; }
int cr_proc_is_daemon(const cr_proc_t *p) { return p->daemon; }
int cr_proc_is_mine(const cr_proc_t *p) { return p->owner_pid == getpid(); }

static cr_proc_t *proc_new(cr_engine_t *e, const cr_proc_options_t *o) {
  cr_proc_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->engine = e;
  p->owner_pid = getpid();
  p->daemon = o->daemon != 0;
  p->state = CR_PROC_RUNNING;
  p->refs = 2; /* the caller's, and the engine list's until reaped */
  p->handoff = o->handoff;
  p->on_exit = o->on_exit;
  p->data = o->data;
  p->traced = cr_trace_on();
  p->t_start = p->traced ? cr_trace_now() : 0;
  snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : "process");
  return p;
}

/* The log line and the trace event of a child that started or ended. */
static void note_started(const cr_proc_t *p) {
  if (cr_log_enabled(CR_LOG_INFO))
    cr_log(CR_LOG_INFO, "started %s (pid %d, %s%s)", p->name, p->pid, p->is_spawned ? "spawn" : "fork",
           p->daemon ? ", daemon" : "");
}

static void note_exited(const cr_proc_t *p, int exitcode) {
  if (cr_log_enabled(CR_LOG_INFO)) {
    if (exitcode < 0) cr_log(CR_LOG_INFO, "%s (pid %d) was killed by signal %d", p->name, p->pid, -exitcode);
    else cr_log(CR_LOG_INFO, "%s (pid %d) exited with exitcode %d", p->name, p->pid, exitcode);
  }
  if (p->traced && cr_trace_on()) {
    char args[48];
    snprintf(args, sizeof args, "{\"exitcode\":%d}", exitcode);
    cr_trace_slice(p->pid, "process", "process", p->t_start, cr_trace_now(), args);
  }
}

static void proc_unref(cr_proc_t *p) {
  if (--p->refs > 0) return;
  if (p->uvp_open) return; /* freed by the close callback */
  free(p);
}

static void unlink_child(cr_engine_t *e, cr_proc_t *p) {
  cr_proc_t **pp;
  for (pp = &e->children; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      p->next = NULL;
      return;
    }
}

static void on_uv_close(uv_handle_t *h);

static void proc_exited(cr_proc_t *p, int exitcode) {
  p->state = CR_PROC_EXITED;
  note_exited(p, exitcode);
  /* what it held, however it ended (a start message it died decoding
   * still owns the references its ledger adopted: dropped once, below) */
  cr__refs_reap(p->engine, p->pid, !cr_handoff_owns_refs(p->engine->arena, p->handoff));
  if (p->handoff) cr_handoff_reclaim(p->engine->arena, p->handoff);
  p->handoff = 0;
  if (p->uvp_open && !uv_is_closing((uv_handle_t *)&p->uvp))
    uv_close((uv_handle_t *)&p->uvp, on_uv_close);
  p->exitcode = exitcode;
  if (p->on_exit) p->on_exit(p, exitcode, p->data);
  cr_engine_t *e = p->engine;
  unlink_child(e, p);
  proc_unref(p);
  cr__watch_ring_all(e); /* whoever serves a pool learns of a dead worker */
}

void cr__proc_reap(cr_engine_t *e) {
  cr_proc_t *p = e->children, *next;
  for (; p; p = next) {
    next = p->next;
    if (p->is_spawned || p->state != CR_PROC_RUNNING) continue;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
      if (WIFEXITED(st)) proc_exited(p, WEXITSTATUS(st));
      else if (WIFSIGNALED(st)) proc_exited(p, -WTERMSIG(st));
    } else if (r < 0 && errno == ECHILD) {
      proc_exited(p, -SIGKILL); /* reaped behind our back; treat as lost */
    }
  }
}

void cr__proc_forget_all(cr_engine_t *e) {
  /* Handles stay valid for whoever holds them (they are foreign now); the
   * engine just stops listing them. */
  cr_proc_t *p = e->children, *next;
  for (; p; p = next) {
    next = p->next;
    p->next = NULL;
    p->handoff = 0; /* the parent's to reclaim */
    p->refs--; /* the list's reference; the memory is the caller's now */
  }
  e->children = NULL;
}

static void link_child(cr_engine_t *e, cr_proc_t *p) {
  p->next = e->children;
  e->children = p;
}

static struct {
  cr_proc_fork_parent_fn parent;
  cr_proc_fork_child_fn child;
  void *arg;
} fork_hooks[8];
static int n_fork_hooks;

static void (*child_exit_hooks[8])(void);
static int n_child_exit_hooks;

int cr_proc_on_child_exit(void (*fn)(void)) {
  if (n_child_exit_hooks == 8) return CR_ENOMEM;
  child_exit_hooks[n_child_exit_hooks++] = fn;
  return 0;
}

int cr_proc_on_fork(cr_proc_fork_parent_fn parent, cr_proc_fork_child_fn child, void *arg) {
  if (n_fork_hooks == 8) return CR_ENOMEM;
  fork_hooks[n_fork_hooks].parent = parent;
  fork_hooks[n_fork_hooks].child = child;
  fork_hooks[n_fork_hooks].arg = arg;
  n_fork_hooks++;
  return 0;
}

int cr_proc_fork(cr_engine_t *e, const cr_proc_options_t *o, cr_proc_t **out) {
  if (!o->child_fn) return CR_EINVAL;
  int rc = cr__engine_watch_children(e);
  if (rc < 0) return rc;
  cr_proc_t *p = proc_new(e, o);
  if (!p) return -ENOMEM;
  cr__refs_fork_t refs;
  if ((rc = cr__refs_fork_prepare(e, &refs)) < 0) {
    free(p);
    return rc;
  }
  fflush(NULL); /* what the parent buffered must not be printed twice */
  cr_trace_flush(); /* nor traced twice */
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = -errno;
    cr__refs_fork_abort(e, &refs);
    free(p);
    return err;
  }
  if (pid == 0) {
    free(p);
    if (o->daemon) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0); /* parent already gone */
    }
    cr__trace_after_fork();
    cr__engine_after_fork(e);
    cr__refs_fork_child(e, &refs);
    for (int i = 0; i < n_fork_hooks; i++)
      if (fork_hooks[i].child) fork_hooks[i].child(fork_hooks[i].arg);
    int code = o->child_fn(o->child_arg);
    for (int i = 0; i < n_child_exit_hooks; i++) child_exit_hooks[i]();
    cr_engine_finish(e);
    fflush(NULL);
    cr_trace_flush();
    _exit(code & 0xff);
  }
  p->pid = pid;
  cr__refs_fork_parent(e, &refs, (int)pid);
  link_child(e, p);
  note_started(p);
  for (int i = 0; i < n_fork_hooks; i++)
    if (fork_hooks[i].parent) fork_hooks[i].parent((int)pid, fork_hooks[i].arg);
  *out = p;
  return 0;
}

static void on_uv_exit(uv_process_t *h, int64_t status, int term_signal) {
  cr_proc_t *p = h->data;
  proc_exited(p, term_signal ? -term_signal : (int)status);
}

static void on_uv_close(uv_handle_t *h) {
  cr_proc_t *p = h->data;
  p->uvp_open = 0;
  if (p->refs <= 0) free(p);
}

int cr_proc_spawn(cr_engine_t *e, const cr_proc_options_t *o, cr_proc_t **out) {
  if (!o->file || !o->args) return CR_EINVAL;
  cr_proc_t *p = proc_new(e, o);
  if (!p) return -ENOMEM;
  uv_stdio_container_t stdio[4];
  for (int i = 0; i < 3; i++) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = cr_arena_fd(e->arena);
  uv_process_options_t uo;
  memset(&uo, 0, sizeof uo);
  uo.file = o->file;
  uo.args = o->args;
  uo.env = o->env;
  uo.exit_cb = on_uv_exit;
  uo.stdio = stdio;
  uo.stdio_count = 4;
  fflush(NULL);
  p->is_spawned = 1;
  p->uvp.data = p;
  int rc = uv_spawn(e->loop, &p->uvp, &uo);
  if (rc < 0) {
    /* uv_spawn initialised the handle even on failure: it must be closed. */
    p->uvp_open = 1;
    p->refs = 0;
    p->handoff = 0; /* still the caller's */
    uv_close((uv_handle_t *)&p->uvp, on_uv_close);
    return rc;
  }
  p->uvp_open = 1;
  p->pid = p->uvp.pid;
  uv_unref((uv_handle_t *)&p->uvp);
  link_child(e, p);
  note_started(p);
  *out = p;
  return 0;
}

static int proc_done(void *arg) { return ((cr_proc_t *)arg)->state != CR_PROC_RUNNING; }

int cr_proc_join(cr_proc_t *p, double timeout) {
  if (!cr_proc_is_mine(p)) return CR_ESTATE;
  if (p->state != CR_PROC_RUNNING) return 0;
  if (!p->is_spawned) cr__proc_reap(p->engine); /* a SIGCHLD may be queued */
  return cr_engine_wait(p->engine, timeout, proc_done, p);
}

cr_proc_state_t cr_proc_poll(cr_proc_t *p) {
  if (p->state == CR_PROC_RUNNING && cr_proc_is_mine(p)) {
    if (p->is_spawned) cr__engine_run_nowait(p->engine);
    else cr__proc_reap(p->engine);
  }
  return p->state;
}

int cr_proc_signal(cr_proc_t *p, int signum) {
  if (!cr_proc_is_mine(p)) return CR_ESTATE;
  if (p->state != CR_PROC_RUNNING) return 0;
  /* The pid is still ours until we reap it, so it cannot name another
   * process. */
  if (kill(p->pid, signum) < 0) return errno == ESRCH ? 0 : -errno;
  return 0;
}

void cr_proc_release(cr_proc_t *p) {
  if (p) proc_unref(p);
}

int cr_proc_count_running(cr_engine_t *e) {
  int n = 0;
  for (cr_proc_t *p = e->children; p; p = p->next)
    if (p->state == CR_PROC_RUNNING) n++;
  return n;
}
