/* corral bindings: what every part of the Lua module shares.
 *
 * Prefix crL_. The module is assembled by module.c from the parts listed in
 * parts.h into a "core" table; the Lua companion bindings/lua/corral.lua
 * turns it into the public module (every core field not starting with "_"
 * is public).
 *
 * Failure convention (docs/api.md): an expected outcome of waiting is a return
 * value; misuse and remote failures raise an error object, a table
 * {kind=, message=, where=[, traceback=, pid=]} with metatable
 * "corral.Error". */
#ifndef CORRAL_LUA_H
#define CORRAL_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "corral.h"

#define CRL_EXPORT __attribute__((visibility("default")))

/* ---- the engine ---------------------------------------------------------- */
/* The process's engine, opened on first use; raises an error on failure. */
cr_engine_t *crL_engine(lua_State *L);

/* ---- errors ----------------------------------------------------------------
 * Every error the module raises is an error object built in lerror.c, its
 * `where` the line of the user's code that made the call (crL_where): a
 * misuse is a ValueError (a bad argument: of the wrong type, out of range,
 * an unknown option) or a TypeError (a method called on what is not its
 * object; a value a typed slot cannot hold). The crL_check* functions
 * stand in for lauxlib's, which raise plain strings: lauxlib's are
 * poisoned below, so that none comes back. */

/* Pushes "file:line: " of the innermost function with line information
 * that is not corral's own (a companion module's), counted from the
 * caller of the running C function; the innermost of corral's own when
 * there is no other, "" when there is no Lua function at all. */
void crL_where(lua_State *L);
/* crL_where counted from stack level `level` (0: the running function, as
 * a hook sees it). */
void crL_where_from(lua_State *L, int level);
/* Whether the value at idx is an error object of that kind (any kind for
 * NULL). Raises nothing. */
int crL_iserror(lua_State *L, int idx, const char *kind);
/* Pushes a new error object, with no where. */
void crL_pusherror(lua_State *L, const char *kind, const char *fmt, ...);
/* Raises an error object. Never returns. */
int crL_error(lua_State *L, const char *kind, const char *fmt, ...);
/* Raises an error for an engine code: kind from cr_err_kind, message
 * "what: <message>". Clears a pending SIGINT flag for CR_EINTR. */
int crL_error_code(lua_State *L, int code, const char *what);
/* Raises "attempt to use a closed <Type>" (kind "Closed"). */
int crL_error_closed(lua_State *L, const char *tname);

/* Raises a ValueError "bad argument #arg to 'fn' (<fmt...>)", fn and arg as
 * the caller wrote the call (q:get("x") is 'get', #1); the self of a call
 * written as a method gives a TypeError instead. Never returns. */
int crL_argerror(lua_State *L, int arg, const char *fmt, ...);
/* crL_argerror with "<tname> expected, got <type or __name>". */
int crL_typeerror(lua_State *L, int arg, const char *tname);
/* For a value at arg that is not the object (a handle of type tname) a
 * function works on: crL_selferror at arg 1, the self of a method;
 * crL_typeerror at any other. */
int crL_objecterror(lua_State *L, int arg, const char *tname);
/* Raises a TypeError "calling 'fn' on bad self (<tname> expected, got
 * ...)": the value at 1 is not the object of the running method. */
int crL_selferror(lua_State *L, const char *tname);
/* As lauxlib's, raising through crL_argerror / crL_typeerror. */
lua_Integer crL_checkinteger(lua_State *L, int arg);
lua_Integer crL_optinteger(lua_State *L, int arg, lua_Integer def);
lua_Number crL_checknumber(lua_State *L, int arg);
const char *crL_checklstring(lua_State *L, int arg, size_t *len);
const char *crL_optlstring(lua_State *L, int arg, const char *def, size_t *len);
#define crL_checkstring(L, arg)    crL_checklstring(L, (arg), NULL)
#define crL_optstring(L, arg, def) crL_optlstring(L, (arg), (def), NULL)
void crL_checktype(lua_State *L, int arg, int t);
void crL_checkany(lua_State *L, int arg);
/* A function, or a value with a __call metamethod. */
void crL_checkcallable(lua_State *L, int arg);
void *crL_checkudata(lua_State *L, int arg, const char *tname);
/* An optional options table at arg: nil, or a table whose keys are all
 * among names (NULL-terminated); else a ValueError names the option. */
void crL_checkopts(lua_State *L, int arg, const char *const names[]);

/* An optional timeout argument: nil (or none) gives -1 (wait forever);
 * a number must be >= 0 and not NaN, else a ValueError names the argument. */
double crL_opttimeout(lua_State *L, int arg);

#undef luaL_checkstring
#undef luaL_optstring
#undef luaL_argcheck
#undef luaL_argexpected
#pragma GCC poison luaL_checkinteger luaL_optinteger luaL_checknumber luaL_optnumber luaL_checklstring
#pragma GCC poison luaL_optlstring luaL_checkstring luaL_optstring luaL_checktype luaL_checkany
#pragma GCC poison luaL_checkudata luaL_checkoption luaL_argerror luaL_typeerror luaL_argcheck
#pragma GCC poison luaL_argexpected

/* ---- handles: userdata naming a shared object (handle.c) ------------------
 * Every userdata that names an object in the arena starts with crL_handle_t
 * and holds one reference on it, recorded in this process's ledger
 * (corral/refs.h): a forked child's inherited handles are its own, and what
 * a process held is given back when it ends, however it ends. handle.c owns
 * what every handle type shares: making the userdata, checking it,
 * releasing it (__gc, __close, close), and rebuilding it from a message.
 *
 * A handle type is an object kind with a class (its userdata size and how
 * to fill it) and one or more metatables (a Queue, a JoinableQueue and a
 * SimpleQueue are one kind). */
typedef struct {
  cr_off_t off;  /* the object, 0 once released */
  uint32_t kind; /* cr_obj_kind_t */
  uint32_t pad;
} crL_handle_t;

typedef struct {
  size_t size; /* userdata bytes, crL_handle_t first */
  int nuv;     /* user values */
  /* The metatable name for the object at off. */
  const char *(*tname)(cr_arena_t *a, cr_off_t off);
  /* Optional: fills the type's own fields of a new handle (h->off is set).
   * Must not raise. */
  void (*init)(lua_State *L, crL_handle_t *h);
} crL_handle_class_t;

/* Registers the class of kind's handles (kept by pointer: static storage). */
void crL_handle_class(cr_obj_kind_t kind, const crL_handle_class_t *cls);
/* Creates metatable tname for kind's handles: __name, __corral_kind,
 * __gc (crL_handle_gc), __close (crL_handle_gc unless meta sets it),
 * __tostring ("Queue (0x...)", "Queue (closed)" unless meta sets it), the
 * rest of meta, and, when methods is not NULL, __index = a table of them,
 * each a closure with the metatable as upvalue 1 (crL_checkhandle's fast
 * path). Leaves nothing on the stack. */
void crL_handle_metatable(lua_State *L, cr_obj_kind_t kind, const char *tname, const luaL_Reg *meta,
                          const luaL_Reg *methods);
/* Adds methods, built the same way, to the __index table of tname. */
void crL_handle_methods(lua_State *L, const char *tname, const luaL_Reg *methods);

/* Pushes a new handle for the object at off, taking over one reference that
 * the caller holds (a new object's). Raises a MemoryError, after dropping
 * that reference, when this process's ledger cannot record it. */
void crL_handle_new(lua_State *L, cr_obj_kind_t kind, cr_off_t off);
/* Pushes a handle for the object at off, taking a new reference. Raises a
 * ValueError when off does not name a live object of that kind. */
void crL_pushhandle(lua_State *L, cr_obj_kind_t kind, cr_off_t off);
/* Pushes a handle for the object at off, adopting one reference that the
 * caller holds (a message's). Returns 0, or -1 with nothing pushed when kind
 * is unknown, has no class, or off does not name a live object of that kind
 * (the reference is then left alone). Raises only on memory errors. */
int crL_pushhandle_adopt(lua_State *L, cr_obj_kind_t kind, cr_off_t off);
/* The same, taking a new reference instead (the message keeps its own). */
int crL_pushhandle_copy(lua_State *L, cr_obj_kind_t kind, cr_off_t off);

/* The handle at idx, or NULL when the value is no corral handle. */
crL_handle_t *crL_tohandle(lua_State *L, int idx);
/* The open handle of kind at arg; raises for anything else (crL_objecterror:
 * arg 1 is taken for a method's self) and a Closed error ("attempt to use a
 * closed Queue") for a released one. Fast when called from a method made
 * by crL_handle_metatable. */
crL_handle_t *crL_checkhandle(lua_State *L, int arg, cr_obj_kind_t kind);
/* In a method made by crL_handle_metatable: crL_checkhandle of self, for
 * the kind of the method's metatable (a method that several kinds share). */
crL_handle_t *crL_checkself(lua_State *L);
/* lua_CFunction, a close() method made by crL_handle_metatable: releases
 * self, a handle of the method's kind (open or not; a TypeError for
 * anything else). */
int crL_handle_close(lua_State *L);
/* The name a handle shows: its metatable's __name without "corral.". */
const char *crL_handle_name(lua_State *L, int idx);
/* Drops the reference a handle holds; idempotent. */
void crL_handle_release(lua_State *L, crL_handle_t *h);
/* lua_CFunction: releases the handle at 1 (__gc, __close, close). */
int crL_handle_gc(lua_State *L);

/* ---- the value codec (codec.c) ---------------------------------------------
 * Encodes the value at idx. Pushes one value (a buffer that owns the bytes)
 * and returns a pointer to them, valid while that value stays on the stack.
 * `root` names the value in error paths ("args" gives "args[2].cb").
 * Raises an EncodeError naming the path and type of what cannot be encoded. */
const char *crL_encode(lua_State *L, int idx, const char *root, size_t *len);

/* A lone string of n bytes encodes as a short header followed by its bytes:
 * writes that header to out and returns its length, so that a large string
 * can be copied to its destination straight from the Lua string. */
#define CRL_STRHEAD_MAX 16
size_t crL_encode_strhead(size_t n, char out[CRL_STRHEAD_MAX]);
/* The other way: for a message p[0..len) that is a lone string, returns
 * the length of its header and sets *n to the string's; 0 for any other
 * message. */
size_t crL_decode_strhead(const char *p, size_t len, size_t *n);

/* Keys compared by their bytes (a shared dict's): the value at idx, a
 * string, number or boolean, encoded as a message that is the same for
 * keys that Lua takes as one key (a float with an integer value is that
 * integer: t[1] and t[1.0] are one key). A key fitting buf is written there;
 * a longer string is pushed as a Lua string holding the bytes (the stack
 * grows by one). k->p, k->len: the bytes. Returns 0, or CRL_KEY_NAN (NaN)
 * or CRL_KEY_TYPE (another type), nothing pushed. Raises only for memory.
 * A key decodes back with crL_decode. */
#define CRL_KEY_NAN  -1
#define CRL_KEY_TYPE -2
typedef struct {
  const char *p;
  size_t len;
  char buf[256];
} crL_key_t;
int crL_encode_key(lua_State *L, int idx, crL_key_t *k);

/* registry[CRL_CORE_KEY]: the module's core table, set by the codec's
 * opener (names in messages resolve against it). */
#define CRL_CORE_KEY "corral.core"

#define CRL_DECODE_NO_FUNCTIONS 1 /* data from outside the engine */
#define CRL_DECODE_NO_HANDLES   2
#define CRL_DECODE_OWN_REFS     4 /* handles take new references; the message keeps its own */
/* Decodes `len` bytes and pushes the value. Raises a DecodeError on any
 * malformed input; never crashes and never allocates beyond what the input
 * can justify. */
void crL_decode(lua_State *L, const char *p, size_t len, int flags);
/* Decodes a message that is an array into the table at index dest: item k
 * goes to dest[at + k - 1] (a nil item writes nothing); pushes nothing. A DecodeError when the message
 * is not an array (a table with positive integer keys, no metatable). */
void crL_decode_into(lua_State *L, const char *p, size_t len, int flags, int dest, lua_Integer at);
/* Drops a message without decoding it: gives back the references it holds
 * on shared objects (for a message from crL_encode that will never be
 * decoded: a put or a spawn that failed). The engine does the same, through
 * the hook of corral/refs.h, for a queue freed with messages in it. Raises
 * a DecodeError when the bytes are not a message. */
void crL_decode_drop(lua_State *L, const char *p, size_t len);

/* Calls fn(ud, kind, off) for each entry of the handle section of the
 * message p[0..len): the objects whose references the message holds, in
 * order. Runs no Lua and never raises, so it may be called under an
 * engine lock. 0 (also for a message that names no handles), or -1 when
 * the bytes are not a message or its handle section is malformed (fn was
 * called for the entries before the fault). */
typedef void (*crL_each_handle_fn)(void *ud, uint32_t kind, cr_off_t off);
int crL_codec_each_handle(const char *p, size_t len, crL_each_handle_fn fn, void *ud);

/* ---- spawned children (lproc.c) -------------------------------------------
 * A child started with the spawn method is the corral executable with
 * CORRAL_CHILD in its environment. Its main() checks crL_is_spawn_child()
 * first and, if so, opens the standard libraries in a new state and returns
 * crL_spawn_child_run(L) as the exit code. */
int crL_is_spawn_child(void);
int crL_spawn_child_run(lua_State *L);

/* ---- what a Queue and a Redis Queue share (lqueue.c) -----------------------
 * A getter takes one item from the queue object at stack index idx: 1 with
 * the value pushed, or 0 with nothing pushed and *why "timeout" or
 * "closed"; it raises on any other failure (a released queue: Closed). */
typedef struct {
  int (*get)(lua_State *L, int idx, double t, const char **why);
} crL_getter_t;
/* q:get([t]), q:get_nowait(), q:iter([t]) for the checked queue at 1. */
int crL_queue_get(lua_State *L, const crL_getter_t *g);
int crL_queue_get_nowait(lua_State *L, const crL_getter_t *g);
int crL_queue_iter(lua_State *L, const crL_getter_t *g);
/* A put's engine code as the methods return it: 0 pushes true; CR_EFULL
 * and CR_ECLOSED push false and "full"/"closed" (nowait: raise Full /
 * Closed). Returns the values pushed, or -1 (nothing pushed) for any other
 * code, for the caller to raise. */
int crL_queue_put_outcome(lua_State *L, int rc, int nowait);

/* ---- the Redis backend (lredis.c) -------------------------------------------
 * Queue{url=...} and JoinableQueue{url=...}: the options table at 1;
 * pushes the queue. Raises a ValueError in a build without the backend. */
int crL_redis_queue(lua_State *L, unsigned flags);

/* embed.c: the corral executable set by the host (corral_set_worker), or
 * NULL. */
extern const char *crL_worker_exe;
/* lwatch.c: hands the error message on top of L's stack (with its
 * traceback) to the host's error handler, or prints it; leaves it there. */
void crL_callback_error(lua_State *L);

/* ---- the parts ------------------------------------------------------------- */
#define CRL_PART(name) void crL_open_##name(lua_State *L);
#include "parts.h"
#undef CRL_PART

/* Sets core[name] = function for each entry (core table on top). */
void crL_setfuncs(lua_State *L, const luaL_Reg *l);

/* module.c: the Lua entry point. */
CRL_EXPORT int luaopen_corral(lua_State *L);

#endif
