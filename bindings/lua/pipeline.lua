-- corral.pipeline: producer/consumer flows in one declaration.
--
--   local results, stats = mp.pipeline(source, { maxsize =, on_error =, progress =, name = })
--     :map(fn, { workers =, ordered =, name =, timeout =, retries = })
--     :filter(pred, opts) :flat_map(fn, opts) :batch(n) :reduce(fn, init, opts)
--     :each(sink)
--     :run()                  -- or :iter(), or :start{on_done =, on_error =} then :get(t)
--
-- This file checks what the caller declares and shapes the results and the
-- stats; corral.pipeline_flow runs it, corral.pipeline_worker is what its
-- processes run, corral.pipeline_wire their messages.
local _, core = ...
local flow = require "corral.pipeline_flow"

local type, pairs, ipairs, error, pcall, tostring, setmetatable, getmetatable =
  type, pairs, ipairs, error, pcall, tostring, setmetatable, getmetatable
local tconcat, tmove = table.concat, table.move
local mtype, max, floor = math.type, math.max, math.floor
local raise, now, iserror = core._raise, core.time, core.iserror

local DEFAULT_MAXSIZE = 2048

local Pipeline = {}
Pipeline.__index = Pipeline
Pipeline.__name = "corral.Pipeline"

-- ---- arguments -----------------------------------------------------------------

local function callable(f)
  if type(f) == "function" then return true end
  local mt = getmetatable(f)
  return mt ~= nil and type(mt) == "table" and mt.__call ~= nil
end

local function show(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local function check_opts(opts, allowed, what, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then raise("ValueError", what .. ": options must be a table, got " .. type(opts), level + 1) end
  for k in pairs(opts) do
    if not allowed[k] then raise("ValueError", what .. ": unknown option '" .. tostring(k) .. "'", level + 1) end
  end
  return opts
end

local function check_int(v, least, what, level)
  if mtype(v) ~= "integer" or v < least then
    raise("ValueError", ("%s must be an integer >= %d, got %s"):format(what, least, show(v)), level + 1)
  end
end

local function is_queue(v)
  if type(v) ~= "userdata" then return false end
  local mt = getmetatable(v)
  local name = type(mt) == "table" and mt.__name
  return name == "corral.Queue" or name == "corral.JoinableQueue" or name == "corral.SimpleQueue"
end

-- ---- the source -----------------------------------------------------------------

local Producer = {}
Producer.__index = Producer
Producer.__name = "corral.pipeline.Producer"

local PRODUCE_OPTS = { workers = true, name = true }

-- produce(fn, {workers=, name=}): a source run by `workers` producer
-- processes, each calling fn(emit, k) (k = 1..workers); emit(v) sends v on.
local function produce(fn, opts)
  if not callable(fn) then raise("ValueError", "produce: fn must be a function, got " .. type(fn), 2) end
  opts = check_opts(opts, PRODUCE_OPTS, "produce", 2)
  local workers = opts.workers or 1
  check_int(workers, 1, "produce: workers", 2)
  if opts.name ~= nil and type(opts.name) ~= "string" then raise("ValueError", "produce: name must be a string", 2) end
  return setmetatable({ kind = "produce", fn = fn, workers = workers, name = opts.name or "source" }, Producer)
end

local function check_source(src, level)
  if getmetatable(src) == Producer then return src end
  if is_queue(src) then return { kind = "queue", queue = src, workers = 1, name = "source" } end
  if type(src) == "table" then return { kind = "list", list = src, name = "source" } end
  if type(src) == "function" then return { kind = "iter", iter = src, name = "source" } end
  raise("ValueError", "pipeline: the source must be an array table, an iterator function, a Queue or "
    .. "mp.pipeline.produce(...), got " .. type(src), level + 1)
end

-- ---- declaring --------------------------------------------------------------------

local PIPELINE_OPTS = { maxsize = true, on_error = true, progress = true, name = true, context = true }

local function new(source, opts)
  local src = check_source(source, 2)
  opts = check_opts(opts, PIPELINE_OPTS, "pipeline", 2)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.maxsize = o.maxsize or DEFAULT_MAXSIZE
  check_int(o.maxsize, 1, "pipeline: maxsize", 2)
  o.on_error = o.on_error or "raise"
  if o.on_error ~= "raise" and o.on_error ~= "collect" then
    raise("ValueError", "pipeline: on_error must be 'raise' or 'collect', got " .. show(o.on_error), 2)
  end
  if o.name ~= nil and type(o.name) ~= "string" then raise("ValueError", "pipeline: name must be a string", 2) end
  return setmetatable({ source = src, opts = o, stages = {}, names = {} }, Pipeline)
end

local STAGE_OPTS = { workers = true, ordered = true, name = true, timeout = true, retries = true }
local REDUCE_OPTS = { workers = true, name = true, timeout = true, retries = true, merge = true }

-- Every method checks its self first: p.map(f) for p:map(f) is a
-- TypeError naming the method.
local function check_self(self, what, level)
  if getmetatable(self) ~= Pipeline then
    local mt = getmetatable(self)
    local got = type(mt) == "table" and mt.__name or type(self)
    raise("TypeError", ("calling '%s' on bad self (Pipeline expected, got %s)"):format(what, tostring(got)),
      level + 1)
  end
end

-- A started pipeline (run, iter, start) takes no more stages, and does not start again.
local function check_unstarted(self, what, level)
  if self._started then
    raise("StateError", ("%s: the pipeline was started already (by %s)"):format(what, self._started), level + 1)
  end
end

function Pipeline:_stage(kind, fn, opts, allowed, level)
  check_self(self, kind, level + 1)
  check_unstarted(self, kind, level + 1)
  if self._reduced then raise("ValueError", kind .. ": no stage can follow reduce", level + 1) end
  if kind ~= "batch" and not callable(fn) then
    raise("ValueError", ("%s: the stage function must be a function, got %s"):format(kind, type(fn)), level + 1)
  end
  opts = check_opts(opts, allowed, kind, level + 1)
  local workers = opts.workers or 1
  check_int(workers, 1, kind .. ": workers", level + 1)
  local retries = opts.retries or 0
  check_int(retries, 0, kind .. ": retries", level + 1)
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0) then
    raise("ValueError", kind .. ": timeout must be a positive number of seconds, got " .. show(t), level + 1)
  end
  if opts.ordered ~= nil and type(opts.ordered) ~= "boolean" then
    raise("ValueError", kind .. ": ordered must be a boolean", level + 1)
  end
  local name = opts.name
  if name ~= nil and type(name) ~= "string" then raise("ValueError", kind .. ": name must be a string", level + 1) end
  if name == nil then
    name = kind
    local k = 1
    while self.names[name] do k = k + 1; name = kind .. k end
  end
  self.names[name] = true
  local s = { kind = kind, fn = fn, name = name, workers = workers, ordered = opts.ordered ~= false,
              timeout = t, retries = retries }
  self.stages[#self.stages + 1] = s
  return s
end

-- map(fn, opts): each item becomes fn(item); an item for which fn returns
-- nil is dropped.
function Pipeline:map(fn, opts)
  Pipeline._stage(self, "map", fn, opts, STAGE_OPTS, 2)
  return self
end

-- filter(pred, opts): keeps the items for which pred(item) is true.
function Pipeline:filter(fn, opts)
  Pipeline._stage(self, "filter", fn, opts, STAGE_OPTS, 2)
  return self
end

-- flat_map(fn, opts): fn(item) returns an array (or nil); each element goes on.
function Pipeline:flat_map(fn, opts)
  Pipeline._stage(self, "flat_map", fn, opts, STAGE_OPTS, 2)
  return self
end

local BATCH_OPTS = { name = true }

-- batch(n): consecutive items grouped into arrays of n (the last may be shorter).
function Pipeline:batch(n, opts)
  check_self(self, "batch", 2)
  check_unstarted(self, "batch", 2)
  if mtype(n) ~= "integer" or n < 1 then
    raise("ValueError", "batch: the size must be an integer >= 1, got " .. show(n), 2)
  end
  local s = Pipeline._stage(self, "batch", nil, opts, BATCH_OPTS, 2)
  s.size = n
  return self
end

-- reduce(fn, init, opts): folds items in each worker (acc = fn(acc, item),
-- from init), then merges the workers' accumulators in the parent with
-- opts.merge (default fn): run() returns the final accumulator.
function Pipeline:reduce(fn, init, opts)
  local s = Pipeline._stage(self, "reduce", fn, opts, REDUCE_OPTS, 2)
  local merge = (opts or {}).merge or fn
  if not callable(merge) then raise("ValueError", "reduce: merge must be a function, got " .. type(merge), 2) end
  s.init, s.merge, s.ordered = init, merge, true
  local ok, err = pcall(core._check, init, "init")
  if not ok then error(err, 2) end
  self._reduced = s
  return self
end

-- each(sink): sink(item) runs in the parent for every item that comes out.
function Pipeline:each(sink)
  check_self(self, "each", 2)
  check_unstarted(self, "each", 2)
  if not callable(sink) then raise("ValueError", "each: sink must be a function, got " .. type(sink), 2) end
  if self._each then raise("ValueError", "each: the pipeline already has a sink", 2) end
  self._each = sink
  return self
end

-- ---- stats -----------------------------------------------------------------------

local Stats = {}
Stats.__index = Stats
Stats.__name = "corral.pipeline.Stats"

local function collect_stats(p, f)
  local elapsed = (f.finished_at or now()) - f.t0
  local st = setmetatable({ name = p.opts.name, elapsed = elapsed, items = f.fed, stages = {},
                            errors = f.errors, state = f.state, replaced = f.replaced,
                            workers = f:worker_stats() }, Stats)
  if p.source.kind ~= "list" and p.source.kind ~= "iter" then
    st.items = floor(f.idxc.value)
  end
  for g, s in ipairs(p.stages) do st.stages[g] = f:stage_counts(s) end
  local worst, at = -1, nil
  for g, c in ipairs(st.stages) do
    local util = c.busy / (c.workers * max(elapsed, 1e-9))
    c.utilization = util
    if util > worst then worst, at = util, g end
  end
  st.bottleneck = at and st.stages[at].name or nil
  return st
end

function Stats.__tostring(self)
  local out = { ("pipeline%s: %d items in %.3fs%s"):format(self.name and (" '" .. self.name .. "'") or "",
    self.items, self.elapsed, #self.errors > 0 and (", " .. #self.errors .. " errors collected") or "") }
  out[2] = ("%-12s %7s %10s %10s %6s %7s %5s %8s %8s %8s %5s"):format("stage", "workers", "in", "out", "errors",
    "retries", "lost", "busy s", "wait_in", "wait_out", "busy")
  for _, c in ipairs(self.stages) do
    out[#out + 1] = ("%-12s %7d %10d %10d %6d %7d %5d %8.3f %8.3f %8.3f %4d%%%s"):format(c.name, c.workers,
      c.items_in, c.items_out, c.errors, c.retries, c.lost, c.busy, c.wait_in, c.wait_out,
      floor(c.utilization * 100 + 0.5), c.name == self.bottleneck and "  <- bottleneck" or "")
  end
  return tconcat(out, "\n")
end

-- ---- running ----------------------------------------------------------------------

-- Marks the pipeline started by `what` and makes its flow.
local function begin(self, what, level)
  check_self(self, what, level + 1)
  check_unstarted(self, what, level + 1)
  local f = flow.new(self) -- raises when it cannot start: then nothing started
  self._started, self._flow = what, f
  return f
end

-- Runs f:step-driven consumption under protection: whatever escapes
-- (an item's error, the sink's, Ctrl-C) stops every process first.
local function guarded(f, fn, ...)
  local ok, a, b = pcall(fn, ...)
  if not ok then
    f:cancel("failed")
    error(a, 0)
  end
  return a, b
end

local function final_value(p, f)
  local r = p._reduced
  if not r then return nil end
  if f.have_acc then return f.acc end
  return core._unpack(core._pack(r.init, "init"))
end

-- Moves the items that came out to out.results[out.n + 1...], or runs the
-- sink on each (the one that raises is the last taken).
local function consume(f, sink, out)
  local head, tail = f.out_head, f.out_tail
  if head > tail then return end
  if not sink then
    tmove(f.out, head, tail, out.n + 1, out.results)
    out.n = out.n + tail - head + 1
    f.out, f.out_head, f.out_tail = {}, 1, 0
    return
  end
  local items = f.out
  f.sinking = true -- until the sink returns: an error from here is the sink's
  for i = head, tail do
    local v = items[i]
    items[i] = nil
    f.out_head = i + 1
    sink(v)
  end
  f.sinking = false
end

-- run() -> results, stats: the items that come out (empty with each), or
-- reduce's final accumulator.
function Pipeline:run()
  local f = begin(self, "run", 2)
  local out = { results = {}, n = 0 }
  guarded(f, function()
    while f:step() do consume(f, self._each, out) end
  end)
  local results = out.results
  if self._reduced then results = final_value(self, f) end
  return results, collect_stats(self, f)
end

-- iter() -> for item in pipeline:iter() do ... end: items as they come out;
-- leaving the loop early (break, an error, a <close> variable) stops the
-- pipeline. A reduce pipeline yields its final accumulator once.
function Pipeline:iter()
  local f = begin(self, "iter", 2)
  local p, sink, gave_acc = self, self._each, false
  local stopper = setmetatable({}, { __close = function() f:cancel() end, __gc = function() f:cancel() end })
  local function nextf()
    local v, more = guarded(f, f.next_item, f)
    if more then
      if sink then guarded(f, sink, v) end
      return v
    end
    if p._reduced and not gave_acc then
      gave_acc = true
      return final_value(p, f)
    end
    return nil
  end
  return nextf, nil, nil, stopper
end

-- ---- in the background ------------------------------------------------------------
--
-- start{on_done =, on_error =} starts the pipeline and returns at once; a
-- watch on its inbox serves it from every corral wait and a host's uv_run
-- (corral.pipeline_flow's serve). Once it ended (every worker gone), its
-- results, stats and error are kept in self._bg and the callback runs,
-- under the callback error policy (core._callback), from the serve or the
-- get/wait that saw the end. A started pipeline that is collected stops.

local START_OPTS = { on_done = true, on_error = true }

-- A serve that runs keeps its pipeline reachable: nothing else may, while
-- the watch's own thread runs it.
local serving_now

-- The pipeline ended (err: how it failed): results and stats are kept,
-- the callback runs.
local function ended(p, f, bg, err)
  f:release()
  bg.state = err == nil and "done" or "failed"
  bg.err = err
  bg.results = p._reduced and final_value(p, f) or bg.out.results
  bg.stats = collect_stats(p, f)
  if err == nil then
    if bg.on_done then core._callback(bg.on_done, bg.results, bg.stats) end
  elseif bg.on_error then
    core._callback(bg.on_error, err, bg.stats)
  end
end

-- An error escaped the flow: it stops (its processes killed; released
-- once they are gone, which ring the watch).
local function failed(f, bg, err)
  bg.pending_err = err
  f:cancel("failed")
end

-- Whether what came out of f goes on to the results or the sink (no
-- error stopped it).
local function live(f) return f.state == "running" or f.state == "done" end

-- The watch's callback.
local function serve(p)
  local f, bg = p._flow, p._bg
  if bg.state ~= "running" or bg.held > 0 then return end
  local outer = serving_now
  serving_now = p
  local ok, err = pcall(function()
    f:serve()
    if live(f) then consume(f, p._each, bg.out) end
  end)
  if not ok then failed(f, bg, err) end
  if f.done and f:all_ended() then ended(p, f, bg, bg.pending_err) end
  serving_now = outer
  if not ok and iserror(err, "Interrupted") then error(err, 0) end -- Ctrl-C is the waiting caller's
end

-- start([opts]) -> the pipeline, running in the background: on_done(results,
-- stats) runs once it ended, with what run() returns, or on_error(err, stats)
-- with what run() raises.
function Pipeline:start(opts)
  check_self(self, "start", 2)
  opts = check_opts(opts, START_OPTS, "start", 2)
  for _, k in ipairs{ "on_done", "on_error" } do
    if opts[k] ~= nil and not callable(opts[k]) then
      raise("ValueError", ("start: %s must be a function, got %s"):format(k, type(opts[k])), 2)
    end
  end
  local f = begin(self, "start", 2)
  local bg = { state = "running", held = 0, out = { results = {}, n = 0 }, on_done = opts.on_done,
               on_error = opts.on_error }
  self._bg = bg
  bg.guard = setmetatable({}, { __gc = function()
    if core.getpid() == f.pid and not f.released then -- a forked child's copy stops nothing
      f.defer = false
      pcall(f.cancel, f)
    end
  end })
  local ok, err = pcall(f.watch_inbox, f, function() serve(self) end)
  if not ok then
    f.defer = false
    f:cancel("failed")
    error(err, 0)
  end
  return self
end

local function check_background(self, what, level)
  check_self(self, what, level + 1)
  if not self._bg then
    raise("StateError", what .. ": the pipeline was not started with start()", level + 1)
  end
end

local function check_timeout(t, what, level)
  if t ~= nil and (type(t) ~= "number" or t ~= t or t < 0) then
    raise("ValueError", what .. ": timeout must be a number >= 0 or nil, got " .. show(t), level + 1)
  end
end

-- wait([timeout]) -> true once the pipeline ended (its callback ran),
-- false when timeout passed first. It drives the pipeline itself while it
-- waits (time limits are kept); Ctrl-C (any error of the wait's own)
-- raises and leaves it running.
function Pipeline:wait(timeout)
  check_background(self, "wait", 2)
  check_timeout(timeout, "wait", 2)
  local f, bg = self._flow, self._bg
  if bg.state ~= "running" then return true end
  if bg.held > 0 or serving_now == self then
    raise("StateError", "wait: called from the pipeline's own wait or callback", 2)
  end
  local deadline = timeout and now() + timeout
  bg.held = bg.held + 1
  f:hold(true)
  local ok, err = pcall(function()
    while not f.done do
      local more = f:step(deadline)
      if more == nil then return end
      if live(f) then consume(f, self._each, bg.out) end
    end
  end)
  bg.held = bg.held - 1
  f:hold(false)
  if not ok then
    -- the pipeline's failure (an item's, the sink's, merge's) or the
    -- wait's own (Ctrl-C): that one leaves it running
    if not f.stopped and not f.sinking then error(err, 0) end
    f.defer = false
    failed(f, bg, err)
  end
  if not f.done then return false end
  ended(self, f, bg, bg.pending_err)
  return true
end

-- get([timeout]) -> results, stats once it ended; raises its error, or a
-- Timeout error when timeout passes first.
function Pipeline:get(timeout)
  check_background(self, "get", 2)
  check_timeout(timeout, "get", 2)
  if not self:wait(timeout) then raise("Timeout", "get: the pipeline did not end in time", 2) end
  local bg = self._bg
  if bg.err ~= nil then error(bg.err, 0) end
  return bg.results, bg.stats
end

-- ready() -> whether it ended: serves it once first (without waiting).
function Pipeline:ready()
  check_background(self, "ready", 2)
  if self._bg.state == "running" and serving_now ~= self then serve(self) end
  return self._bg.state ~= "running"
end

-- stats() -> the live view while it runs (started in the background, or
-- from an each sink), the final stats once it ended; nil before it started.
function Pipeline:stats()
  check_self(self, "stats", 2)
  local f = self._flow
  if not f then return nil end
  if self._bg and self._bg.stats then return self._bg.stats end
  return collect_stats(self, f)
end

function Pipeline.__tostring(self)
  local names = {}
  for i, s in ipairs(self.stages) do names[i] = s.name end
  return ("Pipeline (%s)"):format(#names > 0 and tconcat(names, " -> ") or "no stages")
end

return {
  new = new,
  produce = produce,
}
