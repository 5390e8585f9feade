/* Lua companion modules compiled into the module (tools/embed_lua.cmake). */
#ifndef CORRAL_EMBEDDED_H
#define CORRAL_EMBEDDED_H
#include <stddef.h>
typedef struct {
  const char *modname;   /* "corral" or "corral.NAME" */
  const char *chunkname; /* "=corral/NAME.lua" */
  const char *src;
  size_t len;
} crL_embedded_t;
extern const crL_embedded_t crL_embedded[];
#endif
