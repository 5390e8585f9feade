/* corral bindings: the value codec.
 *
 * Turns one Lua value into bytes and back, for messages between processes of
 * one engine (queues, pipes, spawn payloads) and, with functions disabled,
 * for data from anywhere.
 *
 * Format, version 1. A message is
 *
 *   MAGIC VERSION [HANDLES n (kind off)*n] value
 *
 * and a value is one tag byte followed by its payload:
 *
 *   0x00 nil   0x01 false   0x02 true
 *   0x80+n     integer 0..127            0x20+n  integer -1-n (-1..-32)
 *   0x03 INT   zigzag varint             0x04 FLOAT64  8 bytes, little endian
 *   0x05 FLOAT32  4 bytes (a float that a float32 holds exactly)
 *   0x40+n     string of n < 32 bytes    0x06 STR  varint length, bytes
 *   0x07 TABLE / 0x08 TABLE_MT  narr nhash, narr values (nil for holes),
 *              nhash key/value pairs, then (TABLE_MT) the metatable value
 *   0x09 REF n        the n-th object of this message (0-based)
 *   0x0a LFUNC        u32 length, lua_dump bytes, nups byte, nups upvalues;
 *                     an upvalue is a value or UPJOIN
 *   0x0b UPJOIN f i   this upvalue is upvalue i of object f (shared)
 *   0x0c NAMED        varint length, "mod" or "mod\0key": package.loaded
 *   0x0d REGMT        varint length, name: registry[name], a table whose
 *                     __name is that name (luaL_newmetatable)
 *   0x0e GLOBALS      the receiver's globals table
 *   0x0f HANDLE n     the n-th entry of the handle section (0-based)
 *   0x11 GLOBALS_SET n (name value)*n
 *                     the receiver's globals table, after each name it
 *                     does not have (rawget is nil) is set to its value:
 *                     the globals that a function of the sender's main
 *                     chunk or REPL names (see "carried globals" below)
 *
 * Varints are unsigned LEB128. "Objects" (what REF counts) are, in order of
 * first appearance: tables, Lua functions, NAMED and REGMT values and handles,
 * so a value met twice is sent once and arrives as one value (shared
 * references and cycles). A message that names corral handles holds one
 * reference to each object, taken when it is encoded and adopted by the
 * handle that decoding makes; crL_codec_each_handle lists them without
 * decoding (the Manager, which keeps messages stored, takes and drops
 * references of its own). */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral_lua.h"

#define CODEC_MAGIC    0xCB
#define CODEC_VERSION  1
#define CODEC_MAXDEPTH 1000 /* nested tables and functions, both ways */

enum {
  T_NIL = 0x00,
  T_FALSE,
  T_TRUE,
  T_INT,
  T_FLOAT64,
  T_FLOAT32,
  T_STR,
  T_TABLE,
  T_TABLE_MT,
  T_REF,
  T_LFUNC,
  T_UPJOIN,
  T_NAMED,
  T_REGMT,
  T_GLOBALS,
  T_HANDLE,
  T_HANDLES,
  T_GLOBALS_SET,
  T_NEGINT = 0x20,   /* 0x20..0x3f */
  T_SHORTSTR = 0x40, /* 0x40..0x5f */
  T_FIXINT = 0x80    /* 0x80..0xff */
};

#define BUF_MT   "corral.CodecBuffer"
/* registry: the last name index {index=, modules=, count=} (see names_get) */
#define NAMES_KEY "corral.codec_names"
/* Module name under which the core table's fields are named: it cannot be
 * required, so no real module can take it. */
#define CORE_NAME "corral:core"

#define ENC_NO_HANDLES 1
#define ENC_CHECK_ONLY 2 /* only find what cannot be encoded: no references taken */

/* ---- the output buffer --------------------------------------------------------
 * A userdata that owns the bytes: an inline area for small messages, then
 * malloc'd memory that __gc frees, so nothing leaks when encoding raises. */

#define BUF_INLINE 200

typedef struct {
  unsigned char *p;
  size_t len, cap;
  int finalizable; /* has BUF_MT (and so a __gc): only once it may malloc */
  unsigned char inl[BUF_INLINE];
} cbuf_t;

static int buf_gc(lua_State *L) {
  cbuf_t *b = luaL_testudata(L, 1, BUF_MT);
  if (b && b->p != b->inl) {
    free(b->p);
    b->p = b->inl;
    b->cap = BUF_INLINE;
    b->len = 0;
  }
  return 0;
}

/* ---- encoding -------------------------------------------------------------------- */

typedef struct {
  lua_State *L;
  cbuf_t *b;
  int flags;
  int depth;
  lua_Integer nrefs;    /* objects numbered so far */
  lua_Integer nhandles; /* entries of the handle section */
  /* Stack slots (absolute indices), nil until first needed. */
  int names_fresh; /* the name index was built for this message */
  int seen;    /* object -> its number */
  int names;   /* value -> "mod" or "mod\0key" (reverse package.loaded) */
  int upvals;  /* upvalue id -> number * 256 + index of the closure that has it */
  int handles; /* array of the handle userdata, in section order */
  int globals; /* the sender's globals table */
  int err;     /* on failure: {msg=, [1..n] = path segments, innermost first} */
  int nseg;
  int bufslot; /* stack slot of the buffer userdata */
  int ncarried; /* globals carried so far (GLOBALS_SET) */
} enc_t;

static int enc_nomem(enc_t *e) { return crL_error(e->L, "MemoryError", "encode: not enough memory"); }

/* Makes room for n more bytes; 0 or -1 (nothing changed) when memory runs out. */
static int buf_reserve(cbuf_t *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  size_t need = b->len + n;
  if (need < b->len) return -1;
  size_t cap = b->cap;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) return -1;
    cap *= 2;
  }
  unsigned char *np;
  if (b->p == b->inl) {
    np = malloc(cap);
    if (np) memcpy(np, b->inl, b->len);
  } else {
    np = realloc(b->p, cap);
  }
  if (!np) return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

/* A buffer gets its finalizer (a metatable with __gc) only when it is about
 * to leave its inline bytes for malloc'd memory: a userdata with a finalizer
 * costs the garbage collector several times more, and most messages fit
 * inline. */
static void enc_finalizable(enc_t *e) {
  if (e->b->finalizable) return;
  lua_pushvalue(e->L, e->bufslot);
  luaL_setmetatable(e->L, BUF_MT);
  lua_pop(e->L, 1);
  e->b->finalizable = 1;
}

/* Makes room for n more bytes or raises a MemoryError. */
static void enc_reserve(enc_t *e, size_t n) {
  if (e->b->cap - e->b->len >= n) return;
  enc_finalizable(e);
  if (buf_reserve(e->b, n) < 0) enc_nomem(e);
}

static inline void put_bytes(enc_t *e, const void *p, size_t n) {
  enc_reserve(e, n);
  memcpy(e->b->p + e->b->len, p, n);
  e->b->len += n;
}

static inline void put_byte(enc_t *e, unsigned c) {
  if (e->b->len == e->b->cap) enc_reserve(e, 1);
  e->b->p[e->b->len++] = (unsigned char)c;
}

static int varint_size(uint64_t v) {
  int n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static int varint_write(unsigned char *out, uint64_t v) {
  int n = 0;
  while (v >= 0x80) {
    out[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (unsigned char)v;
  return n;
}

static void put_varint(enc_t *e, uint64_t v) {
  enc_reserve(e, 10);
  e->b->len += (size_t)varint_write(e->b->p + e->b->len, v);
}

/* Writes v as a varint at pos, where one byte was reserved, moving what
 * follows when v needs more than one. */
static void patch_varint(enc_t *e, size_t pos, uint64_t v) {
  cbuf_t *b = e->b;
  int n = varint_size(v);
  if (n > 1) {
    enc_reserve(e, (size_t)n - 1);
    memmove(b->p + pos + n, b->p + pos + 1, b->len - pos - 1);
    b->len += (size_t)n - 1;
  }
  varint_write(b->p + pos, v);
}

static void put_u32_at(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_str(enc_t *e, const char *s, size_t n) {
  if (n < 32) {
    put_byte(e, T_SHORTSTR + (unsigned)n);
  } else {
    put_byte(e, T_STR);
    put_varint(e, n);
  }
  put_bytes(e, s, n);
}

static void put_int(enc_t *e, lua_Integer i) {
  if (i >= 0 && i < 128) {
    put_byte(e, T_FIXINT + (unsigned)i);
  } else if (i < 0 && i >= -32) {
    put_byte(e, T_NEGINT + (unsigned)(-1 - i));
  } else {
    uint64_t u = (uint64_t)i;
    put_byte(e, T_INT);
    put_varint(e, (u << 1) ^ (i < 0 ? UINT64_MAX : 0));
  }
}

static void put_float(enc_t *e, lua_Number d) {
  unsigned char out[9];
  if (!isnan(d) && (isinf(d) || fabs(d) <= FLT_MAX)) {
    float f = (float)d;
    if ((lua_Number)f == d) {
      uint32_t u;
      memcpy(&u, &f, 4);
      out[0] = T_FLOAT32;
      put_u32_at(out + 1, u);
      put_bytes(e, out, 5);
      return;
    }
  }
  double dd = (double)d;
  uint64_t u;
  memcpy(&u, &dd, 8);
  out[0] = T_FLOAT64;
  for (int i = 0; i < 8; i++) out[1 + i] = (unsigned char)(u >> (8 * i));
  put_bytes(e, out, 9);
}

/* ---- error paths ----
 * The failing spot records the message; every frame on the way out adds its
 * path segment. Success costs nothing. */

static int enc_fail(enc_t *e, const char *fmt, ...) {
  lua_State *L = e->L;
  lua_createtable(L, 8, 1);
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "msg");
  lua_replace(L, e->err);
  e->nseg = 0;
  return -1;
}

static int enc_seg(enc_t *e, const char *fmt, ...) {
  lua_State *L = e->L;
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_rawseti(L, e->err, ++e->nseg);
  return -1;
}

static int is_identifier(const char *s, size_t n) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};
  if (n == 0 || n > 64) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return 0;
  }
  for (int i = 0; reserved[i]; i++)
    if (strlen(reserved[i]) == n && memcmp(reserved[i], s, n) == 0) return 0;
  return 1;
}

/* Quotes up to 40 bytes of s for a message: "..." with escapes. */
static const char *quote(char *out, size_t outsz, const char *s, size_t n) {
  size_t j = 0;
  out[j++] = '"';
  for (size_t i = 0; i < n && j + 8 < outsz; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 40) {
      memcpy(out + j, "...", 3);
      j += 3;
      break;
    }
    if (c == '"' || c == '\\') {
      out[j++] = '\\';
      out[j++] = (char)c;
    } else if (c < 32 || c >= 127) {
      j += (size_t)snprintf(out + j, outsz - j, "\\%u", c);
    } else {
      out[j++] = (char)c;
    }
  }
  out[j++] = '"';
  out[j] = 0;
  return out;
}

static const char *type_noun(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TTHREAD: return "coroutine";
  case LUA_TLIGHTUSERDATA: return "light userdata";
  case LUA_TFUNCTION: return lua_iscfunction(L, idx) ? "C function" : "function";
  default: return luaL_typename(L, idx);
  }
}

/* Adds the segment for the value under the key at k. */
static int enc_keyseg(enc_t *e, int k) {
  lua_State *L = e->L;
  switch (lua_type(L, k)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, k, &n);
    if (is_identifier(s, n)) return enc_seg(e, ".%s", s);
    char q[200];
    return enc_seg(e, "[%s]", quote(q, sizeof q, s, n));
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, k)) return enc_seg(e, "[%I]", (LUAI_UACINT)lua_tointeger(L, k));
    return enc_seg(e, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, k));
  case LUA_TBOOLEAN: return enc_seg(e, lua_toboolean(L, k) ? "[true]" : "[false]");
  default: return enc_seg(e, "[<%s key>]", type_noun(L, k));
  }
}

/* Raises the EncodeError: "root.path: message". Long paths keep their ends. */
static int enc_raise(enc_t *e, const char *root) {
  lua_State *L = e->L;
  luaL_Buffer bf;
  luaL_buffinit(L, &bf);
  luaL_addstring(&bf, root);
  for (int i = e->nseg; i >= 1; i--) {
    if (e->nseg > 24 && i == e->nseg - 10) {
      lua_pushfstring(L, "...(%d more)...", e->nseg - 21);
      luaL_addvalue(&bf);
      i = 11;
    }
    lua_rawgeti(L, e->err, i);
    luaL_addvalue(&bf);
  }
  luaL_pushresult(&bf);
  lua_getfield(L, e->err, "msg");
  return crL_error(L, "EncodeError", "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
}

/* ---- object numbering and names ---- */

/* When the object at idx was met before in this message, writes a REF to it
 * and returns 1; else returns 0. */
static int enc_seen(enc_t *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->seen)) return 0;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) != LUA_TNUMBER) {
    lua_pop(L, 1);
    return 0;
  }
  lua_Integer id = lua_tointeger(L, -1);
  lua_pop(L, 1);
  put_byte(e, T_REF);
  put_varint(e, (uint64_t)id);
  return 1;
}

/* Gives the object at idx the next number; returns it. */
static lua_Integer enc_register(enc_t *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->seen)) {
    lua_newtable(L);
    lua_replace(L, e->seen);
  }
  lua_pushvalue(L, idx);
  lua_pushinteger(L, e->nrefs);
  lua_rawset(L, e->seen);
  return e->nrefs++;
}

/* names[v] = name, unless v already has one. The name is on top; popped. */
static void name_add(lua_State *L, int names, int v) {
  lua_pushvalue(L, v);
  if (lua_rawget(L, names) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushvalue(L, v);
    lua_rotate(L, -2, 1);
    lua_rawset(L, names);
  } else {
    lua_pop(L, 2);
  }
}

static int nameable(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TTABLE || t == LUA_TFUNCTION || t == LUA_TUSERDATA;
}

/* Names every field v of the table at mod (string keys only) as
 * "modname\0key"; from _G (onlyc) only C functions. */
static void names_add_fields(enc_t *e, int mod, const char *modname, int onlyc) {
  lua_State *L = e->L;
  lua_pushnil(L);
  while (lua_next(L, mod)) {
    int v = lua_gettop(L);
    if (lua_type(L, v - 1) == LUA_TSTRING && nameable(L, v) && (!onlyc || lua_iscfunction(L, v))) {
      lua_pushstring(L, modname);
      lua_pushlstring(L, "\0", 1);
      lua_pushvalue(L, v - 1);
      lua_concat(L, 3);
      name_add(L, e->names, v);
    }
    lua_pop(L, 1);
  }
}

/* Builds the reverse index of package.loaded into e->names and caches it
 * in the registry with the modules it was built from. A name is "mod" for
 * a loaded module, or "mod\0key" for package.loaded[mod][key]; the core
 * table's fields go under CORE_NAME; from _G only C functions, never the
 * user's Lua globals (a spawned child does not run the parent's script, so
 * it would not have them). Module names come before field names. */
static void names_build(enc_t *e) {
  lua_State *L = e->L;
  luaL_checkstack(L, 10, "encode");
  lua_createtable(L, 0, 3); /* the cache */
  lua_createtable(L, 0, 256);
  lua_pushvalue(L, -1);
  lua_replace(L, e->names);
  lua_setfield(L, -2, "index");
  lua_createtable(L, 0, 32);
  int mods = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int loaded = lua_gettop(L);
  lua_Integer count = 0;
  if (lua_istable(L, loaded)) {
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      count++;
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, mods);
      if (lua_type(L, -2) == LUA_TSTRING && nameable(L, -1) && strcmp(lua_tostring(L, -2), "_G") != 0 &&
          strlen(lua_tostring(L, -2)) == lua_rawlen(L, -2)) {
        lua_pushvalue(L, -2);
        name_add(L, e->names, lua_gettop(L) - 1);
      }
      lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, loaded)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1) && strcmp(lua_tostring(L, -2), "_G") != 0 &&
          strlen(lua_tostring(L, -2)) == lua_rawlen(L, -2))
        names_add_fields(e, lua_gettop(L), lua_tostring(L, -2), 0);
      lua_pop(L, 1);
    }
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY) == LUA_TTABLE)
    names_add_fields(e, lua_gettop(L), CORE_NAME, 0);
  lua_pop(L, 1);
  if (lua_istable(L, loaded)) {
    if (lua_getfield(L, loaded, "_G") == LUA_TTABLE) names_add_fields(e, lua_gettop(L), "_G", 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, "modules");
  lua_pushinteger(L, count);
  lua_setfield(L, -2, "count");
  lua_setfield(L, LUA_REGISTRYINDEX, NAMES_KEY);
  e->names_fresh = 1;
}

/* True when package.loaded holds exactly the modules the cache on top was
 * built from (same names, same values). */
static int names_cache_valid(lua_State *L) {
  int cache = lua_gettop(L);
  lua_getfield(L, cache, "count");
  lua_Integer count = lua_tointeger(L, -1);
  lua_getfield(L, cache, "modules");
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int mods = cache + 2, loaded = cache + 3;
  if (!lua_istable(L, mods) || !lua_istable(L, loaded)) {
    lua_settop(L, cache);
    return 0;
  }
  lua_Integer n = 0;
  int ok = 1;
  lua_pushnil(L);
  while (ok && lua_next(L, loaded)) {
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, mods);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_settop(L, cache);
  return ok && n == count;
}

/* Puts the name index in e->names: the cached one while package.loaded
 * holds the same modules (and !force), else a new one. */
static void names_get(enc_t *e, int force) {
  lua_State *L = e->L;
  luaL_checkstack(L, 8, "encode");
  if (!force && lua_getfield(L, LUA_REGISTRYINDEX, NAMES_KEY) == LUA_TTABLE && names_cache_valid(L)) {
    lua_getfield(L, -1, "index");
    lua_replace(L, e->names);
    lua_pop(L, 1);
    e->names_fresh = 0;
    return;
  }
  if (!force) lua_pop(L, 1);
  names_build(e);
}

/* True when the name (on top) still names the value at idx: a module's
 * fields may have changed since the cached index was built. */
static int name_resolves(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  const char *z = memchr(s, 0, n);
  size_t modlen = z ? (size_t)(z - s) : n;
  if (modlen == strlen(CORE_NAME) && memcmp(s, CORE_NAME, modlen) == 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
  } else {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_pushlstring(L, s, modlen);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  if (z) {
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_pushlstring(L, z + 1, n - modlen - 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  int ok = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  return ok;
}

/* When the value at idx has a name, writes it as NAMED, numbers it and
 * returns 1; else returns 0. A cached index is rebuilt when a name it
 * gives no longer holds, or when it has none for a value that cannot go
 * any other way (a C function, a userdata). */
static int enc_named(enc_t *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->names)) names_get(e, 0);
  for (;;) {
    lua_pushvalue(L, idx);
    int found = lua_rawget(L, e->names) == LUA_TSTRING;
    if (found && (e->names_fresh || name_resolves(L, idx))) break;
    lua_pop(L, 1);
    if (e->names_fresh || (!found && lua_type(L, idx) != LUA_TUSERDATA && !lua_iscfunction(L, idx))) return 0;
    names_get(e, 1);
  }
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  put_byte(e, T_NAMED);
  put_varint(e, n);
  put_bytes(e, s, n);
  lua_pop(L, 1);
  enc_register(e, idx);
  return 1;
}

/* ---- values ---- */

static int enc_value(enc_t *e, int idx, int byname);

/* A table registered under its own __name (luaL_newmetatable) goes by that
 * name: writes REGMT, numbers it and returns 1; else returns 0. */
static int enc_regname(enc_t *e, int idx) {
  lua_State *L = e->L;
  lua_pushliteral(L, "__name");
  if (lua_rawget(L, idx) != LUA_TSTRING) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, -1);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_rawequal(L, -1, idx)) {
    lua_pop(L, 2);
    return 0;
  }
  size_t n;
  const char *s = lua_tolstring(L, -2, &n);
  put_byte(e, T_REGMT);
  put_varint(e, n);
  put_bytes(e, s, n);
  lua_pop(L, 2);
  enc_register(e, idx);
  return 1;
}

/* A table: the globals table by tag; a table met before by REF; a
 * registered metatable by its registry name; a table with a metatable (or
 * an upvalue or a metatable: byname) by its package.loaded name if it has
 * one; else by value. */
static int enc_table(enc_t *e, int idx, int byname) {
  lua_State *L = e->L;
  if (lua_rawequal(L, idx, e->globals)) {
    put_byte(e, T_GLOBALS);
    return 0;
  }
  if (enc_seen(e, idx)) return 0;
  luaL_checkstack(L, 8, "encode");
  if (enc_regname(e, idx)) return 0;
  int has_mt = lua_getmetatable(L, idx);
  if ((has_mt || byname) && enc_named(e, idx)) {
    lua_pop(L, has_mt);
    return 0;
  }
  if (++e->depth > CODEC_MAXDEPTH)
    return enc_fail(e, "cannot encode: nested more than %d levels deep", CODEC_MAXDEPTH);
  enc_register(e, idx);
  put_byte(e, has_mt ? T_TABLE_MT : T_TABLE);
  /* One pass of lua_next, which gives the array part first and in order:
   * the values of keys 1, 2, 3... up to the first break in that run make
   * the array section; every other entry goes as a key-value pair. The
   * counts are patched in at the end (pairs first: they come after). */
  size_t apos = e->b->len;
  put_byte(e, 0); /* narr */
  put_byte(e, 0); /* nhash */
  lua_Integer narr = 0;
  uint64_t nh = 0;
  int in_array = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int v = lua_gettop(L);
    if (in_array && lua_isinteger(L, v - 1) && lua_tointeger(L, v - 1) == narr + 1) {
      if (enc_value(e, v, 0)) return enc_seg(e, "[%I]", (LUAI_UACINT)(narr + 1));
      narr++;
    } else {
      in_array = 0;
      if (enc_value(e, v - 1, 0)) return enc_seg(e, "<key>");
      if (enc_value(e, v, 0)) return enc_keyseg(e, v - 1);
      nh++;
    }
    lua_pop(L, 1);
  }
  patch_varint(e, apos + 1, nh);
  patch_varint(e, apos, (uint64_t)narr);
  if (has_mt) {
    if (enc_value(e, lua_gettop(L), 1)) return enc_seg(e, "<metatable>");
    lua_pop(L, 1);
  }
  e->depth--;
  return 0;
}

/* Writes t[i..j] (t at idx) as an array table that exists only in the
 * message: what packing a copy of that stretch would write, without the copy. */
static int enc_slice(enc_t *e, int idx, lua_Integer i, lua_Integer j) {
  lua_State *L = e->L;
  luaL_checkstack(L, 8, "encode");
  e->nrefs++; /* the receiver numbers the table it makes */
  e->depth++;
  put_byte(e, T_TABLE);
  put_varint(e, j >= i ? (uint64_t)(j - i + 1) : 0);
  put_byte(e, 0); /* no pairs */
  for (lua_Integer k = i; k <= j; k++) {
    if (lua_rawgeti(L, idx, k) == LUA_TNUMBER && lua_isinteger(L, -1)) /* the common item */
      put_int(e, lua_tointeger(L, -1));
    else if (enc_value(e, lua_gettop(L), 0))
      return enc_seg(e, "[%I]", (LUAI_UACINT)k);
    lua_pop(L, 1);
  }
  e->depth--;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  cbuf_t *b = ud;
  (void)L;
  if (buf_reserve(b, n) < 0) return 1;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

/* ---- carried globals ---------------------------------------------------------------
 * As cloudpickle does for __main__, a function defined in the main chunk
 * (the script that lua or corral runs: source "@" .. arg[0]), by -e or at
 * the REPL carries the globals it names (GETTABUP on its _ENV, in its own
 * bytecode and in the functions defined inside it) that hold functions or
 * plain data: the receiver may not have them (a spawned child never ran the
 * script; a worker forked before the REPL defined them). Values that the
 * receiver has by name (library tables and functions) and values that
 * cannot travel (a coroutine, a file) stay behind; the receiver keeps any
 * global it already has. At most MAX_CARRIED per message: past that the
 * encoding fails with an EncodeError that says what to do. Functions of
 * modules carry nothing: a module sets up its own globals where it is
 * loaded. */

#define MAX_CARRIED 256
#define OP_GETUPVAL_54 9 /* lopcodes.h, Lua 5.4 */
#define OP_GETTABUP_54 11

typedef struct {
  const unsigned char *p, *end;
} rd_t;

static int rd_byte(rd_t *r, unsigned *v) {
  if (r->p >= r->end) return -1;
  *v = *r->p++;
  return 0;
}

/* ldump.c's dumpSize: 7-bit groups, most significant first, the last one
 * with the high bit set. */
static int rd_size(rd_t *r, size_t *v) {
  size_t x = 0;
  unsigned b;
  do {
    if (rd_byte(r, &b) < 0 || x > (SIZE_MAX >> 7)) return -1;
    x = (x << 7) | (b & 0x7f);
  } while (!(b & 0x80));
  *v = x;
  return 0;
}

static int rd_skip(rd_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  r->p += n;
  return 0;
}

/* A dumped string: *s NULL for none. */
static int rd_string(rd_t *r, const char **s, size_t *n) {
  size_t sz;
  if (rd_size(r, &sz) < 0) return -1;
  *s = NULL;
  *n = 0;
  if (sz == 0) return 0;
  *s = (const char *)r->p;
  *n = sz - 1;
  return rd_skip(r, sz - 1);
}

/* Reads one dumped function (ldump.c's dumpFunction, Lua 5.4) and adds to
 * the table at `names` each name that it or a function inside it reads
 * from its _ENV upvalue: the key of each GETTABUP on _ENV; when _ENV is
 * also read whole (GETUPVAL: a function with more than 255 constants, whose
 * later keys do not fit GETTABUP, or `local e = _ENV`), every string
 * constant of the function. -1 when the bytes are not as expected. */
static int scan_function(lua_State *L, rd_t *r, int names, int depth) {
  const char *s;
  size_t n, ncode, nk, k;
  unsigned b;
  if (depth > CODEC_MAXDEPTH || !lua_checkstack(L, 4)) return -1;
  if (rd_string(r, &s, &n) < 0 || rd_size(r, &n) < 0 || rd_size(r, &n) < 0 || rd_skip(r, 3) < 0) return -1;
  if (rd_size(r, &ncode) < 0 || ncode > (size_t)(r->end - r->p) / 4) return -1;
  const unsigned char *code = r->p;
  r->p += 4 * ncode;
  if (rd_size(r, &nk) < 0 || nk > (size_t)(r->end - r->p)) return -1;
  lua_createtable(L, (int)nk, 0); /* constant index + 1 -> string */
  int ks = lua_gettop(L);
  for (k = 0; k < nk; k++) {
    if (rd_byte(r, &b) < 0) return -1;
    if (b == 3 || b == 19) { /* LUA_VNUMINT, LUA_VNUMFLT */
      if (rd_skip(r, 8) < 0) return -1;
    } else if (b == 4 || b == 20) { /* LUA_VSHRSTR, LUA_VLNGSTR */
      if (rd_string(r, &s, &n) < 0) return -1;
      if (s) {
        lua_pushlstring(L, s, n);
        lua_rawseti(L, ks, (lua_Integer)k + 1);
      }
    } else if (b != 0 && b != 1 && b != 17) { /* nil, false, true */
      return -1;
    }
  }
  if (rd_size(r, &n) < 0 || n > 255 || rd_skip(r, 3 * n) < 0) return -1; /* upvalue descriptions */
  if (rd_size(r, &n) < 0) return -1;
  for (k = 0; k < n; k++)
    if (scan_function(L, r, names, depth + 1) < 0) return -1;
  size_t m, i;
  if (rd_size(r, &m) < 0 || rd_skip(r, m) < 0) return -1; /* lineinfo */
  if (rd_size(r, &m) < 0) return -1;
  for (i = 0; i < m; i++)
    if (rd_size(r, &n) < 0 || rd_size(r, &n) < 0) return -1; /* abslineinfo */
  if (rd_size(r, &m) < 0) return -1;
  for (i = 0; i < m; i++) /* local variables */
    if (rd_string(r, &s, &n) < 0 || rd_size(r, &n) < 0 || rd_size(r, &n) < 0) return -1;
  if (rd_size(r, &m) < 0) return -1;
  int env = -1;
  for (i = 0; i < m; i++) { /* upvalue names */
    if (rd_string(r, &s, &n) < 0) return -1;
    if (s && n == 4 && memcmp(s, "_ENV", 4) == 0) env = (int)i;
  }
  int whole = 0;
  for (k = 0; env >= 0 && k < ncode; k++) {
    uint32_t ins;
    memcpy(&ins, code + 4 * k, 4);
    unsigned op = ins & 0x7f;
    if (op == OP_GETUPVAL_54 && (int)((ins >> 16) & 0xff) == env) whole = 1;
    if (op == OP_GETTABUP_54 && (int)((ins >> 16) & 0xff) == env) {
      if (lua_rawgeti(L, ks, (lua_Integer)(ins >> 24) + 1) == LUA_TSTRING) {
        lua_pushboolean(L, 1);
        lua_rawset(L, names);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  for (k = 1; whole && k <= nk; k++) {
    if (lua_rawgeti(L, ks, (lua_Integer)k) == LUA_TSTRING) {
      lua_pushboolean(L, 1);
      lua_rawset(L, names);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1); /* ks */
  return 0;
}

/* Pushes the set of global names that the dumped function p[0..n) reads,
 * or nil when its bytes are not Lua 5.4's dump format. */
static void scan_globals(lua_State *L, const unsigned char *p, size_t n) {
  lua_newtable(L);
  int names = lua_gettop(L);
  /* the header (ldump.c's dumpHeader): 31 bytes, 4-byte instructions,
   * 8-byte integers and floats; then the main function's upvalue count */
  rd_t r = {p, p + n};
  if (n < 32 || memcmp(p, LUA_SIGNATURE, 4) != 0 || p[12] != 4 || p[13] != 8 || p[14] != 8) {
    lua_pushnil(L);
    lua_replace(L, names);
    return;
  }
  r.p += 32;
  int top = lua_gettop(L);
  if (scan_function(L, &r, names, 0) < 0) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_replace(L, names);
  }
}

/* Whether the Lua function at idx was defined in the main chunk: the
 * script lua or corral runs ("@" .. arg[0]), -e, or the REPL. */
static int main_chunk_function(enc_t *e, int idx) {
  lua_State *L = e->L;
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  const char *src = ar.source;
  if (strcmp(src, "=stdin") == 0 || strcmp(src, "=(command line)") == 0) return 1;
  if (src[0] != '@') return 0;
  int top = lua_gettop(L), main = 0;
  if (lua_getfield(L, e->globals, "arg") == LUA_TTABLE && lua_rawgeti(L, -1, 0) == LUA_TSTRING)
    main = strcmp(src + 1, lua_tostring(L, -1)) == 0;
  lua_settop(L, top);
  return main;
}

/* _check's body: encodes the value at 1 without references (raises). */
static int check_body(lua_State *L);

/* Whether the value at idx is one to carry: not nil, not one the receiver
 * has by name, and encodable. */
static int carriable(enc_t *e, int idx) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || lua_rawequal(L, idx, e->globals)) return 0;
  if (t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING) return 1;
  if (lua_isnil(L, e->names)) names_get(e, 0);
  lua_pushvalue(L, idx);
  int named = lua_rawget(L, e->names) == LUA_TSTRING && name_resolves(L, idx);
  lua_pop(L, 1);
  if (named) return 0;
  lua_pushcfunction(L, check_body);
  lua_pushvalue(L, idx);
  int ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
  if (!ok) lua_pop(L, 1);
  return ok;
}

/* Writes the _ENV upvalue (the globals table) of the function at fidx,
 * whose names set (scan_globals) is at `names` (0: none): GLOBALS, or
 * GLOBALS_SET with the globals it carries. */
static int enc_env(enc_t *e, int names) {
  lua_State *L = e->L;
  if (!names) {
    put_byte(e, T_GLOBALS);
    return 0;
  }
  luaL_checkstack(L, 8, "encode");
  lua_newtable(L); /* the names to carry, in order */
  int keep = lua_gettop(L);
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, names)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawget(L, e->globals);
    if (carriable(e, lua_gettop(L))) {
      lua_pushvalue(L, -2);
      lua_rawseti(L, keep, ++n);
    }
    lua_pop(L, 1);
  }
  if (n == 0) {
    lua_pop(L, 1);
    put_byte(e, T_GLOBALS);
    return 0;
  }
  e->ncarried += (int)n;
  if (e->ncarried > MAX_CARRIED)
    return enc_fail(e, "cannot carry more than %d globals of functions defined in the main chunk or at the REPL "
                       "(pass them as arguments, or make them locals of the function's chunk)", MAX_CARRIED);
  put_byte(e, T_GLOBALS_SET);
  put_varint(e, (uint64_t)n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, keep, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    put_str(e, s, len);
    lua_rawget(L, e->globals);
    if (enc_value(e, lua_gettop(L), 1)) {
      lua_rawgeti(L, keep, i);
      return enc_seg(e, "<global '%s'>", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* A function: met before by REF; with a package.loaded name by name (a C
 * function has to have one); a Lua function by bytecode (debug info kept)
 * and its upvalues, an upvalue shared with a closure sent earlier in the
 * message as UPJOIN. */
static int enc_function(enc_t *e, int idx) {
  lua_State *L = e->L;
  if (enc_seen(e, idx)) return 0;
  if (enc_named(e, idx)) return 0;
  if (lua_iscfunction(L, idx))
    return enc_fail(e, "cannot encode a C function that has no name in package.loaded");
  if (++e->depth > CODEC_MAXDEPTH)
    return enc_fail(e, "cannot encode: nested more than %d levels deep", CODEC_MAXDEPTH);
  luaL_checkstack(L, 8, "encode");
  lua_Integer ref = enc_register(e, idx);
  put_byte(e, T_LFUNC);
  size_t lpos = e->b->len;
  put_bytes(e, "\0\0\0\0", 4);
  enc_finalizable(e); /* the writer below may malloc */
  lua_pushvalue(L, idx);
  int rc = lua_dump(L, dump_writer, e->b, 0);
  lua_pop(L, 1);
  if (rc) enc_nomem(e);
  size_t n = e->b->len - lpos - 4;
  if (n > UINT32_MAX) return enc_fail(e, "cannot encode a function this large");
  put_u32_at(e->b->p + lpos, (uint32_t)n);
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  int nups = ar.nups;
  put_byte(e, (unsigned)nups);
  if (nups == 0) {
    e->depth--;
    return 0;
  }
  /* the globals it may carry: read from its bytecode, still in the buffer
   * (at lpos + 4, wherever the buffer is now) */
  int carry = 0;
  if (!(e->flags & ENC_CHECK_ONLY) && main_chunk_function(e, idx)) {
    scan_globals(L, e->b->p + lpos + 4, n);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else carry = lua_gettop(L);
  }
  if (lua_isnil(L, e->upvals)) {
    lua_newtable(L);
    lua_replace(L, e->upvals);
  }
  /* Claim this closure's upvalues first, so that a closure met inside one
   * of them can join them. */
  for (int i = 1; i <= nups; i++) {
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    if (lua_rawget(L, e->upvals) == LUA_TNIL) {
      lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
      lua_pushinteger(L, ref * 256 + i);
      lua_rawset(L, e->upvals);
    }
    lua_pop(L, 1);
  }
  for (int i = 1; i <= nups; i++) {
    if (carry) { /* its own _ENV, never joined: it carries its own globals */
      const char *uname = lua_getupvalue(L, idx, i);
      int env = uname && strcmp(uname, "_ENV") == 0 && lua_rawequal(L, -1, e->globals);
      lua_pop(L, 1);
      if (env) {
        if (enc_env(e, carry)) return enc_seg(e, "<upvalue '_ENV'>");
        continue;
      }
    }
    lua_pushlightuserdata(L, lua_upvalueid(L, idx, i));
    lua_rawget(L, e->upvals);
    lua_Integer owner = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (owner != ref * 256 + i) {
      put_byte(e, T_UPJOIN);
      put_varint(e, (uint64_t)(owner / 256));
      put_byte(e, (unsigned)(owner % 256));
      continue;
    }
    const char *name = lua_getupvalue(L, idx, i);
    /* A function's global environment is the receiver's globals, whatever
     * table it was in the sender (a sandbox or a test runner's environment
     * included): the receiver does not have the sender's. */
    if (name && strcmp(name, "_ENV") == 0 && lua_istable(L, -1)) {
      put_byte(e, T_GLOBALS);
      lua_pop(L, 1);
      continue;
    }
    if (enc_value(e, lua_gettop(L), 1)) {
      if (name && *name && strcmp(name, "(no name)") != 0) return enc_seg(e, "<upvalue '%s'>", name);
      return enc_seg(e, "<upvalue %d>", i);
    }
    lua_pop(L, 1);
  }
  if (carry) lua_remove(L, carry);
  e->depth--;
  return 0;
}

/* A userdata: a corral handle goes in the handle section; another userdata
 * only by its package.loaded name (io.stdout). */
static int enc_userdata(enc_t *e, int idx) {
  lua_State *L = e->L;
  crL_handle_t *h = crL_tohandle(L, idx);
  if (h) {
    const char *tname = cr_obj_kind_name((cr_obj_kind_t)h->kind);
    if (e->flags & ENC_NO_HANDLES)
      return enc_fail(e, "cannot encode a %s handle here: handles travel only inside corral messages "
                         "(queues, pipes, process arguments)", tname);
    if (h->off == 0) return enc_fail(e, "cannot encode a closed %s", tname);
    if (enc_seen(e, idx)) return 0;
    enc_register(e, idx);
    if (lua_isnil(L, e->handles)) {
      lua_newtable(L);
      lua_replace(L, e->handles);
    }
    lua_pushvalue(L, idx);
    lua_rawseti(L, e->handles, e->nhandles + 1);
    put_byte(e, T_HANDLE);
    put_varint(e, (uint64_t)e->nhandles++);
    return 0;
  }
  if (enc_seen(e, idx) || enc_named(e, idx)) return 0;
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
    const char *tn = lua_tostring(L, -1);
    return enc_fail(e, "cannot encode a userdata (%s)", tn);
  }
  return enc_fail(e, "cannot encode a userdata");
}

/* Writes the value at idx (absolute). byname: a table is looked up in
 * package.loaded even without a metatable (upvalues: library tables).
 * Returns 0, or -1 after recording the failure in e->err. */
static int enc_value(enc_t *e, int idx, int byname) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put_byte(e, T_NIL); return 0;
  case LUA_TBOOLEAN: put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) put_int(e, lua_tointeger(L, idx));
    else put_float(e, lua_tonumber(L, idx));
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_str(e, s, n);
    return 0;
  }
  case LUA_TTABLE: return enc_table(e, idx, byname);
  case LUA_TFUNCTION: return enc_function(e, idx);
  case LUA_TUSERDATA: return enc_userdata(e, idx);
  default: return enc_fail(e, "cannot encode a %s", type_noun(L, idx));
  }
}

/* Puts the handle section after the header and takes the message's
 * reference on each object. */
static void enc_handles(enc_t *e) {
  lua_State *L = e->L;
  cbuf_t *b = e->b;
  size_t sz = 1 + 10 + (size_t)e->nhandles * 20;
  unsigned char *sec = lua_newuserdatauv(L, sz, 0);
  size_t n = 0;
  sec[n++] = T_HANDLES;
  n += (size_t)varint_write(sec + n, (uint64_t)e->nhandles);
  for (lua_Integer i = 1; i <= e->nhandles; i++) {
    lua_rawgeti(L, e->handles, i);
    crL_handle_t *h = lua_touserdata(L, -1);
    if (h->off == 0) /* closed by a finalizer while we encoded */
      crL_error(L, "EncodeError", "encode: a %s handle was closed while it was being encoded",
                cr_obj_kind_name((cr_obj_kind_t)h->kind));
    n += (size_t)varint_write(sec + n, h->kind);
    n += (size_t)varint_write(sec + n, h->off);
    lua_pop(L, 1);
  }
  enc_reserve(e, n);
  memmove(b->p + 2 + n, b->p + 2, b->len - 2);
  memcpy(b->p + 2, sec, n);
  b->len += n;
  lua_pop(L, 1);
  cr_arena_t *a = cr_engine_arena(crL_engine(L));
  for (lua_Integer i = 1; i <= e->nhandles; i++) {
    lua_rawgeti(L, e->handles, i);
    cr_obj_retain(a, ((crL_handle_t *)lua_touserdata(L, -1))->off);
    lua_pop(L, 1);
  }
}

/* The message of a lone scalar (nil, boolean, number, a string of at most
 * BUF_INLINE - 16 bytes) in b's inline bytes, which those sizes never
 * outgrow: nothing is allocated. */
static void encode_inline(lua_State *L, int idx, cbuf_t *b) {
  b->p = b->inl;
  b->cap = BUF_INLINE;
  b->finalizable = 1;
  b->inl[0] = CODEC_MAGIC;
  b->inl[1] = CODEC_VERSION;
  b->len = 2;
  enc_t e;
  memset(&e, 0, sizeof e);
  e.L = L;
  e.b = b;
  enc_value(&e, idx, 0);
}

/* The fast path for a lone scalar (nil, boolean, number, a short string),
 * the most common message: no tables of the general path, one exact-size
 * userdata. Returns NULL, with nothing pushed, for anything else. */
static const char *encode_scalar(lua_State *L, int idx, size_t *len) {
  int t = lua_type(L, idx);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER &&
      !(t == LUA_TSTRING && lua_rawlen(L, idx) <= BUF_INLINE - 16))
    return NULL;
  cbuf_t b;
  encode_inline(L, idx, &b);
  unsigned char *out = lua_newuserdatauv(L, b.len, 0);
  memcpy(out, b.inl, b.len);
  *len = b.len;
  return (const char *)out;
}

/* Encodes the value at idx or, with a slice {i, j}, the array idx[i..j]. */
static const char *encode_part(lua_State *L, int idx, const lua_Integer *slice, const char *root, size_t *len,
                               int flags) {
  idx = lua_absindex(L, idx);
  const char *fast = slice ? NULL : encode_scalar(L, idx, len);
  if (fast) return fast;
  luaL_checkstack(L, 16, "encode");
  int base = lua_gettop(L);
  cbuf_t *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = b->inl;
  b->len = 0;
  b->cap = BUF_INLINE;
  b->finalizable = 0;
  enc_t e;
  memset(&e, 0, sizeof e);
  e.L = L;
  e.b = b;
  e.bufslot = base + 1;
  e.flags = flags;
  e.seen = base + 2;
  e.names = base + 3;
  e.upvals = base + 4;
  e.handles = base + 5;
  e.err = base + 6;
  e.globals = base + 7;
  for (int i = 0; i < 5; i++) lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  b->p[0] = CODEC_MAGIC;
  b->p[1] = CODEC_VERSION;
  b->len = 2;
  if (slice ? enc_slice(&e, idx, slice[0], slice[1]) : enc_value(&e, idx, 0)) enc_raise(&e, root ? root : "value");
  if (e.nhandles && !(flags & ENC_CHECK_ONLY)) enc_handles(&e);
  lua_settop(L, base + 1);
  *len = b->len;
  return (const char *)b->p;
}

static const char *encode(lua_State *L, int idx, const char *root, size_t *len, int flags) {
  return encode_part(L, idx, NULL, root, len, flags);
}

size_t crL_encode_strhead(size_t n, char out[CRL_STRHEAD_MAX]) {
  unsigned char *o = (unsigned char *)out;
  o[0] = CODEC_MAGIC;
  o[1] = CODEC_VERSION;
  if (n < 32) {
    o[2] = (unsigned char)(T_SHORTSTR + n);
    return 3;
  }
  o[2] = T_STR;
  return 3 + (size_t)varint_write(o + 3, (uint64_t)n);
}

size_t crL_decode_strhead(const char *p, size_t len, size_t *n) {
  const unsigned char *q = (const unsigned char *)p;
  if (len < 3 || q[0] != CODEC_MAGIC || q[1] != CODEC_VERSION) return 0;
  if (q[2] >= T_SHORTSTR && q[2] < T_SHORTSTR + 32) {
    *n = (size_t)(q[2] - T_SHORTSTR);
    return 3 + *n == len ? 3 : 0;
  }
  if (q[2] != T_STR) return 0;
  uint64_t v = 0;
  size_t i = 3;
  for (int shift = 0; i < len && shift < 64; shift += 7) {
    v |= (uint64_t)(q[i] & 0x7f) << shift;
    if (!(q[i++] & 0x80)) {
      if (v != len - i) return 0;
      *n = (size_t)v;
      return i;
    }
  }
  return 0;
}

const char *crL_encode(lua_State *L, int idx, const char *root, size_t *len) {
  return encode(L, idx, root, len, 0);
}

/* ---- keys ------------------------------------------------------------------------- */

/* (idx is read before anything is pushed.) */
int crL_encode_key(lua_State *L, int idx, crL_key_t *k) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    size_t h = crL_encode_strhead(n, k->buf);
    if (n <= sizeof k->buf - h) {
      memcpy(k->buf + h, s, n);
      k->p = k->buf;
      k->len = h + n;
      return 0;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, k->buf, h);
    luaL_addlstring(&b, s, n);
    luaL_pushresult(&b);
    k->p = lua_tolstring(L, -1, &k->len);
    return 0;
  }
  case LUA_TNUMBER:
  case LUA_TBOOLEAN: {
    cbuf_t b;
    lua_Number d = lua_tonumber(L, idx);
    lua_Integer i;
    if (lua_type(L, idx) == LUA_TBOOLEAN || lua_isinteger(L, idx)) {
      encode_inline(L, idx, &b);
    } else if (isnan(d)) {
      return CRL_KEY_NAN;
    } else if (lua_numbertointeger(d, &i) && (lua_Number)i == d) {
      lua_pushinteger(L, i); /* 1.0 is the key 1, as in a Lua table */
      encode_inline(L, lua_gettop(L), &b);
      lua_pop(L, 1);
    } else {
      encode_inline(L, idx, &b);
    }
    memcpy(k->buf, b.inl, b.len);
    k->p = k->buf;
    k->len = b.len;
    return 0;
  }
  default: return CRL_KEY_TYPE;
  }
}

/* ---- decoding ------------------------------------------------------------------------ */

typedef struct {
  lua_State *L;
  const unsigned char *start, *p, *end;
  int flags;
  int depth;
  int refs;    /* stack slot: array of the objects, nil until the first */
  int handles; /* stack slot: array of the adopted handles */
  lua_Integer nrefs, nhandles;
} dec_t;

static int dec_fail(dec_t *d, const char *fmt, ...) {
  lua_State *L = d->L;
  va_list ap;
  va_start(ap, fmt);
  const char *msg = lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return crL_error(L, "DecodeError", "decode: %s (at byte %I)", msg, (LUAI_UACINT)(d->p - d->start));
}

static size_t dec_left(dec_t *d) { return (size_t)(d->end - d->p); }

static unsigned dec_byte(dec_t *d) {
  if (d->p >= d->end) dec_fail(d, "truncated message");
  return *d->p++;
}

#define VARINT_TRUNCATED -1
#define VARINT_OVERFLOW  -2

/* Reads a varint at *p, not past end, advancing *p over what it reads.
 * 0 with the value in *v; VARINT_TRUNCATED when the input ends inside it
 * (*p == end); VARINT_OVERFLOW when it does not fit 64 bits (*p just
 * after the byte that overflows). Never raises. */
static inline int varint_read(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0;; shift += 7) {
    if (*p >= end) return VARINT_TRUNCATED;
    unsigned c = *(*p)++;
    if (shift == 63 && c > 1) return VARINT_OVERFLOW;
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 0;
    }
  }
}

static uint64_t dec_varint(dec_t *d) {
  uint64_t v = 0;
  int rc = varint_read(&d->p, d->end, &v);
  if (rc == VARINT_TRUNCATED) dec_fail(d, "truncated message");
  if (rc == VARINT_OVERFLOW) dec_fail(d, "varint overflows 64 bits");
  return v;
}

/* A count of items that take at least `unit` bytes each: it cannot exceed
 * what is left of the input. */
static size_t dec_count(dec_t *d, size_t unit, const char *what) {
  uint64_t n = dec_varint(d);
  if (n > dec_left(d) / unit) dec_fail(d, "%s count %I exceeds the message", what, (LUAI_UACINT)n);
  return (size_t)n;
}

static const char *dec_bytes(dec_t *d, size_t n) {
  if (n > dec_left(d)) dec_fail(d, "truncated message");
  const char *s = (const char *)d->p;
  d->p += n;
  return s;
}

static void dec_checkstack(dec_t *d, int n) {
  if (!lua_checkstack(d->L, n)) dec_fail(d, "Lua stack exhausted");
}

/* Numbers the value on top as the next object. */
static void dec_register(dec_t *d) {
  lua_State *L = d->L;
  if (lua_isnil(L, d->refs)) {
    lua_newtable(L);
    lua_replace(L, d->refs);
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->refs, ++d->nrefs);
}

static void dec_value(dec_t *d);

/* Reads narr values of an array section into t[at], t[at+1], ... */
static void dec_array(dec_t *d, int t, lua_Integer at, size_t narr) {
  lua_State *L = d->L;
  for (size_t i = 0; i < narr; i++) {
    dec_value(d);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_rawseti(L, t, at + (lua_Integer)i);
  }
}

static void dec_table(dec_t *d, int with_mt) {
  lua_State *L = d->L;
  if (++d->depth > CODEC_MAXDEPTH) dec_fail(d, "nested more than %d levels deep", CODEC_MAXDEPTH);
  dec_checkstack(d, 6);
  size_t narr = dec_count(d, 1, "array");
  size_t nh = dec_count(d, 2, "field");
  if (narr + 2 * nh > dec_left(d)) dec_fail(d, "table sizes exceed the message");
  /* Size hints only; a table grows past them as needed. */
  lua_createtable(L, narr > (1u << 20) ? 1 << 20 : (int)narr, nh > (1u << 20) ? 1 << 20 : (int)nh);
  int t = lua_gettop(L);
  dec_register(d);
  dec_array(d, t, 1, narr);
  for (size_t i = 0; i < nh; i++) {
    dec_value(d);
    if (lua_isnil(L, -1)) dec_fail(d, "table key is nil");
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) && isnan(lua_tonumber(L, -1)))
      dec_fail(d, "table key is NaN");
    dec_value(d);
    lua_rawset(L, t);
  }
  if (with_mt) {
    dec_value(d);
    if (!lua_istable(L, -1)) dec_fail(d, "metatable is a %s, not a table", luaL_typename(L, -1));
    lua_setmetatable(L, t);
  }
  d->depth--;
}

typedef struct {
  const char *p;
  size_t n;
} reader_t;

/* Gives lua_load the whole chunk at once, then the end. */
static const char *chunk_reader(lua_State *L, void *ud, size_t *size) {
  reader_t *r = ud;
  (void)L;
  *size = r->n;
  if (r->n == 0) return NULL;
  r->n = 0;
  return r->p;
}

/* Counts the upvalues of the Lua function at f (at most 255). */
static int count_upvalues(lua_State *L, int f) {
  int n = 0;
  while (n < 256 && lua_getupvalue(L, f, n + 1)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

static void dec_function(dec_t *d) {
  lua_State *L = d->L;
  if (d->flags & CRL_DECODE_NO_FUNCTIONS)
    dec_fail(d, "functions are refused here (data from outside the engine is decoded without them)");
  if (++d->depth > CODEC_MAXDEPTH) dec_fail(d, "nested more than %d levels deep", CODEC_MAXDEPTH);
  dec_checkstack(d, 6);
  const unsigned char *lp = (const unsigned char *)dec_bytes(d, 4);
  size_t n = (size_t)lp[0] | (size_t)lp[1] << 8 | (size_t)lp[2] << 16 | (size_t)lp[3] << 24;
  reader_t r = {dec_bytes(d, n), n};
  if (lua_load(L, chunk_reader, &r, "=(corral message)", "b") != LUA_OK)
    dec_fail(d, "bad function: %s", lua_tostring(L, -1));
  int f = lua_gettop(L);
  lua_Integer ref = d->nrefs + 1;
  dec_register(d);
  int nups = count_upvalues(L, f);
  if ((int)dec_byte(d) != nups) dec_fail(d, "function upvalue count does not match its bytecode");
  for (int i = 1; i <= nups; i++) {
    if (d->p < d->end && *d->p == T_UPJOIN) {
      d->p++;
      uint64_t id = dec_varint(d);
      int j = (int)dec_byte(d);
      if (id >= (uint64_t)ref - 1) dec_fail(d, "upvalue link to object %I, not an earlier function", (LUAI_UACINT)id);
      lua_rawgeti(L, d->refs, (lua_Integer)id + 1);
      if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1) || j < 1 || j > count_upvalues(L, lua_gettop(L)))
        dec_fail(d, "upvalue link to something that is not an upvalue of a Lua function");
      lua_upvaluejoin(L, f, i, -1, j);
      lua_pop(L, 1);
    } else {
      dec_value(d);
      lua_setupvalue(L, f, i);
    }
  }
  d->depth--;
}

/* NAMED: "mod" or "mod\0key", looked up in the receiver. Without functions
 * (outside data) only tables of modules already loaded are accepted: no
 * require, so data never loads code. */
static void dec_named(dec_t *d) {
  lua_State *L = d->L;
  dec_checkstack(d, 6);
  size_t n = dec_count(d, 1, "name length");
  const char *s = dec_bytes(d, n);
  const char *z = memchr(s, 0, n);
  size_t modlen = z ? (size_t)(z - s) : n;
  int trusted = !(d->flags & CRL_DECODE_NO_FUNCTIONS);
  char q[200];
  if (modlen == strlen(CORE_NAME) && memcmp(s, CORE_NAME, modlen) == 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
  } else {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushlstring(L, s, modlen);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1) && trusted && modlen > 0) {
      lua_pop(L, 1);
      lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
      lua_getfield(L, -1, "require");
      lua_remove(L, -2);
      lua_pushlstring(L, s, modlen);
      if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        dec_fail(d, "cannot load module %s named in the message: %s", quote(q, sizeof q, s, modlen),
                 luaL_tolstring(L, -1, NULL));
    }
    lua_remove(L, -2);
  }
  if (lua_isnil(L, -1)) dec_fail(d, "unknown module %s", quote(q, sizeof q, s, modlen));
  if (z) {
    if (!lua_istable(L, -1)) dec_fail(d, "module %s is not a table", quote(q, sizeof q, s, modlen));
    lua_pushlstring(L, z + 1, n - modlen - 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) {
      char q2[200];
      dec_fail(d, "unknown name %s in module %s", quote(q2, sizeof q2, z + 1, n - modlen - 1),
               quote(q, sizeof q, s, modlen));
    }
  }
  if (!trusted && !lua_istable(L, -1))
    dec_fail(d, "name %s is a %s: only tables are accepted here", quote(q, sizeof q, s, n), luaL_typename(L, -1));
  dec_register(d);
}

static void dec_regmt(dec_t *d) {
  lua_State *L = d->L;
  size_t n = dec_count(d, 1, "name length");
  const char *s = dec_bytes(d, n);
  lua_pushlstring(L, s, n);
  if (lua_rawget(L, LUA_REGISTRYINDEX) != LUA_TTABLE) {
    char q[200];
    dec_fail(d, "unknown metatable %s", quote(q, sizeof q, s, n));
  }
  dec_register(d);
}

/* GLOBALS_SET: the receiver's globals, each carried name it lacks set. */
static void dec_globals_set(dec_t *d) {
  lua_State *L = d->L;
  if (d->flags & CRL_DECODE_NO_FUNCTIONS) dec_fail(d, "globals are refused here (they come only with functions)");
  dec_checkstack(d, 4);
  size_t n = dec_count(d, 2, "global");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  int g = lua_gettop(L);
  for (size_t i = 0; i < n; i++) {
    dec_value(d);
    if (lua_type(L, -1) != LUA_TSTRING) dec_fail(d, "a carried global's name is not a string");
    dec_value(d);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, g) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_rawset(L, g);
    } else {
      lua_pop(L, 3);
    }
  }
}

/* Reads one value and pushes it. */
static void dec_value(dec_t *d) {
  lua_State *L = d->L;
  unsigned t = dec_byte(d);
  if (t >= T_FIXINT) {
    lua_pushinteger(L, (lua_Integer)(t - T_FIXINT));
    return;
  }
  if (t >= T_SHORTSTR && t < T_SHORTSTR + 32) {
    size_t n = t - T_SHORTSTR;
    lua_pushlstring(L, dec_bytes(d, n), n);
    return;
  }
  if (t >= T_NEGINT && t < T_NEGINT + 32) {
    lua_pushinteger(L, -1 - (lua_Integer)(t - T_NEGINT));
    return;
  }
  switch (t) {
  case T_NIL: lua_pushnil(L); return;
  case T_FALSE: lua_pushboolean(L, 0); return;
  case T_TRUE: lua_pushboolean(L, 1); return;
  case T_INT: {
    uint64_t z = dec_varint(d);
    lua_pushinteger(L, (lua_Integer)((z >> 1) ^ (0 - (z & 1))));
    return;
  }
  case T_FLOAT32: {
    const unsigned char *b = (const unsigned char *)dec_bytes(d, 4);
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    lua_pushnumber(L, (lua_Number)f);
    return;
  }
  case T_FLOAT64: {
    const unsigned char *b = (const unsigned char *)dec_bytes(d, 8);
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = u << 8 | b[i];
    double f;
    memcpy(&f, &u, 8);
    lua_pushnumber(L, (lua_Number)f);
    return;
  }
  case T_STR: {
    size_t n = dec_count(d, 1, "string length");
    lua_pushlstring(L, dec_bytes(d, n), n);
    return;
  }
  case T_TABLE: dec_table(d, 0); return;
  case T_TABLE_MT: dec_table(d, 1); return;
  case T_REF: {
    uint64_t id = dec_varint(d);
    if (id >= (uint64_t)d->nrefs) dec_fail(d, "reference to object %I, not yet seen", (LUAI_UACINT)id);
    lua_rawgeti(L, d->refs, (lua_Integer)id + 1);
    return;
  }
  case T_LFUNC: dec_function(d); return;
  case T_NAMED: dec_named(d); return;
  case T_REGMT: dec_regmt(d); return;
  case T_GLOBALS: lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS); return;
  case T_GLOBALS_SET: dec_globals_set(d); return;
  case T_HANDLE: {
    uint64_t i = dec_varint(d);
    if (i >= (uint64_t)d->nhandles) dec_fail(d, "handle %I not in the handle section", (LUAI_UACINT)i);
    lua_rawgeti(L, d->handles, (lua_Integer)i + 1);
    dec_register(d);
    return;
  }
  default: dec_fail(d, "unknown tag %d", (int)t);
  }
}

/* Checks the header and adopts the handle section, if any. */
static void dec_start(dec_t *d) {
  lua_State *L = d->L;
  if (dec_left(d) < 2 || d->p[0] != CODEC_MAGIC) dec_fail(d, "not a corral message");
  if (d->p[1] != CODEC_VERSION) dec_fail(d, "unsupported message version %d", (int)d->p[1]);
  d->p += 2;
  if (d->p < d->end && *d->p == T_HANDLES) {
    if (d->flags & CRL_DECODE_NO_HANDLES) dec_fail(d, "corral handles are refused here");
    d->p++;
    size_t n = dec_count(d, 2, "handle");
    lua_createtable(L, n > (1u << 16) ? 1 << 16 : (int)n, 0);
    lua_replace(L, d->handles);
    for (size_t i = 0; i < n; i++) {
      uint64_t kind = dec_varint(d);
      uint64_t off = dec_varint(d);
      if (kind >= CR_OBJ__MAX || (d->flags & CRL_DECODE_OWN_REFS ? crL_pushhandle_copy : crL_pushhandle_adopt)(
                                     L, (cr_obj_kind_t)kind, (cr_off_t)off) < 0)
        dec_fail(d, "handle %d names no live shared object", (int)i);
      lua_rawseti(L, d->handles, (lua_Integer)i + 1);
      d->nhandles++;
    }
  }
}

static void dec_init(dec_t *d, lua_State *L, const char *p, size_t len, int flags) {
  memset(d, 0, sizeof *d);
  d->L = L;
  d->start = d->p = (const unsigned char *)p;
  d->end = d->p + len;
  d->flags = flags;
  if (!lua_checkstack(L, 8)) crL_error(L, "DecodeError", "decode: Lua stack exhausted");
  d->refs = lua_gettop(L) + 1;
  d->handles = d->refs + 1;
  lua_pushnil(L);
  lua_pushnil(L);
}

void crL_decode(lua_State *L, const char *p, size_t len, int flags) {
  dec_t d;
  dec_init(&d, L, p, len, flags);
  dec_start(&d);
  dec_value(&d);
  if (d.p != d.end) dec_fail(&d, "%I bytes after the value", (LUAI_UACINT)(d.end - d.p));
  lua_replace(L, d.refs);
  lua_settop(L, d.refs);
}

/* An array message (positive integer keys only, no metatable) into the
 * table at dest instead of a new table; a nil item leaves dest as it was. An array with holes has pairs after
 * its array section. The array is numbered as dest, so a reference to it
 * from inside (which a packed array of results never holds) is dest. */
void crL_decode_into(lua_State *L, const char *p, size_t len, int flags, int dest, lua_Integer at) {
  dest = lua_absindex(L, dest);
  dec_t d;
  dec_init(&d, L, p, len, flags);
  dec_start(&d);
  if (dec_left(&d) < 1 || *d.p != T_TABLE) dec_fail(&d, "not an array");
  d.p++;
  d.depth++;
  size_t narr = dec_count(&d, 1, "array");
  size_t nh = dec_count(&d, 2, "field");
  lua_pushvalue(L, dest);
  dec_register(&d); /* leaves dest on the stack */
  lua_pop(L, 1);
  dec_array(&d, dest, at, narr);
  for (size_t i = 0; i < nh; i++) {
    dec_value(&d);
    lua_Integer k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
    if (k < 1 || k > LUA_MAXINTEGER - at) dec_fail(&d, "not an array: it has a key that is not a position");
    lua_pop(L, 1);
    dec_value(&d);
    lua_rawseti(L, dest, at + k - 1);
  }
  if (d.p != d.end) dec_fail(&d, "%I bytes after the value", (LUAI_UACINT)(d.end - d.p));
  lua_settop(L, d.refs - 1);
}

/* crL_each_handle_fn: gives back a message's reference on one object
 * (checked first: only an object of that kind that is alive). */
static void drop_one(void *ud, uint32_t kind, cr_off_t off) {
  cr_arena_t *a = ud;
  if (kind > CR_OBJ_NONE && kind < CR_OBJ__MAX && cr_obj_check(a, off, (cr_obj_kind_t)kind) == 0)
    cr_obj_drop(a, off);
}

/* cr_msg_drop_fn: a message the engine discards undelivered. */
static void drop_message(cr_arena_t *a, const void *data, size_t len) {
  crL_codec_each_handle(data, len, drop_one, a);
}

void crL_decode_drop(lua_State *L, const char *p, size_t len) {
  if (crL_codec_each_handle(p, len, drop_one, cr_engine_arena(crL_engine(L))) < 0)
    crL_error(L, "DecodeError", "decode: not a corral message");
}

/* ---- the handle section, read without Lua ---------------------------------------------- */

int crL_codec_each_handle(const char *p, size_t len, crL_each_handle_fn fn, void *ud) {
  const unsigned char *q = (const unsigned char *)p, *end = q + len;
  if (len < 2 || q[0] != CODEC_MAGIC || q[1] != CODEC_VERSION) return -1;
  if (len == 2 || q[2] != T_HANDLES) return 0;
  q += 3;
  uint64_t n, kind, off;
  if (varint_read(&q, end, &n) < 0) return -1;
  for (uint64_t i = 0; i < n; i++) {
    if (varint_read(&q, end, &kind) < 0 || varint_read(&q, end, &off) < 0) return -1;
    fn(ud, (uint32_t)kind, (cr_off_t)off);
  }
  return 0;
}

/* ---- the Lua functions ------------------------------------------------------------------ */

/* encode(v [, name]) -> string. name names v in error paths ("value"). */
static int l_encode(lua_State *L) {
  crL_checkany(L, 1);
  const char *root = crL_optstring(L, 2, "value");
  size_t n;
  const char *s = encode(L, 1, root, &n, ENC_NO_HANDLES);
  lua_pushlstring(L, s, n);
  return 1;
}

/* decode(s [, {trusted=true}]) -> value. Untrusted (the default) refuses
 * functions; corral handles are always refused. */
static int l_decode(lua_State *L) {
  size_t n;
  const char *s = crL_checklstring(L, 1, &n);
  int flags = CRL_DECODE_NO_FUNCTIONS | CRL_DECODE_NO_HANDLES;
  static const char *const names[] = {"trusted", NULL};
  crL_checkopts(L, 2, names);
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "trusted");
    if (lua_toboolean(L, -1)) flags &= ~CRL_DECODE_NO_FUNCTIONS;
  }
  lua_settop(L, 1);
  crL_decode(L, s, n, flags);
  return 1;
}

/* _pack(v [, root]) -> string: a corral message (handles allowed: the
 * string holds references, to be unpacked exactly once). */
static int l_pack(lua_State *L) {
  crL_checkany(L, 1);
  const char *root = crL_optstring(L, 2, "value");
  size_t n;
  const char *s = crL_encode(L, 1, root, &n);
  lua_pushlstring(L, s, n);
  return 1;
}

/* _pack_slice(t, i, j [, root]) -> string: _pack of the array t[i..j],
 * read straight from t (raw, no metamethods). */
static int l_pack_slice(lua_State *L) {
  crL_checktype(L, 1, LUA_TTABLE);
  lua_Integer slice[2] = {crL_checkinteger(L, 2), crL_checkinteger(L, 3)};
  if (slice[0] < 1) return crL_argerror(L, 2, "must be at least 1");
  if (slice[1] > slice[0] && slice[1] - slice[0] >= ((lua_Integer)1 << 40))
    return crL_argerror(L, 3, "slice too long");
  const char *root = crL_optstring(L, 4, "value");
  size_t n;
  const char *s = encode_part(L, 1, slice, root, &n, 0);
  lua_pushlstring(L, s, n);
  return 1;
}

static int check_body(lua_State *L) {
  size_t n;
  encode(L, 1, "value", &n, ENC_CHECK_ONLY);
  return 0;
}

/* _check(v [, root]): raises the EncodeError that sending v would raise. */
static int l_check(lua_State *L) {
  crL_checkany(L, 1);
  size_t n;
  encode(L, 1, crL_optstring(L, 2, "value"), &n, ENC_CHECK_ONLY);
  return 0;
}

/* _unpack(s [, pos]) -> value: the receiving end of _pack, trusted; the
 * message starts at byte pos of s (default 1), so a header can precede it. */
static int l_unpack(lua_State *L) {
  size_t n;
  const char *s = crL_checklstring(L, 1, &n);
  lua_Integer pos = crL_optinteger(L, 2, 1);
  if (pos < 1 || (size_t)pos > n + 1) return crL_argerror(L, 2, "position out of the string");
  crL_decode(L, s + pos - 1, n - (size_t)(pos - 1), 0);
  return 1;
}

/* _unpack_into(s, pos, dest, at): the message at byte pos of s is a packed
 * array; its item k goes to dest[at + k - 1] (a nil item writes nothing). */
static int l_unpack_into(lua_State *L) {
  size_t n;
  const char *s = crL_checklstring(L, 1, &n);
  lua_Integer pos = crL_checkinteger(L, 2);
  crL_checktype(L, 3, LUA_TTABLE);
  lua_Integer at = crL_checkinteger(L, 4);
  if (pos < 1 || (size_t)pos > n + 1) return crL_argerror(L, 2, "position out of the string");
  lua_settop(L, 4);
  crL_decode_into(L, s + pos - 1, n - (size_t)(pos - 1), 0, 3, at);
  return 0;
}

void crL_open_codec(lua_State *L) {
  cr_refs_on_message_drop(drop_message);
  if (luaL_newmetatable(L, BUF_MT)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CRL_CORE_KEY);
  static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {"_pack", l_pack},
                                 {"_pack_slice", l_pack_slice}, {"_check", l_check},
                                 {"_unpack", l_unpack}, {"_unpack_into", l_unpack_into}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
