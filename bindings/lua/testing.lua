-- corral.testing: the test hooks, in a testing build only (CMake option
-- CORRAL_TESTING; tools/test.sh builds with it). A release build has no
-- such module.
--
--   testobj([v])            -> a TestObject: a shared integer cell (get(),
--                              set(v), close()), to test handles on their own
--   queue_park(where)       where = "put" | "get": this process's next put
--                              or get on any queue stops forever in its
--                              middle (slot claimed, message not yet written
--                              / not yet released), so that a test can kill
--                              it there deterministically
--   queue_parked(q)         -> how many processes are parked inside q (a
--                              Queue, or a Connection: in what it receives)
--   manager_park(where)     where = "before" | "after": this process's next
--                              change to any list, dict or Namespace stops
--                              forever inside it, holding its lock (new
--                              blocks built, just before / just after the
--                              store that publishes them)
--   manager_parked(proxy)   -> how many processes are parked inside proxy
--   manager_recoveries(proxy) -> how many interrupted operations were
--                              recovered
--   arena_blocks()          -> the arena's allocated blocks, in address
--                              order: { off =, size =, head = first bytes }
--                              each (to find what a leak is made of)
local _, core = ...

return {
  testobj = core._testobj,
  queue_park = core._queue_park,
  queue_parked = core._queue_parked,
  manager_park = core._manager_park,
  manager_parked = core._manager_parked,
  manager_recoveries = core._manager_recoveries,
  arena_blocks = core._arena_blocks,
}
