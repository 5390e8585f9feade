/* corral engine: error codes.
 *
 * Every engine function returns 0 on success or a negative code. Codes are
 * either -errno (a failed system call) or one of the CR_E* codes below, which
 * sit far below any errno value. One X-macro table gives each code its name,
 * the `kind` that the bindings put in error objects, and a message. */
#ifndef CORRAL_ERRORS_H
#define CORRAL_ERRORS_H

#define CR_ERRNO_MAP(XX)                                                      \
  XX(NOMEM,     "MemoryError",   "shared arena exhausted")                    \
  XX(INVAL,     "ValueError",    "invalid argument")                          \
  XX(TIMEDOUT,  "Timeout",       "timed out")                                 \
  XX(OWNERDEAD, "OwnerDied",     "the owner died while holding it")           \
  XX(CLOSED,    "Closed",        "closed")                                    \
  XX(INTR,      "Interrupted",   "interrupted by a signal")                   \
  XX(STATE,     "StateError",    "operation not valid in this state")         \
  XX(NOTOWNER,  "PermissionError", "not the owner")                           \
  XX(BROKEN,    "BrokenBarrier", "barrier is broken")                         \
  XX(FULL,      "Full",          "full")                                      \
  XX(EMPTY,     "Empty",         "empty")                                     \
  XX(OVERFLOW,  "OverflowError", "value out of range")                        \
  XX(CORRUPT,   "CorruptError",  "shared data is corrupt")                    \
  XX(TOOMANY,   "ValueError",    "released more often than acquired")         \
  XX(CONN,      "ConnectionError", "cannot reach the server")                 \
  XX(AUTH,      "AuthError",     "authentication failed")                     \
  XX(REDIS,     "RedisError",    "the Redis server refused the command")

typedef enum {
  CR__EBASE = -5000,
#define XX(name, kind, msg) CR_E##name,
  CR_ERRNO_MAP(XX)
#undef XX
  CR__ELAST
} cr_errno_t;

/* Message for any code (errno-based or CR_E*). Never NULL. */
const char *cr_strerror(int code);
/* Symbolic name ("ENOMEM", "EOWNERDEAD", ...). Never NULL. */
const char *cr_err_name(int code);
/* Error-object kind for the bindings ("Timeout", "OSError" for errno codes). */
const char *cr_err_kind(int code);

#endif
