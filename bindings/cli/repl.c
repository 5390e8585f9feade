/* corral executable: the read-eval-print loop.
 *
 * A statement is read line by line: the first line is tried as an
 * expression ("return " .. line) so that `1 + 1` prints 2, then as a
 * statement; while compiling fails with a syntax error at "<eof>" the
 * statement is unfinished and another line is read with the second prompt.
 * `=expr` is the old shorthand for `return expr`. Each statement is its own
 * chunk (named "=stdin"), so locals last one statement, as in lua. Results
 * are pretty-printed; errors are shown with their traceback and the loop
 * goes on. */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "cli.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define CHUNKNAME "=stdin"
#define EOFMARK "<eof>"

/* The loop's own statuses, beside lua_load's. */
#define REPL_EOF (-1)
#define REPL_CANCELLED (-2)

/* The prompt: the global _PROMPT / _PROMPT2 when it is a string, as in lua. */
static const char *get_prompt(lua_State *L, int firstline) {
  lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2");
  const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (p == NULL) {
    lua_pop(L, 1);
    lua_pushstring(L, firstline ? PROMPT : PROMPT2);
    p = lua_tostring(L, -1);
  }
  return p; /* stays on the stack while the line is read */
}

/* Reads a line and pushes it. Returns a CLI_LINE_* code. */
static int pushline(lua_State *L, int firstline) {
  const char *prompt = get_prompt(L, firstline);
  int rc = cli_line_read(L, prompt);
  if (rc == CLI_LINE_OK) lua_remove(L, -2);
  else lua_pop(L, 1);
  return rc;
}

/* A syntax error that ends at "<eof>": the statement goes on. Pops it. */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t lmark = sizeof(EOFMARK) - 1;
    if (lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Compiles prefix .. text; pushes the function or the error message. */
static int compile(lua_State *L, const char *prefix, const char *text, size_t len) {
  lua_pushstring(L, prefix);
  lua_pushlstring(L, text, len);
  lua_concat(L, 2);
  size_t n;
  const char *code = lua_tolstring(L, -1, &n);
  int status = luaL_loadbuffer(L, code, n, CHUNKNAME);
  lua_remove(L, -2);
  return status;
}

/* Reads one statement (the typed text at index 1) and compiles it. Leaves
 * the function or the error message on top. Returns the load status,
 * REPL_EOF or REPL_CANCELLED (nothing pushed for those). */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  int rc = pushline(L, 1);
  if (rc != CLI_LINE_OK) return rc == CLI_LINE_EOF ? REPL_EOF : REPL_CANCELLED;
  size_t len;
  const char *text = lua_tolstring(L, 1, &len);
  int status;
  const char *prefix = "";
  if (text[0] == '=') { /* =expr */
    prefix = "return ";
  } else {
    /* An expression first: its values get printed. The ";" keeps a line
     * such as "f(" from compiling as an expression over several lines. */
    lua_pushfstring(L, "%s;", text);
    status = compile(L, "return ", lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
    lua_remove(L, -2);
    if (status == LUA_OK) {
      /* What runs passes the values on through a call, so that the
       * statement's own frame stays on the stack while they are computed
       * (a plain "return f()" is a tail call: an error's `where` would
       * find no line of the user's, a traceback only "(...tail calls...)"). */
      lua_pop(L, 1);
      lua_pushfstring(L, "%s\n)", text);
      status = compile(L, "return (function(...) return ... end)(", lua_tostring(L, -1),
                       strlen(lua_tostring(L, -1)));
      lua_remove(L, -2);
      cli_line_remember(text);
      return status;
    }
    lua_pop(L, 1);
  }
  for (;;) {
    text = lua_tolstring(L, 1, &len);
    size_t skip = prefix[0] ? 1 : 0; /* the "=" */
    status = compile(L, prefix, text + skip, len - skip);
    if (!incomplete(L, status)) break;
    rc = pushline(L, 0);
    if (rc != CLI_LINE_OK) {
      /* Ctrl-D or Ctrl-C inside a statement drops it; lua would report
       * the syntax error, but the user asked to stop typing. */
      cli_line_remember(lua_tostring(L, 1));
      lua_settop(L, 0);
      return rc == CLI_LINE_EOF ? REPL_EOF : REPL_CANCELLED;
    }
    lua_pushvalue(L, 1);
    lua_pushliteral(L, "\n");
    lua_pushvalue(L, -3);
    lua_concat(L, 3);
    lua_replace(L, 1);
    lua_pop(L, 1);
  }
  cli_line_remember(lua_tostring(L, 1));
  return status;
}

/* Renders every argument and prints them on one line, tab-separated. */
static int print_results(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checkstack(L, n + 5, "too many results to print");
  for (int i = 1; i <= n; i++) {
    cli_pretty(L, i);
    fwrite(lua_tostring(L, -1), 1, lua_rawlen(L, -1), stdout);
    fputs(i < n ? "\t" : "\n", stdout);
    lua_pop(L, 1);
  }
  fflush(stdout);
  return 0;
}

void cli_repl(lua_State *L) {
  const char *saved = cli_progname;
  cli_progname = NULL; /* messages at the prompt need no program name */
  cli_line_open(L);
  int status;
  while ((status = loadline(L)) != REPL_EOF) {
    if (status == REPL_CANCELLED) continue;
    /* the stack: typed text, function (or error) */
    lua_remove(L, 1);
    if (status == LUA_OK) status = cli_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK && lua_gettop(L) > 0) {
      lua_pushcfunction(L, print_results);
      lua_insert(L, 1);
      status = lua_pcall(L, lua_gettop(L) - 1, 0, 0);
      if (status != LUA_OK) {
        lua_pushfstring(L, "error printing the result: %s", lua_tostring(L, -1));
        lua_remove(L, -2);
      }
    }
    fflush(stdout);
    cli_report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  cli_line_close();
  cli_progname = saved;
}
