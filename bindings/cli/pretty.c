/* corral executable: rendering values for the REPL.
 *
 * A table is first tried on one line ({ 1, 2, x = 3 }); when that does not
 * fit the width it is broken over lines, one entry per line, nested tables
 * indented, and each nested table is again tried on one line first. Keys:
 * the array part 1..n in order without its keys, then the other keys sorted
 * (numbers, then strings, then booleans, then the rest). A table already on
 * the path being printed shows as <cycle>. Deep nesting, long tables, long
 * strings and the total amount of output are bounded, so printing any value
 * is quick. Values whose metatable has __tostring (error objects, processes,
 * queues) are shown by it. Tables are read raw: printing never runs __index
 * or __pairs. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cli.h"

#define PP_WIDTH 80       /* a one-line table must end before this column */
#define PP_INDENT 2       /* spaces per nesting level */
#define PP_MAX_DEPTH 6    /* tables nested deeper are shown as {...} */
#define PP_MAX_ITEMS 100  /* entries shown per table */
#define PP_MAX_STRING 160 /* bytes shown of a string inside a table */
#define PP_BUDGET 5000    /* entries rendered in all (one-line attempts included) */

#define BUF_MT "corral.cli.pretty"

/* The output; a userdata so that an error while printing frees it. */
typedef struct {
  char *p;
  size_t len, cap;
} ppbuf_t;

typedef struct {
  lua_State *L;
  ppbuf_t *b;
  size_t line_start; /* where the current output line begins in b */
  size_t flat_end;   /* during a one-line attempt: b may not grow past it; else 0 */
  int seen;          /* stack index: tables on the path being printed */
  long budget;
} pp_t;

/* A key other than the array part's, for sorting. */
typedef struct {
  int rank; /* 0 number, 1 string, 2 boolean, 3 other */
  int isint;
  lua_Integer i;
  lua_Number n;
  const char *s; /* string keys (kept alive by the key list) */
  size_t len;
  const char *tname; /* other keys: by type, then identity */
  const void *ptr;
  int pos; /* index in the key list */
} ppkey_t;

static int buf_gc(lua_State *L) {
  ppbuf_t *b = luaL_checkudata(L, 1, BUF_MT);
  free(b->p);
  b->p = NULL;
  return 0;
}

/* Appends n bytes. Returns 0 when a one-line attempt no longer fits (a
 * newline or the width), 1 otherwise. */
static int put(pp_t *P, const char *s, size_t n) {
  ppbuf_t *b = P->b;
  if (P->flat_end && (b->len + n > P->flat_end || memchr(s, '\n', n))) return 0;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) luaL_error(P->L, "not enough memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  const char *nl = memrchr(s, '\n', n);
  b->len += n;
  if (nl) P->line_start = b->len - n + (size_t)(nl - s) + 1;
  return 1;
}

static int puts_(pp_t *P, const char *s) { return put(P, s, strlen(s)); }

static int indent(pp_t *P, int level) {
  static const char spaces[] = "                                ";
  int n = level * PP_INDENT;
  while (n > 0) {
    int k = n < (int)sizeof spaces - 1 ? n : (int)sizeof spaces - 1;
    put(P, spaces, (size_t)k);
    n -= k;
  }
  return 1;
}

/* ---- strings ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (of at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  size_t len;
  unsigned min;
  if (s[0] < 0x80) return 1;
  if ((s[0] & 0xE0) == 0xC0) len = 2, min = 0x80;
  else if ((s[0] & 0xF0) == 0xE0) len = 3, min = 0x800;
  else if ((s[0] & 0xF8) == 0xF0) len = 4, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  unsigned cp = s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

/* A Lua string literal for s; at most max bytes of it, then the full size.
 * Valid UTF-8 is kept as is (readable on a terminal), other bytes escaped. */
static int put_quoted(pp_t *P, const char *s, size_t len, size_t max) {
  const unsigned char *u = (const unsigned char *)s;
  size_t end = len > max ? max : len;
  char tmp[8];
  if (!put(P, "\"", 1)) return 0;
  size_t i = 0;
  while (i < end) {
    size_t run = i;
    while (run < end && u[run] >= 0x20 && u[run] != '"' && u[run] != '\\' && u[run] < 0x7F) run++;
    if (run > i && !put(P, s + i, run - i)) return 0;
    i = run;
    if (i >= end) break;
    unsigned char c = u[i];
    const char *esc = NULL;
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\a': esc = "\\a"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\v': esc = "\\v"; break;
    default: break;
    }
    size_t seq = c >= 0x80 ? utf8_seq(u + i, len - i) : 0;
    if (esc) {
      if (!puts_(P, esc)) return 0;
      i++;
    } else if (seq > 0) {
      if (i + seq > end) { /* do not cut a character: stop before it */
        end = i;
        break;
      }
      if (!put(P, s + i, seq)) return 0;
      i += seq;
    } else {
      snprintf(tmp, sizeof tmp, "\\x%02X", c);
      if (!puts_(P, tmp)) return 0;
      i++;
    }
  }
  if (!put(P, "\"", 1)) return 0;
  if (end < len) {
    char note[64];
    snprintf(note, sizeof note, "... (%zu bytes)", len);
    return puts_(P, note);
  }
  return 1;
}

/* ---- keys --------------------------------------------------------------------- */

static int is_identifier(const char *s, size_t len) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};
  if (len == 0 || strlen(s) != len) return 0;
  if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
  for (size_t i = 1; i < len; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  for (int i = 0; reserved[i]; i++)
    if (strcmp(s, reserved[i]) == 0) return 0;
  return 1;
}

static int cmp_num(const ppkey_t *a, const ppkey_t *b) {
  if (a->isint && b->isint) return (a->i > b->i) - (a->i < b->i);
  lua_Number x = a->isint ? (lua_Number)a->i : a->n;
  lua_Number y = b->isint ? (lua_Number)b->i : b->n;
  return (x > y) - (x < y);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Compares strings with runs of digits taken as numbers, so "k2" comes
 * before "k10"; 0 when they differ only in leading zeros. */
static int cmp_natural(const char *a, size_t la, const char *b, size_t lb) {
  size_t i = 0, j = 0;
  while (i < la && j < lb) {
    if (is_digit(a[i]) && is_digit(b[j])) {
      while (i < la && a[i] == '0') i++;
      while (j < lb && b[j] == '0') j++;
      size_t si = i, sj = j;
      while (i < la && is_digit(a[i])) i++;
      while (j < lb && is_digit(b[j])) j++;
      if (i - si != j - sj) return i - si < j - sj ? -1 : 1;
      int c = memcmp(a + si, b + sj, i - si);
      if (c) return c;
    } else {
      if (a[i] != b[j]) return (unsigned char)a[i] < (unsigned char)b[j] ? -1 : 1;
      i++;
      j++;
    }
  }
  return (i < la) - (j < lb);
}

static int cmp_key(const void *pa, const void *pb) {
  const ppkey_t *a = pa, *b = pb;
  if (a->rank != b->rank) return a->rank - b->rank;
  switch (a->rank) {
  case 0: return cmp_num(a, b);
  case 1: {
    int c = cmp_natural(a->s, a->len, b->s, b->len);
    if (c) return c;
    size_t n = a->len < b->len ? a->len : b->len;
    c = memcmp(a->s, b->s, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
  }
  case 2: return (int)a->i - (int)b->i;
  default: {
    int c = strcmp(a->tname, b->tname);
    if (c) return c;
    return (a->ptr > b->ptr) - (a->ptr < b->ptr);
  }
  }
}

/* The key at idx, followed by " = ". */
static int put_key(pp_t *P, int idx) {
  lua_State *L = P->L;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (is_identifier(s, len)) return put(P, s, len) && puts_(P, " = ");
    return puts_(P, "[") && put_quoted(P, s, len, PP_MAX_STRING) && puts_(P, "] = ");
  }
  size_t len;
  const char *s = luaL_tolstring(L, idx, &len);
  int ok = puts_(P, "[") && put(P, s, len) && puts_(P, "] = ");
  lua_pop(L, 1);
  return ok;
}

/* ---- values ------------------------------------------------------------------- */

static int emit_value(pp_t *P, int idx, int depth);

/* Over several lines, array items that are not tables share a line while
 * it has room: tries ", item" at the end of the current line. Returns 1
 * when it was put there, 0 (nothing added) otherwise. */
static int pack_item(pp_t *P, int idx, lua_Integer i, int depth) {
  lua_State *L = P->L;
  if (i > PP_MAX_ITEMS || P->budget <= 0) return 0;
  size_t start = P->b->len;
  if (lua_rawgeti(L, idx, i - 1) == LUA_TTABLE) { /* the previous item */
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  if (lua_rawgeti(L, idx, i) == LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  P->flat_end = P->line_start + PP_WIDTH;
  int ok = puts_(P, ", ") && emit_value(P, lua_gettop(L), depth + 1);
  P->flat_end = 0;
  lua_pop(L, 1);
  if (!ok) {
    P->b->len = start;
    return 0;
  }
  P->budget--;
  return 1;
}

/* The entries of the table at idx: array part 1..n, then the sorted keys
 * (list at index klist, records in keys). One line when flat. */
static int emit_entries(pp_t *P, int idx, int depth, lua_Integer n, int klist, const ppkey_t *keys,
                        int nkeys, int flat) {
  lua_State *L = P->L;
  lua_Integer total = n + nkeys;
  lua_Integer shown = 0;
  if (!puts_(P, "{")) return 0;
  for (lua_Integer e = 0; e < total; e++) {
    if (!flat && shown > 0 && e < n && pack_item(P, idx, e + 1, depth)) {
      shown++;
      continue;
    }
    if (flat ? !puts_(P, shown ? ", " : " ") : !(puts_(P, shown ? ",\n" : "\n") && indent(P, depth + 1)))
      return 0;
    if (shown == PP_MAX_ITEMS || P->budget <= 0) {
      char note[64];
      snprintf(note, sizeof note, "... (%lld more)", (long long)(total - shown));
      if (!puts_(P, note)) return 0;
      break;
    }
    P->budget--;
    int ok;
    if (e < n) {
      lua_rawgeti(L, idx, e + 1);
      ok = emit_value(P, lua_gettop(L), depth + 1);
    } else {
      lua_rawgeti(L, klist, keys[e - n].pos);
      int k = lua_gettop(L);
      lua_pushvalue(L, k);
      lua_rawget(L, idx);
      ok = put_key(P, k) && emit_value(P, k + 1, depth + 1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!ok) return 0;
    shown++;
  }
  if (flat) return puts_(P, " }");
  return puts_(P, "\n") && indent(P, depth) && puts_(P, "}");
}

static int emit_table(pp_t *P, int idx, int depth) {
  lua_State *L = P->L;
  int top = lua_gettop(L);
  luaL_checkstack(L, 10, "table too deep to print");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, P->seen) != LUA_TNIL) {
    lua_settop(L, top);
    return puts_(P, "<cycle>");
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  if (!lua_next(L, idx)) return puts_(P, "{}");
  lua_settop(L, top);
  if (depth >= PP_MAX_DEPTH || P->budget <= 0) return puts_(P, "{...}");

  /* the array part: 1..n without holes */
  lua_Integer n = 0;
  while (lua_rawgeti(L, idx, n + 1) != LUA_TNIL) {
    lua_pop(L, 1);
    n++;
  }
  lua_pop(L, 1);
  /* the other keys, counted, listed, then sorted */
  int nkeys = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n) continue;
    nkeys++;
  }
  lua_createtable(L, nkeys, 0);
  int klist = lua_gettop(L);
  ppkey_t *keys = lua_newuserdatauv(L, (size_t)nkeys * sizeof *keys + 1, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) && k < nkeys) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n) continue;
    ppkey_t *r = &keys[k];
    memset(r, 0, sizeof *r);
    r->pos = ++k;
    lua_pushvalue(L, -1);
    lua_rawseti(L, klist, r->pos);
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      r->rank = 0;
      r->isint = lua_isinteger(L, -1);
      if (r->isint) r->i = lua_tointeger(L, -1);
      else r->n = lua_tonumber(L, -1);
      break;
    case LUA_TSTRING:
      r->rank = 1;
      r->s = lua_tolstring(L, -1, &r->len);
      break;
    case LUA_TBOOLEAN:
      r->rank = 2;
      r->i = lua_toboolean(L, -1);
      break;
    default:
      r->rank = 3;
      r->tname = luaL_typename(L, -1);
      r->ptr = lua_topointer(L, -1);
      break;
    }
  }
  lua_settop(L, klist + 1);
  nkeys = k;
  qsort(keys, (size_t)nkeys, sizeof *keys, cmp_key);

  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, P->seen);
  int ok;
  if (P->flat_end) { /* inside a one-line attempt: stay on one line */
    ok = emit_entries(P, idx, depth, n, klist, keys, nkeys, 1);
  } else {
    size_t start = P->b->len;
    long budget = P->budget;
    P->flat_end = P->line_start + PP_WIDTH;
    ok = P->flat_end > start && emit_entries(P, idx, depth, n, klist, keys, nkeys, 1);
    P->flat_end = 0;
    if (!ok) { /* did not fit: start again over several lines */
      P->b->len = start;
      P->budget = budget;
      ok = emit_entries(P, idx, depth, n, klist, keys, nkeys, 0);
    }
  }
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, P->seen);
  lua_settop(L, top);
  return ok;
}

static int emit_value(pp_t *P, int idx, int depth) {
  lua_State *L = P->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_quoted(P, s, len, depth > 0 ? PP_MAX_STRING : len);
  }
  case LUA_TTABLE:
    if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL) return emit_table(P, idx, depth);
    lua_pop(L, 1);
    /* fall through: shown by its __tostring */
  default: {
    size_t len;
    const char *s = luaL_tolstring(L, idx, &len);
    int ok = put(P, s, len);
    lua_pop(L, 1);
    return ok;
  }
  }
}

void cli_pretty(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 10, "no room to print");
  ppbuf_t *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, BUF_MT)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_newtable(L);
  pp_t P;
  memset(&P, 0, sizeof P);
  P.L = L;
  P.b = b;
  P.seen = lua_gettop(L);
  P.budget = PP_BUDGET;
  emit_value(&P, idx, 0);
  lua_pop(L, 1); /* seen */
  lua_pushlstring(L, b->p ? b->p : "", b->len);
  free(b->p); /* now, rather than when the box is collected */
  b->p = NULL;
  lua_remove(L, -2);
}
