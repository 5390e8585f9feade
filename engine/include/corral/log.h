/* corral engine: the logger.
 *
 * Lines on stderr, as Python's multiprocessing.log_to_stderr gives them:
 *   [16:03:20.123 INFO/MainProcess 4242] Process-1 (pid 4243) exited with exitcode 0
 * local time, level, this process's name and pid, then the message. Each
 * line is one write(2), so lines of several processes never mix. Off by
 * default (level CR_LOG_OFF); a forked child keeps its parent's level, a
 * spawned one is given it by the bindings.
 *
 * Callers test cr_log_enabled(level) before building a message, so a
 * logger that is off costs one comparison. */
#ifndef CORRAL_LOG_H
#define CORRAL_LOG_H

#include <stddef.h>

/* Python's numbers, so that either spelling works. */
#define CR_LOG_DEBUG 10
#define CR_LOG_INFO 20
#define CR_LOG_WARNING 30
#define CR_LOG_ERROR 40
#define CR_LOG_OFF 1000

extern int cr__log_level;
#define cr_log_enabled(level) ((level) >= cr__log_level)

/* Lines of `level` and above are written from now on (CR_LOG_OFF: none). */
void cr_log_set_level(int level);
int cr_log_level(void);
/* This process's name in the prefix (copied, at most 63 bytes). */
void cr_log_set_name(const char *name);
const char *cr_log_name(void);
/* "DEBUG", "INFO", "WARNING", "ERROR", or "LEVEL<n>". */
const char *cr_log_level_name(int level);

/* Writes one line (a newline is added) if level is enabled. */
void cr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a message of len bytes (a Lua string). */
void cr_log_write(int level, const char *msg, size_t len);

#endif
