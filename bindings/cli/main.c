/* corral executable: options, scripts, and spawned children.
 *
 *   corral [options] [script [args]]
 *
 * The options and the `arg` table are those of the stand-alone lua, so a
 * script sees the same `arg` and `...` under both. The module is opened
 * before anything runs: `corral` is a global, and require "corral" gives the
 * same table. At the normal end (script done, REPL left) the engine's
 * at-exit policy runs: daemon children are terminated, others joined. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cli.h"
#include "corral_lua.h"

/* What collectargs found (bits). */
#define HAS_ERROR 1   /* a bad option: the usage is printed */
#define HAS_I 2       /* -i */
#define HAS_V 4       /* -v, --version */
#define HAS_E 8       /* -e: then no REPL is started by default */
#define HAS_HELP 16   /* -h, --help */

static const char *bad_option; /* the option that made HAS_ERROR */
static const char *trace_file; /* --trace FILE */
static const char *bad_reason; /* why: a format for the option */

static void print_version(void) {
  printf("corral %s (%s, libuv %s)\n", CORRAL_VERSION, LUA_RELEASE, uv_version_string());
  fflush(stdout);
}

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: corral [options] [script [args]]\n"
          "       corral worker redis://host:port/name [--workers N]\n"
          "Available options are:\n"
          "  -e stat        execute string 'stat'\n"
          "  -i             enter interactive mode after executing 'script'\n"
          "  -l mod         require library 'mod' into global 'mod'\n"
          "  -l g=mod       require library 'mod' into global 'g'\n"
          "  -v, --version  show version information\n"
          "  -W             turn warnings on\n"
          "  --trace FILE   write a timeline of every process to FILE (Perfetto)\n"
          "  -h, --help     show this help\n"
          "  --             stop handling options\n"
          "  -              stop handling options and execute stdin\n"
          "With no script and no -e, corral reads a chunk from stdin, or opens the\n"
          "REPL when stdin is a terminal. The module is the global 'corral'.\n"
          "Environment:\n"
          "  CORRAL_START_METHOD  default start method: fork (default) or spawn\n"
          "  CORRAL_HISTORY       REPL history file (default ~/.corral_history)\n");
  fflush(f);
}

/* Scans the options. *script is set to the index of the script name in
 * argv, or to argc when there is none. Returns HAS_* bits. */
static int collectargs(char **argv, int argc, int *script) {
  int args = 0;
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    *script = i;
    if (a[0] != '-') return args; /* the script */
    switch (a[1]) {
    case '\0': /* "-": stdin is the script */
      return args;
    case '-':
      if (a[2] == '\0') { /* "--": the next one is the script */
        *script = i + 1;
        return args;
      }
      if (strcmp(a, "--version") == 0) args |= HAS_V;
      else if (strcmp(a, "--help") == 0) args |= HAS_HELP;
      else if (strcmp(a, "--trace") == 0) {
        if (++i >= argc) {
          bad_option = a;
          bad_reason = "'%s' needs an argument";
          return HAS_ERROR;
        }
        trace_file = argv[i];
      } else goto bad;
      break;
    case 'i':
      if (a[2] != '\0') goto bad;
      args |= HAS_I | HAS_V; /* as in lua, -i shows the version first */
      break;
    case 'v':
      if (a[2] != '\0') goto bad;
      args |= HAS_V;
      break;
    case 'h':
      if (a[2] != '\0') goto bad;
      args |= HAS_HELP;
      break;
    case 'W':
      if (a[2] != '\0') goto bad;
      break;
    case 'e':
      args |= HAS_E;
      /* fall through */
    case 'l':
      if (a[2] == '\0') { /* the argument is the next word */
        if (++i >= argc) {
          bad_option = a;
          bad_reason = "'%s' needs an argument";
          return HAS_ERROR;
        }
      }
      break;
    default:
      goto bad;
    }
  }
  *script = argc;
  return args;
bad:
  bad_option = argv[i];
  bad_reason = "unrecognized option '%s'";
  return HAS_ERROR;
}

/* arg = {[-n..-1] = interpreter and options, [0] = script, [1..] = its
 * arguments}; without a script, arg[0] is the interpreter. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg > 0 ? narg : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = cli_docall(L, 0, 0);
  return cli_report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l [g=]mod: g = require(mod) */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *mod = eq ? eq + 1 : spec;
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int status = cli_docall(L, 1, 1);
  if (status == LUA_OK) {
    if (eq) lua_pushlstring(L, spec, (size_t)(eq - spec));
    else lua_pushstring(L, spec);
    lua_insert(L, -2);
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  return cli_report(L, status);
}

/* --trace FILE: corral.trace(FILE) before anything runs. Returns 0 when
 * the file cannot be opened (the error is reported). */
static int start_trace(lua_State *L) {
  if (!trace_file) return 1;
  lua_getglobal(L, "corral");
  lua_getfield(L, -1, "trace");
  lua_remove(L, -2);
  lua_pushstring(L, trace_file);
  return cli_report(L, cli_docall(L, 1, 0)) == LUA_OK;
}

/* Runs -e, -l and -W in command-line order. Returns 0 on the first error. */
static int runargs(lua_State *L, char **argv, int script) {
  for (int i = 1; i < script; i++) {
    const char *a = argv[i];
    if (a[0] != '-') continue;
    if (strcmp(a, "--trace") == 0) {
      i++; /* its file name is no option */
      continue;
    }
    if (a[1] == 'e' || a[1] == 'l') {
      const char *extra = a[2] ? a + 2 : argv[++i];
      int status = a[1] == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
      if (status != LUA_OK) return 0;
    } else if (a[1] == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

/* Pushes arg[1..n] as the script's `...`; returns n. */
static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = cli_docall(L, n, LUA_MULTRET);
  }
  return cli_report(L, status);
}

/* The protected main: returns true when everything ran without error. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int script = argc;
  int args = collectargs(argv, argc, &script);
  luaL_checkversion(L);
  if (args == HAS_ERROR) {
    fputs("corral: ", stderr);
    fprintf(stderr, bad_reason, bad_option);
    fputs("\n", stderr);
    print_usage(stderr);
    return 0;
  }
  if (args & HAS_HELP) {
    print_usage(stdout);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (args & HAS_V) print_version();
  luaL_openlibs(L);
  luaL_requiref(L, "corral", luaopen_corral, 1);
  lua_pop(L, 1);
  if (script == 1 && argc > 1 && strcmp(argv[1], "worker") == 0) { /* corral worker URL ... */
    lua_pushboolean(L, cli_worker(L, argc - 2, argv + 2) == LUA_OK);
    return 1;
  }
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!start_trace(L)) return 0;
  if (!runargs(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & HAS_I) {
    cli_repl(L);
  } else if (script == argc && !(args & (HAS_E | HAS_V))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      cli_repl(L);
    } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- spawned children -------------------------------------------------------- */

static int open_child(lua_State *L) {
  luaL_openlibs(L);
  luaL_requiref(L, "corral", luaopen_corral, 1);
  lua_pop(L, 1);
  return 0;
}

/* A child started with the spawn method: the same libraries and module as a
 * script gets, then the process the parent sent. No options, no output of
 * our own beyond a failure to start. */
static int spawn_child(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "corral child: cannot create state: not enough memory\n");
    return 1;
  }
  lua_pushcfunction(L, open_child);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "corral child: %s\n", luaL_tolstring(L, -1, NULL));
    lua_close(L);
    return 1;
  }
  int rc = crL_spawn_child_run(L);
  cr_engine_finish(cr_engine_default()); /* the child's own children */
  lua_close(L);
  return rc;
}

int main(int argc, char **argv) {
  if (crL_is_spawn_child()) return spawn_child();
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    cli_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP); /* no collection while the libraries open */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int ok = lua_toboolean(L, -1);
  cli_report(L, status);
  /* Join non-daemon children and terminate daemon ones while the handles
   * that the Lua state holds are still there. */
  cr_engine_finish(cr_engine_default());
  lua_close(L);
  if (ok && status == LUA_OK) return EXIT_SUCCESS;
  return cli_interrupted ? 128 + SIGINT : EXIT_FAILURE;
}
