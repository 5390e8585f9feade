-- corral.chan: channel internals for tests and tools, apart from the public
-- module. Queue, JoinableQueue, SimpleQueue and Pipe themselves are C
-- constructors in the public module (bindings/src/lqueue.c, lpipe.c).
--
--   park(where)     where = "put" | "get": this process's next put or get on
--                   any queue stops forever in its middle (slot claimed,
--                   message not yet written / not yet released), so that a
--                   test can kill it there deterministically
--   parked(q)       -> how many processes are parked inside q
local _, core = ...

local M = {
  park = core._queue_park,
  parked = core._queue_parked,
}

return M
