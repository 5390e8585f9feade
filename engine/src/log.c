/* corral engine: the logger (see corral/log.h). */
#define _GNU_SOURCE
#include "corral/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* longer messages are cut */

int cr__log_level = CR_LOG_OFF;
static char proc_name[64] = "MainProcess";

void cr_log_set_level(int level) { cr__log_level = level; }
int cr_log_level(void) { return cr__log_level; }
const char *cr_log_name(void) { return proc_name; }

void cr_log_set_name(const char *name) { snprintf(proc_name, sizeof proc_name, "%s", name); }

const char *cr_log_level_name(int level) {
  static char other[16];
  switch (level) {
  case CR_LOG_DEBUG: return "DEBUG";
  case CR_LOG_INFO: return "INFO";
  case CR_LOG_WARNING: return "WARNING";
  case CR_LOG_ERROR: return "ERROR";
  default: snprintf(other, sizeof other, "LEVEL%d", level); return other;
  }
}

/* The prefix "[HH:MM:SS.mmm LEVEL/name pid] " into out; its length. */
static int prefix(char *out, size_t cap, int level) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  int n = snprintf(out, cap, "[%02d:%02d:%02d.%03d %s/%s %d] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), cr_log_level_name(level), proc_name, (int)getpid());
  return n < 0 ? 0 : (n >= (int)cap ? (int)cap - 1 : n);
}

static void emit(char *line, size_t n) {
  line[n++] = '\n';
  const char *p = line;
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

void cr_log_write(int level, const char *msg, size_t len) {
  if (!cr_log_enabled(level)) return;
  char line[LINE_MAX_BYTES + 1];
  size_t n = (size_t)prefix(line, LINE_MAX_BYTES, level);
  if (len > LINE_MAX_BYTES - n) len = LINE_MAX_BYTES - n;
  memcpy(line + n, msg, len);
  emit(line, n + len);
}

void cr_log(int level, const char *fmt, ...) {
  if (!cr_log_enabled(level)) return;
  char line[LINE_MAX_BYTES + 1];
  size_t n = (size_t)prefix(line, LINE_MAX_BYTES, level);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, LINE_MAX_BYTES - n, fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  if ((size_t)m > LINE_MAX_BYTES - n - 1) m = (int)(LINE_MAX_BYTES - n - 1);
  emit(line, n + (size_t)m);
}
