/* corral executable: Tab completion of names at the REPL prompt.
 *
 * The word before the cursor is a path of names (corral.Pro, q:ge); the part
 * before the last "." or ":" is looked up from the globals and the names of
 * that table that start with the rest are offered. Lookups are raw and only
 * follow __index when it is a table, so completing never runs Lua code
 * (no __index function, no proxy round trip to a manager). */
#include <stdlib.h>
#include <string.h>

#include <readline/readline.h>

#include <lauxlib.h>

#include "cli.h"

#define MAX_INDEX_CHAIN 8 /* __index tables followed, against loops */

static lua_State *complete_L;
static char **matches; /* NULL-terminated, handed out by the generator */
static size_t next_match;

static int is_name_char(char c) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_name(const char *s, size_t len) {
  if (len == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_name_char(s[i])) return 0;
  return 1;
}

/* t[k] for the table at idx, raw, then through __index tables. Pushes the
 * value (nil when absent). */
static void lookup(lua_State *L, int idx, const char *k, size_t len) {
  lua_pushvalue(L, idx); /* the table searched */
  for (int i = 0; i < MAX_INDEX_CHAIN; i++) {
    lua_pushlstring(L, k, len);
    if (lua_rawget(L, -2) != LUA_TNIL) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 1);
    if (!lua_getmetatable(L, -1)) break;
    int t = lua_getfield(L, -1, "__index");
    lua_remove(L, -2); /* the metatable */
    lua_remove(L, -2); /* the table searched so far */
    if (t != LUA_TTABLE) break; /* a function would run code */
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* Adds to the result table (at res) the names of the table on top, and of
 * its __index tables, that start with prefix; "<head><name>" each. */
static void collect(lua_State *L, int res, const char *head, size_t hlen, const char *prefix, size_t plen) {
  for (int i = 0; i < MAX_INDEX_CHAIN && lua_istable(L, -1); i++) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      size_t len;
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      const char *k = lua_tolstring(L, -1, &len);
      if (len < plen || memcmp(k, prefix, plen) != 0 || !is_name(k, len)) continue;
      lua_pushlstring(L, head, hlen);
      lua_pushvalue(L, -2);
      lua_concat(L, 2);
      lua_pushboolean(L, 1);
      lua_rawset(L, res); /* a set: a name found twice is offered once */
    }
    if (!lua_getmetatable(L, -1)) break;
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

/* find_matches(word) -> set of completions. Run protected: memory errors
 * must not unwind through readline. */
static int find_matches(lua_State *L) {
  size_t len;
  const char *word = luaL_checklstring(L, 1, &len);
  lua_newtable(L);
  int res = lua_gettop(L);
  size_t last = 0; /* just after the last separator */
  for (size_t i = 0; i < len; i++)
    if (word[i] == '.' || word[i] == ':') last = i + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  size_t start = 0;
  while (start < last) { /* walk the path, one name at a time */
    size_t end = start;
    while (word[end] != '.' && word[end] != ':') end++;
    if (!is_name(word + start, end - start) || !lua_istable(L, -1)) return 1;
    lookup(L, lua_gettop(L), word + start, end - start);
    lua_remove(L, -2);
    start = end + 1;
  }
  if (!lua_istable(L, -1)) return 1;
  collect(L, res, word, last, word + last, len - last);
  if (last == 0) { /* keywords too, at the start of a path */
    static const char *const keywords[] = {
      "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
      "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL};
    for (int i = 0; keywords[i]; i++)
      if (strncmp(keywords[i], word, len) == 0) {
        lua_pushboolean(L, 1);
        lua_setfield(L, res, keywords[i]);
      }
  }
  lua_settop(L, res);
  return 1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_matches(void) {
  if (!matches) return;
  for (size_t i = 0; matches[i]; i++) free(matches[i]);
  free(matches);
  matches = NULL;
}

/* readline's generator: the prepared matches one by one (it frees them). */
static char *generate(const char *text, int state) {
  (void)text;
  if (state == 0) next_match = 0;
  if (!matches || !matches[next_match]) return NULL;
  return strdup(matches[next_match++]);
}

static char **attempt(const char *text, int start, int end) {
  (void)start;
  (void)end;
  lua_State *L = complete_L;
  rl_attempted_completion_over = 1; /* never file names */
  rl_completion_append_character = '\0'; /* reset by readline before each attempt */
  free_matches();
  int top = lua_gettop(L);
  lua_pushcfunction(L, find_matches);
  lua_pushstring(L, text);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      n++;
    }
    matches = calloc(n + 1, sizeof *matches);
    size_t i = 0;
    lua_pushnil(L);
    while (matches && lua_next(L, -2)) {
      lua_pop(L, 1);
      if (i < n && (matches[i] = strdup(lua_tostring(L, -1))) != NULL) i++;
    }
    if (matches) qsort(matches, i, sizeof *matches, cmp_str);
  }
  lua_settop(L, top);
  return rl_completion_matches(text, generate);
}

void cli_complete_open(lua_State *L) {
  complete_L = L;
  rl_attempted_completion_function = attempt;
  /* "." and ":" belong to the word: a path is completed as a whole */
  rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
  rl_basic_quote_characters = "";
}
