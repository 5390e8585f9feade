/* corral engine: names, kinds and messages of error codes (see errors.h). */
#define _GNU_SOURCE
#include "corral/errors.h"

#include <errno.h>
#include <string.h>

#define IS_CR(code) ((code) > CR__EBASE && (code) < CR__ELAST)

const char *cr_strerror(int code) {
  switch (code) {
#define XX(name, kind, msg) case CR_E##name: return msg;
    CR_ERRNO_MAP(XX)
#undef XX
    default: break;
  }
  if (code < 0 && code > -4096) return strerror(-code);
  return "unknown error";
}

const char *cr_err_name(int code) {
  switch (code) {
#define XX(name, kind, msg) case CR_E##name: return "E" #name;
    CR_ERRNO_MAP(XX)
#undef XX
    default: break;
  }
#ifdef __GLIBC__
  if (code < 0 && code > -4096) {
    const char *n = strerrorname_np(-code);
    if (n) return n;
  }
#endif
  return "EUNKNOWN";
}

const char *cr_err_kind(int code) {
  if (IS_CR(code)) {
    switch (code) {
#define XX(name, kind, msg) case CR_E##name: return kind;
      CR_ERRNO_MAP(XX)
#undef XX
      default: break;
    }
  }
  if (code == -ENOMEM) return "MemoryError";
  if (code == -ETIMEDOUT) return "Timeout";
  if (code == -EINTR) return "Interrupted";
  return "OSError";
}
