-- corral.manager: Manager internals for tests and tools, apart from the
-- public module. mp.Manager itself is a C constructor in the public module
-- (bindings/src/manager.c; the hooks below: bindings/src/manager_testing.c).
--
--   Manager             the same as mp.Manager
--   park(where)         where = "before" | "after": this process's next
--                       change to any list, dict or Namespace stops forever
--                       inside it, holding its lock (new blocks built, just
--                       before / just after the store that publishes them),
--                       so that a test can kill it there deterministically
--   parked(proxy)       -> how many processes are parked inside proxy
--   recoveries(proxy)   -> how many interrupted operations were recovered
local _, core = ...

local M = {
  Manager = core.Manager,
  park = core._manager_park,
  parked = core._manager_parked,
  recoveries = core._manager_recoveries,
}

return M
