/* corral bindings: the embedding API (corral/embed.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "corral_lua.h"
#include "corral/embed.h"

const char *crL_worker_exe;
static char *worker_path;

const char *corral_version(void) { return CORRAL_VERSION; }
int corral_version_num(void) { return CORRAL_VERSION_NUM; }

void corral_set_worker(const char *path) {
  free(worker_path);
  worker_path = path ? strdup(path) : NULL;
  crL_worker_exe = worker_path;
}

int corral_open(cr_engine_t **out, const corral_options_t *opts) {
  static const corral_options_t defaults;
  if (!opts) opts = &defaults;
  if (opts->flags & CORRAL_NO_SIGNALS) cr_engine_handle_signals(0);
  int rc = cr_engine_open(out, opts->loop, opts->arena_size);
  if (rc < 0) return rc;
  cr_engine_set_default(*out);
  if (opts->worker) corral_set_worker(opts->worker);
  return 0;
}

int corral_openlib(lua_State *L, cr_engine_t *e) {
  if (e) cr_engine_set_default(e);
  luaL_requiref(L, "corral", luaopen_corral, 0);
  return 1;
}

void corral_reap(cr_engine_t *e) { cr_engine_serve(e); }

void corral_pushqueue(lua_State *L, cr_off_t q) { crL_pushhandle(L, CR_OBJ_QUEUE, q); }

int corral_put_string(cr_engine_t *e, cr_off_t q, const char *s, size_t len, double timeout) {
  char head[CRL_STRHEAD_MAX];
  size_t hlen = crL_encode_strhead(len, head);
  return cr_queue_put2(cr_engine_arena(e), q, head, hlen, s, len, timeout);
}

typedef struct {
  cr_arena_t *a;
  char *s;
  size_t len;
} string_sink_t;

/* Copies a lone string out; anything else gives its references back. */
static int take_string(void *ud, const void *data, size_t len) {
  string_sink_t *k = ud;
  size_t n, h = crL_decode_strhead(data, len, &n);
  if (!h) {
    cr_refs_message_dropped(k->a, data, len);
    return CR_EINVAL;
  }
  k->s = malloc(n + 1);
  if (!k->s) return -ENOMEM;
  memcpy(k->s, (const char *)data + h, n);
  k->s[n] = 0;
  k->len = n;
  return 0;
}

int corral_get_string(cr_engine_t *e, cr_off_t q, char **s, size_t *len, double timeout) {
  string_sink_t k = {cr_engine_arena(e), NULL, 0};
  int rc = cr_queue_get(k.a, q, take_string, &k, timeout);
  if (rc < 0) return rc;
  *s = k.s;
  *len = k.len;
  return 0;
}

int corral_close(cr_engine_t *e) {
  if (!e) return 0;
  cr_engine_finish(e);
  cr_engine_close(e);
  corral_set_worker(NULL);
  return 0;
}
