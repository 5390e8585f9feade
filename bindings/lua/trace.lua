-- corral.trace: the timeline. mp.trace(path) starts writing a Chrome
-- trace-event file (Perfetto, chrome://tracing) that every process of the
-- program appends to; mp.trace(false) stops it. The engine writes process
-- lifetimes and names; corral's own modules and user code add events
-- through the functions below (docs/observability.md).
--
-- The API, for a module that runs work (a Pool does; a pipeline stage
-- would name its processes and emit per-item slices the same way):
--   trace.on                      whether this process traces (a field)
--   trace.name(label [, pid])     names a process's track (default: this one)
--   trace.slice(name, t0 [, t1] [, args])   a slice from t0 to t1 (mp.time()
--                                 seconds; t1 nil: now) on this track;
--                                 slices of one track must nest, never overlap
--   trace.instant(name [, args] [, pid])    a point event on a track
--   trace.counter(name, values)   counter series on this process ({queued=3})
--   trace.flow_id()               an id unique across the processes of a trace
--   trace.flow(ph, id, name [, t])  ph "s" (start), "t" (step), "f" (end): an
--                                 arrow between the slices enclosing t on
--                                 each track (an item going through stages)
--   trace.now()                   the clock of every timestamp (mp.time)
-- args are tables of string keys and plain values. Every function does
-- nothing while tracing is off; test trace.on first on a hot path.
local _, core = ...

local type, tostring, error, select, rawget = type, tostring, error, select, rawget
local raise = core._raise
local slice, instant, counter, flow = core._trace_slice, core._trace_instant, core._trace_counter,
  core._trace_flow

local M = { on = core._trace_on(), now = core.time }

-- The label of this process's track: "main" for the main process.
local function own_label()
  local mp = require "corral"
  local cur = mp.current_process()
  if cur.name == "MainProcess" and not mp.parent_process() then return "main" end
  return rawget(cur, "_track") or cur.name
end

-- mp.trace(path): starts a trace at path (truncated), for this process and
-- the processes it starts from now on. mp.trace(false): stops it here.
-- mp.trace(): the path being written, or nil.
function M.trace(path, ...)
  if select("#", ...) > 0 then raise("ValueError", "trace expects one argument") end
  if path == nil then return core._trace_path() end
  if path == false then
    core._trace_close()
    M.on = false
    return true
  end
  if type(path) ~= "string" or path == "" then
    raise("ValueError", "trace: path must be a file name or false, got " .. tostring(path))
  end
  local ok, msg = core._trace_open(path)
  if not ok then raise("OSError", msg) end
  M.on = true
  core._trace_name(0, own_label())
  return true
end

function M.name(label, pid)
  if not M.on then return end
  core._trace_name(pid or 0, tostring(label))
end

function M.slice(name, t0, t1, args)
  if not M.on then return end
  slice(name, "user", t0, t1, args)
end

function M.instant(name, args, pid)
  if not M.on then return end
  instant(name, "user", pid, args)
end

function M.counter(name, values)
  if not M.on then return end
  counter(name, values)
end

local flow_seq = 0
-- Unique across processes: the pid in the high bits, a count in the low.
function M.flow_id()
  flow_seq = flow_seq + 1
  return (core.getpid() << 24) | (flow_seq & 0xffffff)
end

function M.flow(ph, id, name, t)
  if not M.on then return end
  if ph ~= "s" and ph ~= "t" and ph ~= "f" then
    error("trace.flow: ph must be 's', 't' or 'f'", 2)
  end
  flow(ph, id, name, "flow", t)
end

M.flush = core._trace_flush

return M
