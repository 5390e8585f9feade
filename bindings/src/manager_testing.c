/* corral bindings: the Manager's test hooks, in the core table as
 * _manager_park, _manager_parked and _manager_recoveries (the specs reach
 * them through corral.manager, bindings/lua/manager.lua):
 *
 *   park(where)        where = "before" | "after": this process's next
 *                      change to any list, dict or Namespace stops forever
 *                      inside it, holding its lock (see managed.h)
 *   parked(proxy)      -> how many processes are parked inside proxy
 *   recoveries(proxy)  -> how many interrupted operations were recovered */
#include <string.h>

#include "manager_int.h"

static int t_park(lua_State *L) {
  const char *w = crL_checkstring(L, 1);
  cr_managed_test_park(strcmp(w, "before") == 0 ? CR_MANAGED_PARK_BEFORE
                       : strcmp(w, "after") == 0 ? CR_MANAGED_PARK_AFTER : 0);
  return 0;
}

static int t_parked(lua_State *L) {
  mud_t *u = mgr_check(L, 1, 0);
  lua_pushinteger(L, cr_managed_test_parked(u->a, u->h.off));
  return 1;
}

static int t_recoveries(lua_State *L) {
  mud_t *u = mgr_check(L, 1, 0);
  lua_pushinteger(L, cr_managed_recoveries(u->a, u->h.off));
  return 1;
}

void mgr_open_testing(lua_State *L) {
  static const luaL_Reg fns[] = {{"_manager_park", t_park}, {"_manager_parked", t_parked},
                                 {"_manager_recoveries", t_recoveries}, {NULL, NULL}};
  crL_setfuncs(L, fns);
}
