/* corral executable: reading REPL lines.
 *
 * On a terminal, lines come from readline (editing, history) driven through
 * its callback interface, and Ctrl-C at the prompt cancels the line instead
 * of killing the REPL. While a line is read, Ctrl-C is an ordinary key to the
 * terminal (its VINTR is off) bound to cancel_line: a SIGINT would arrive
 * beside the input, not in it, and readline, which reads every key already
 * typed in one go, could take the keys typed after the Ctrl-C into the line
 * it cancels. A SIGINT from elsewhere (kill) still cancels the line: it is
 * blocked except inside our pselect. Elsewhere (corral -i with a pipe)
 * lines are plain reads with the prompt written to stdout.
 * The history is history.c's. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <termios.h>
#include <unistd.h>

#include <readline/readline.h>

#include <lauxlib.h>

#include "cli.h"

static int use_readline;

static volatile sig_atomic_t got_sigint;
static volatile sig_atomic_t got_sigwinch;
/* Set by the Ctrl-C key (cancel_line) while readline reads a line. */
static int got_ctrl_c;

/* The line readline handed over (malloc'd), and whether it did. */
static char *done_line;
static int line_done;

static void on_read_signal(int sig) {
  if (sig == SIGINT) got_sigint = 1;
  else got_sigwinch = 1;
}

/* The Ctrl-C key: read_tty sees the flag when readline returns and drops
 * the line; the keys typed after it wait for the next line. */
static int cancel_line(int count, int key) {
  (void)count;
  (void)key;
  got_ctrl_c = 1;
  return 0;
}

/* readline's terminal set-up, then Ctrl-C made a key (no SIGINT) for as long
 * as the line is read; readline's own restore puts VINTR back, as it saved
 * the settings before this change. */
static void prep_terminal(int meta) {
  rl_prep_terminal(meta);
  int fd = fileno(rl_instream ? rl_instream : stdin);
  struct termios t;
  if (tcgetattr(fd, &t) == 0 && t.c_cc[VINTR] == 3) { /* ^C is the interrupt key */
    t.c_cc[VINTR] = _POSIX_VDISABLE;
    tcsetattr(fd, TCSANOW, &t);
  }
}

void cli_line_open(lua_State *L) {
  use_readline = isatty(STDIN_FILENO);
  if (!use_readline) return;
  rl_readline_name = "corral";
  rl_catch_signals = 0;      /* SIGINT is ours: see read_tty */
  rl_catch_sigwinch = 0;     /* resizes are passed on by read_tty */
  rl_change_environment = 0; /* no LINES/COLUMNS in the children's environment */
  rl_prep_term_function = prep_terminal;
  /* in every editing mode: an inputrc may choose vi */
  rl_bind_key_in_map(3, cancel_line, emacs_standard_keymap);
  rl_bind_key_in_map(3, cancel_line, vi_insertion_keymap);
  rl_bind_key_in_map(3, cancel_line, vi_movement_keymap);
  cli_complete_open(L);
  cli_history_open();
}

void cli_line_remember(const char *text) {
  if (use_readline) cli_history_add(text);
}

void cli_line_close(void) {
  if (use_readline) cli_history_close();
}

static void on_line(char *line) {
  done_line = line;
  line_done = 1;
  rl_callback_handler_remove();
}

static int read_tty(lua_State *L, const char *prompt) {
  struct sigaction sa, old_int, old_winch;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_read_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: pselect must return */
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGWINCH, &sa, &old_winch);
  /* Signals are only let in during pselect, so none can slip in between a
   * check of the flags and the wait. */
  sigset_t block, saved;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGWINCH);
  sigprocmask(SIG_BLOCK, &block, &saved);
  got_sigint = 0;
  got_sigwinch = 0;
  got_ctrl_c = 0;
  line_done = 0;
  done_line = NULL;
  rl_callback_handler_install(prompt, on_line);
  int rc = CLI_LINE_OK;
  int fd = fileno(rl_instream ? rl_instream : stdin);
  while (!line_done) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    int n = pselect(fd + 1, &fds, NULL, NULL, NULL, &saved);
    if (n > 0) rl_callback_read_char(); /* first: a Ctrl-C key sets got_ctrl_c */
    if (got_sigint || got_ctrl_c) {
      /* Drop the line being edited, leave readline ready for a new one. */
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_cleanup_after_signal();
      rl_callback_handler_remove();
      fputs("\n", rl_outstream ? rl_outstream : stdout);
      rc = CLI_LINE_INTERRUPTED;
      break;
    }
    if (got_sigwinch) {
      got_sigwinch = 0;
      rl_resize_terminal();
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      rl_callback_handler_remove();
      rc = CLI_LINE_EOF;
      break;
    }
  }
  sigprocmask(SIG_SETMASK, &saved, NULL);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGWINCH, &old_winch, NULL);
  if (rc != CLI_LINE_OK) return rc;
  if (done_line == NULL) return CLI_LINE_EOF; /* Ctrl-D on an empty line */
  lua_pushstring(L, done_line);
  free(done_line);
  done_line = NULL;
  return CLI_LINE_OK;
}

/* Plain stdin: prompt on stdout, one line of any length. SIGINT while
 * waiting cancels the line as on a terminal. */
static int read_plain(lua_State *L, const char *prompt) {
  fputs(prompt, stdout);
  fflush(stdout);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_read_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  got_sigint = 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int rc = CLI_LINE_OK, any = 0;
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    if (fgets(p, LUAL_BUFFERSIZE, stdin) == NULL) {
      if (got_sigint) {
        clearerr(stdin);
        fputs("\n", stdout);
        rc = CLI_LINE_INTERRUPTED;
      } else if (!any) {
        rc = CLI_LINE_EOF;
      }
      break;
    }
    size_t n = strlen(p);
    any = 1;
    if (n > 0 && p[n - 1] == '\n') {
      luaL_addsize(&b, n - 1);
      break;
    }
    luaL_addsize(&b, n);
  }
  sigaction(SIGINT, &old, NULL);
  luaL_pushresult(&b);
  if (rc != CLI_LINE_OK) lua_pop(L, 1);
  return rc;
}

int cli_line_read(lua_State *L, const char *prompt) {
  return use_readline ? read_tty(L, prompt) : read_plain(L, prompt);
}
