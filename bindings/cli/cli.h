/* corral executable: what its files share.
 *
 * The executable follows the shape of Lua's stand-alone interpreter: main()
 * runs everything inside a protected call, Lua code runs under a message
 * handler that adds a traceback, SIGINT becomes a hook that raises
 * corral's Interrupted error at the next Lua instruction, and the REPL detects an
 * unfinished statement from the "<eof>" syntax error.
 *
 *   main.c    options, the `arg` table, scripts, -e/-l, spawned children
 *   run.c     protected calls: traceback handler, SIGINT hook, error reports
 *   repl.c    the read-eval-print loop: statements, `=expr`, results
 *   line.c    reading one line: readline with history, or plain stdin
 *   complete.c  Tab completion of names for readline
 *   pretty.c  rendering values for the REPL */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

#include <lua.h>

/* ---- run.c ------------------------------------------------------------------ */
/* Prefix of error messages ("corral"); NULL while the REPL runs, whose
 * errors are shown bare as in lua. */
extern const char *cli_progname;
/* Set when the last cli_docall ended with an uncaught Interrupted error:
 * the executable then exits with 128 + SIGINT, as a shell expects. */
extern int cli_interrupted;

/* Calls the function below `narg` arguments like lua_pcall, with a message
 * handler that turns error objects into strings (via __tostring) and appends
 * a traceback (not for an Interrupted error: its one line), and with SIGINT
 * turned into an Interrupted error while it runs. Returns the lua_pcall
 * status. */
int cli_docall(lua_State *L, int narg, int nres);

/* Prints "progname: msg" on stderr (bare msg when progname is NULL). */
void cli_message(const char *msg);

/* When status is not LUA_OK, prints the error on top of the stack (any
 * value) and pops it. Returns status. */
int cli_report(lua_State *L, int status);

/* ---- worker.c --------------------------------------------------------------- */
/* `corral worker URL [--workers N]` with argv the words after "worker":
 * serves the pool until SIGINT. Returns a lua_pcall status (reported). */
int cli_worker(lua_State *L, int argc, char **argv);

/* ---- repl.c ----------------------------------------------------------------- */
/* Runs the REPL on stdin until end of input. Errors are reported and the
 * loop goes on; only os.exit leaves it early. */
void cli_repl(lua_State *L);

/* ---- line.c ----------------------------------------------------------------- */
#define CLI_LINE_EOF 0          /* end of input: nothing pushed */
#define CLI_LINE_OK 1           /* a line was pushed (no trailing newline) */
#define CLI_LINE_INTERRUPTED -1 /* SIGINT cancelled the line: nothing pushed */

/* Prepares line input: readline, completion and the history file when
 * stdin is a terminal, plain reads otherwise. */
void cli_line_open(lua_State *L);
/* Reads one line after showing `prompt`; returns a CLI_LINE_* code. */
int cli_line_read(lua_State *L, const char *prompt);
/* Records a finished statement (it may hold newlines) in the history. */
void cli_line_remember(const char *text);
/* Saves and trims the history file. */
void cli_line_close(void);

/* ---- history.c -------------------------------------------------------------- */
/* Finds the history file and reads it into readline's history. */
void cli_history_open(void);
/* Appends a finished statement, unless it repeats the last entry. */
void cli_history_add(const char *text);
/* Trims the file to its last entries and forgets it. */
void cli_history_close(void);

/* ---- complete.c ------------------------------------------------------------- */
/* Makes Tab complete global names and paths (corral.Pro) from L. */
void cli_complete_open(lua_State *L);

/* ---- pretty.c --------------------------------------------------------------- */
/* Pushes a readable rendering of the value at idx: strings quoted, tables
 * nested with indentation, keys sorted, cycles marked, depth and length
 * limited, values with __tostring (error objects...) by their tostring.
 * May raise (a __tostring that fails, memory). */
void cli_pretty(lua_State *L, int idx);

#endif
