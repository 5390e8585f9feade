/* corral bindings: starting and watching child processes.
 *
 * The Lua Process class lives in corral.lua; this part gives it one
 * primitive, _start(obj, method, daemon, name), which starts a child that
 * calls the registered bootstrap function with obj, and returns a
 * "corral.ProcHandle" to watch it. fork: the child is a copy of this state.
 * spawn: obj is encoded into the arena and a fresh corral executable
 * decodes it (CORRAL_CHILD=off:len:ppid:daemon in its environment), after
 * taking the parent's package.path and package.cpath (CORRAL_CHILD_PATH,
 * CORRAL_CHILD_CPATH), so that the modules the parent found, which the
 * decoder requires by name, are found in the child too (as Python's spawn
 * passes sys.path). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "corral_lua.h"

#define PROC_MT "corral.ProcHandle"
#define BOOTSTRAP_KEY "corral.bootstrap"
#define CHILD_ENV "CORRAL_CHILD"
#define PATH_ENV CHILD_ENV "_PATH"
#define CPATH_ENV CHILD_ENV "_CPATH"

extern char **environ;

typedef struct {
  cr_proc_t *p;
} lproc_t;

static lproc_t *check_proc(lua_State *L) {
  lproc_t *lp = crL_checkudata(L, 1, PROC_MT);
  if (!lp->p) crL_error_closed(L, "process handle");
  return lp;
}

/* ---- the child side --------------------------------------------------------- */

static int traceback(lua_State *L) {
  const char *msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Ctrl-C in a child, as lua.c and the corral executable treat it in a
 * script: the target stops at its next instruction with "interrupted!",
 * and a second SIGINT before Lua gets control back ends the process. A
 * forked child cannot keep the handler it inherits: that one sets its hook
 * on the parent's main thread (lua.c's globalL), and the target runs on a
 * thread of its own, so the first Ctrl-C was lost. */
static lua_State *sigint_thread; /* the thread running this child's target */

static void sigint_stop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  signal(sig, SIG_DFL); /* the next one ends the process */
  lua_sethook(sigint_thread, sigint_stop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Makes SIGINT stop the target running on T, unless this process ignores
 * SIGINT (pool workers do, on purpose). */
static void stop_on_sigint(lua_State *T) {
  struct sigaction sa;
  sigaction(SIGINT, NULL, &sa);
  if (!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_IGN) return;
  sigint_thread = T;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* The name of process object obj (at idx) in the log and the trace: its
 * `_track` (a Pool names its workers "Pool-1 worker 2"), else its `name`,
 * else def. The string stays valid while obj holds it. */
static const char *track_name(lua_State *L, int idx, const char *def) {
  idx = lua_absindex(L, idx);
  const char *name = def;
  if (!lua_istable(L, idx)) return name;
  int top = lua_gettop(L);
  if (lua_getfield(L, idx, "_track") == LUA_TSTRING) name = lua_tostring(L, -1);
  else if (lua_getfield(L, idx, "name") == LUA_TSTRING) name = lua_tostring(L, -1);
  lua_settop(L, top);
  return name;
}

/* Calls bootstrap(obj) (obj on top of the stack) in a child; returns the
 * exit code: 0, or 1 after printing the traceback prefixed with the name.
 * It runs on a new Lua thread so that a forked child's traceback shows its
 * own calls, not the parent's stack it was copied from; SIGINT stops it
 * (stop_on_sigint). */
static int run_bootstrap(lua_State *L) {
  int obj = lua_gettop(L);
  cr_log_set_name(track_name(L, obj, "Process"));
  lua_State *T = lua_newthread(L);
  stop_on_sigint(T);
  lua_pushcfunction(T, traceback);
  lua_getfield(T, LUA_REGISTRYINDEX, BOOTSTRAP_KEY);
  lua_pushvalue(L, obj);
  lua_xmove(L, T, 1);
  if (lua_pcall(T, 1, 0, 1) == LUA_OK) return 0;
  const char *name = "Process";
  if (lua_istable(L, obj)) {
    lua_getfield(L, obj, "name");
    if (lua_isstring(L, -1)) name = lua_tostring(L, -1);
  }
  fflush(stdout);
  fprintf(stderr, "%s (pid %d): %s\n", name, (int)getpid(), lua_tostring(T, -1));
  fflush(stderr);
  return 1;
}

typedef struct {
  lua_State *L;
} fork_arg_t;

static int fork_child_fn(void *arg) {
  lua_State *L = ((fork_arg_t *)arg)->L;
  lua_pushvalue(L, 1); /* obj: the first argument of _start */
  return run_bootstrap(L);
}

int crL_is_spawn_child(void) { return getenv(CHILD_ENV) != NULL; }

/* package[field] = $var, when var is set (then unset: not for our own
 * children, who get ours from us). */
static void take_path(lua_State *L, const char *var, const char *field) {
  const char *v = getenv(var);
  if (!v) return;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "package") == LUA_TTABLE) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, field);
  }
  lua_pop(L, 2);
  unsetenv(var);
}

static int decode_payload(lua_State *L) {
  const char *p = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  crL_decode(L, p, n, 0); /* adopting the message's references (see corral/refs.h) */
  return 1;
}

/* What a spawned child takes over from its parent's trace and logger
 * (child_env passes them on): the trace file it appends to, the level. */
#define TRACE_ENV "CORRAL_TRACE"
#define LOG_ENV "CORRAL_LOG"

static void inherit_observers(void) {
  const char *level = getenv(LOG_ENV);
  if (level) cr_log_set_level(atoi(level));
  const char *path = getenv(TRACE_ENV);
  if (path) {
    int rc = cr_trace_open(path, 0);
    if (rc < 0) fprintf(stderr, "corral child (pid %d): cannot open the trace file '%s': %s\n", (int)getpid(), path, strerror(-rc));
  }
  unsetenv(LOG_ENV); /* not for programs it runs: its own children get them from child_env */
  unsetenv(TRACE_ENV);
}

int crL_spawn_child_run(lua_State *L) {
  unsigned long long off = 0, len = 0;
  int ppid = 0, daemon = 0;
  const char *env = getenv(CHILD_ENV);
  if (!env || sscanf(env, "%llu:%llu:%d:%d", &off, &len, &ppid, &daemon) != 4) {
    fprintf(stderr, "corral: malformed %s\n", CHILD_ENV);
    return 70;
  }
  if (daemon) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != ppid) return 0; /* the parent is already gone */
  }
  inherit_observers();
  cr_engine_t *e = crL_engine(L); /* attaches to the inherited arena */
  unsetenv(CHILD_ENV);            /* not for our own children */
  take_path(L, PATH_ENV, "path");
  take_path(L, CPATH_ENV, "cpath");
  cr_arena_t *a = cr_engine_arena(e);
  const void *bytes;
  size_t n;
  if (cr_handoff_take(a, (cr_off_t)off, &bytes, &n) < 0 || n != len) {
    fprintf(stderr, "corral: spawn payload is not in the arena\n");
    return 70;
  }
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, decode_payload);
  lua_pushlightuserdata(L, (void *)bytes);
  lua_pushinteger(L, (lua_Integer)len);
  int st = lua_pcall(L, 2, 1, -4);
  cr_handoff_done(a, (cr_off_t)off); /* the references are the ledger's now; the parent frees the rest */
  if (st != LUA_OK) {
    fprintf(stderr, "corral child (pid %d): cannot decode its process: %s\n", (int)getpid(),
            lua_tostring(L, -1));
    return 1;
  }
  return run_bootstrap(L);
}

/* ---- the parent side -------------------------------------------------------- */

/* Path of the corral executable for spawn: the host's choice
 * (corral_set_worker), $CORRAL_EXE, this executable if it is corral, else
 * "corral" beside the module's .so file, or where an install puts it
 * relative to the module (PREFIX/lib/lua/5.4/corral.so, PREFIX/bin/corral). */
static const char *corral_exe(lua_State *L) {
  if (crL_worker_exe) return crL_worker_exe;
  const char *env = getenv("CORRAL_EXE");
  if (env && *env) return env;
  static char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n > 0) {
    path[n] = 0;
    const char *base = strrchr(path, '/');
    if (base && strcmp(base + 1, "corral") == 0) return path;
  }
  Dl_info info;
  if (dladdr((void *)luaopen_corral, &info) && info.dli_fname) {
    snprintf(path, sizeof path, "%s", info.dli_fname);
    char *slash = strrchr(path, '/');
    static const char *const rel[] = {"corral", "../../../bin/corral"};
    for (size_t i = 0; slash && i < sizeof rel / sizeof rel[0]; i++) {
      snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "%s", rel[i]);
      if (access(path, X_OK) == 0) return path;
    }
  }
  crL_error(L, "OSError", "cannot find the corral executable for the spawn start method (set CORRAL_EXE)");
  return NULL;
}

/* Whether the environment entry s ("NAME=value") sets one of the nvals
 * names of vals (each "NAME=value"). */
static int replaced(const char *s, char *const *vals, int nvals) {
  for (int k = 0; k < nvals; k++) {
    size_t klen = (size_t)(strchr(vals[k], '=') - vals[k]) + 1;
    if (strncmp(s, vals[k], klen) == 0) return 1;
  }
  return 0;
}

/* environ with the nvals entries of vals ("NAME=value") put in, replacing
 * any of those names. Lives in a userdata pushed on the stack. */
static char **child_env(lua_State *L, char *const *vals, int nvals) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = lua_newuserdatauv(L, (n + (size_t)nvals + 1) * sizeof(char *), 0);
  size_t j = 0;
  for (size_t i = 0; i < n; i++)
    if (!replaced(environ[i], vals, nvals)) env[j++] = environ[i];
  for (int k = 0; k < nvals; k++) env[j++] = vals[k];
  env[j] = NULL;
  return env;
}

/* Pushes "var=package[field]" (the current value: a script may have changed
 * it); "var=" followed by Lua's default when package has no such string. */
static char *push_path_env(lua_State *L, const char *var, const char *field) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "package");
  if (lua_istable(L, -1)) lua_getfield(L, -1, field);
  else lua_pushnil(L);
  const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (!v) v = strcmp(field, "path") == 0 ? LUA_PATH_DEFAULT : LUA_CPATH_DEFAULT;
  char *s = (char *)lua_pushfstring(L, "%s=%s", var, v);
  lua_replace(L, -4);
  lua_pop(L, 2);
  return s;
}

static void push_proc(lua_State *L, cr_proc_t *p) {
  lproc_t *lp = lua_newuserdatauv(L, sizeof *lp, 0);
  lp->p = p;
  luaL_setmetatable(L, PROC_MT);
}

/* _start(obj, method, daemon, name) -> ProcHandle */
static int l_start(lua_State *L) {
  crL_checkany(L, 1);
  const char *method = crL_checkstring(L, 2);
  int daemon = lua_toboolean(L, 3);
  const char *name = crL_optstring(L, 4, "Process");
  cr_engine_t *e = crL_engine(L);
  cr_proc_options_t o;
  memset(&o, 0, sizeof o);
  o.daemon = daemon;
  o.name = track_name(L, 1, name);
  cr_proc_t *p;
  int rc;
  if (strcmp(method, "fork") == 0) {
    fork_arg_t fa = {L};
    o.child_fn = fork_child_fn;
    o.child_arg = &fa;
    lua_settop(L, 1); /* the child finds obj at index 1 */
    rc = cr_proc_fork(e, &o, &p);
  } else if (strcmp(method, "spawn") == 0) {
    size_t len;
    const char *bytes = crL_encode(L, 1, "process", &len);
    cr_arena_t *a = cr_engine_arena(e);
    cr_off_t off;
    rc = cr_handoff_new(a, bytes, len, &off);
    if (rc < 0) {
      crL_decode_drop(L, bytes, len); /* the references its handles took */
      return crL_error_code(L, rc, "start");
    }
    /* what the child needs to find: its Process, the parent's module
     * paths, and this process's trace file and log level when they are on */
    char *vals[5];
    int nvals = 0;
    vals[nvals++] = (char *)lua_pushfstring(L, CHILD_ENV "=%I:%I:%d:%d", (lua_Integer)off, (lua_Integer)len,
                                            (int)getpid(), daemon);
    vals[nvals++] = push_path_env(L, PATH_ENV, "path");
    vals[nvals++] = push_path_env(L, CPATH_ENV, "cpath");
    const char *trace = cr_trace_path();
    if (trace) vals[nvals++] = (char *)lua_pushfstring(L, TRACE_ENV "=%s", trace);
    if (cr_log_level() < CR_LOG_OFF) vals[nvals++] = (char *)lua_pushfstring(L, LOG_ENV "=%d", cr_log_level());
    const char *exe = corral_exe(L);
    char *args[] = {(char *)exe, "--child", (char *)name, NULL};
    o.file = exe;
    o.args = args;
    o.env = child_env(L, vals, nvals);
    o.handoff = off; /* reclaimed by the engine when the child ends */
    rc = cr_proc_spawn(e, &o, &p);
    if (rc < 0) cr_handoff_reclaim(a, off); /* drops the references its handles took */
  } else {
    return crL_error(L, "ValueError", "unknown start method '%s' (expected 'fork' or 'spawn')", method);
  }
  if (rc < 0) return crL_error_code(L, rc, "start");
  if (cr_trace_on()) cr_trace_name(cr_proc_pid(p), o.name);
  push_proc(L, p);
  return 1;
}

static int l_set_bootstrap(lua_State *L) {
  crL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, BOOTSTRAP_KEY);
  return 0;
}

static int p_pid(lua_State *L) {
  lua_pushinteger(L, cr_proc_pid(check_proc(L)->p));
  return 1;
}

/* join(timeout) -> true once exited, false on timeout */
static int p_join(lua_State *L) {
  lproc_t *lp = check_proc(L);
  double t = crL_opttimeout(L, 2);
  int rc = cr_proc_join(lp->p, t);
  if (rc == CR_ETIMEDOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "can only join a child process");
  if (rc < 0) return crL_error_code(L, rc, "join");
  lua_pushboolean(L, 1);
  return 1;
}

/* exitcode() -> integer, or nil while running */
static int p_exitcode(lua_State *L) {
  lproc_t *lp = check_proc(L);
  if (cr_proc_poll(lp->p) == CR_PROC_RUNNING) lua_pushnil(L);
  else lua_pushinteger(L, cr_proc_exitcode(lp->p));
  return 1;
}

static int p_alive(lua_State *L) {
  lproc_t *lp = check_proc(L);
  lua_pushboolean(L, cr_proc_poll(lp->p) == CR_PROC_RUNNING);
  return 1;
}

static int p_signal(lua_State *L) {
  lproc_t *lp = check_proc(L);
  int sig = (int)crL_checkinteger(L, 2);
  int rc = cr_proc_signal(lp->p, sig);
  if (rc == CR_ESTATE) return crL_error(L, "StateError", "can only signal a child process");
  if (rc < 0) return crL_error_code(L, rc, "signal");
  return 0;
}

static int p_mine(lua_State *L) {
  lua_pushboolean(L, cr_proc_is_mine(check_proc(L)->p));
  return 1;
}

static int p_release(lua_State *L) {
  lproc_t *lp = crL_checkudata(L, 1, PROC_MT);
  if (lp->p) cr_proc_release(lp->p);
  lp->p = NULL;
  return 0;
}

static int p_tostring(lua_State *L) {
  lproc_t *lp = crL_checkudata(L, 1, PROC_MT);
  if (lp->p) lua_pushfstring(L, "ProcHandle (pid %d)", cr_proc_pid(lp->p));
  else lua_pushliteral(L, "ProcHandle (closed)");
  return 1;
}

static int l_active_count(lua_State *L) {
  lua_pushinteger(L, cr_proc_count_running(crL_engine(L)));
  return 1;
}

void crL_open_proc(lua_State *L) {
  if (luaL_newmetatable(L, PROC_MT)) {
    static const luaL_Reg meta[] = {{"__gc", p_release}, {"__close", p_release}, {"__tostring", p_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    static const luaL_Reg methods[] = {{"pid", p_pid},       {"join", p_join},     {"exitcode", p_exitcode},
                                       {"alive", p_alive},   {"signal", p_signal}, {"mine", p_mine},
                                       {"release", p_release}, {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"_start", l_start}, {"_set_bootstrap", l_set_bootstrap},
                                 {"_active_count", l_active_count}, {NULL, NULL}};
  crL_setfuncs(L, fns);
  lua_pushinteger(L, SIGTERM);
  lua_setfield(L, -2, "_SIGTERM");
  lua_pushinteger(L, SIGKILL);
  lua_setfield(L, -2, "_SIGKILL");
}
