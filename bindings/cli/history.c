/* corral executable: the REPL's history.
 *
 * The history file is $CORRAL_HISTORY, else ~/.corral_history (none when
 * neither is set). Every statement is appended as soon as it is typed, so a
 * REPL left by os.exit or a crash keeps it; at a normal exit the file is cut
 * to the last HISTORY_MAX entries. Entries carry timestamps, which is how
 * readline keeps a multi-line statement one entry when the file is read
 * back. Used only when lines come from readline (a terminal). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>

#include "cli.h"

#define HISTORY_MAX 1000

static char *history_path;

void cli_history_open(void) {
  const char *env = getenv("CORRAL_HISTORY");
  if (env && *env) {
    history_path = strdup(env);
  } else {
    const char *home = getenv("HOME");
    if (!home || !*home) return; /* no place for a history: none kept */
    size_t n = strlen(home) + sizeof "/.corral_history";
    history_path = malloc(n);
    if (history_path) snprintf(history_path, n, "%s/.corral_history", home);
  }
  if (!history_path) return;
  history_comment_char = '#';
  history_write_timestamps = 1;
  history_multiline_entries = 1;
  using_history();
  stifle_history(HISTORY_MAX);
  if (read_history(history_path) != 0) {
    /* append_history needs the file to exist */
    int fd = open(history_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) close(fd);
  }
}

void cli_history_add(const char *text) {
  if (!text[0]) return;
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, text) == 0) return; /* no runs of one entry */
  add_history(text);
  if (history_path) append_history(1, history_path);
}

void cli_history_close(void) {
  if (history_path) history_truncate_file(history_path, HISTORY_MAX);
  free(history_path);
  history_path = NULL;
}
