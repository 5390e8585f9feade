-- corral.trace_pipeline: what a pipeline shows of itself in the trace
-- (corral.trace). corral.pipeline_flow and corral.pipeline_worker call
-- these at a few points; while tracing is off, nothing here runs per
-- chunk (every call is behind a test of trace.on).
--
-- Tracks: each worker's is named "pipeline NAME / STAGE #k" (NAME is the
-- pipeline's name option, else its number among this process's
-- pipelines; a producer's STAGE is its source's name). On it, the engine
-- writes the worker's lifetime ("process") and the worker one slice per
-- chunk it worked on, named after its stage: items move in chunks, so a
-- slice's args say how many items it held (items) and the source index
-- of its first (first), with its seq. A worker's death, and the item it
-- lost (WorkerLost, Timeout), are instants on the dead worker's track;
-- the parent's track has "worker replaced" and one counter per stage,
-- "pipeline NAME / STAGE queue": the chunks waiting in the stage's input
-- queue, sampled when the parent looks at its workers.
--
-- Flow arrows: a chunk keeps its seq from the first stage to the last
-- (a batch stage regroups the items but passes each chunk on under its
-- seq), so with two stages or more each chunk is one flow, id the
-- pipeline's base plus its seq: "s" in its slice at the first stage, "t"
-- at the middle ones, "f" at the last. A chunk a filter empties ends its
-- flow there.
local _, core = ...

local trace = require "corral.trace"

local tostring, ipairs = tostring, ipairs
local instant, counter, slice, flow_step = core._trace_instant, core._trace_counter, core._trace_slice,
  core._trace_flow
local now = core.time

local P = { trace = trace }

local pipelines = 0

-- ---- the parent ------------------------------------------------------------------

-- A new flow's label: "pipeline NAME".
function P.flow_new(flow)
  pipelines = pipelines + 1
  flow.label = "pipeline " .. (flow.p.opts.name or tostring(pipelines))
  -- the flow ids of its chunks: this process's pid (22 bits at most), the
  -- pipeline's count (2 bits: pipelines 4 apart that run at the same time
  -- would share ids), 29 bits of seq; under 2^53, which a viewer reading
  -- JSON numbers as doubles keeps exact
  flow.flow_base = (core.getpid() << 31) | ((pipelines & 3) << 29)
end

-- What the workers of stage g write to link a chunk's slices: the flow
-- phase ("s", "t", "f"; nil with one stage) and the ids' base.
function P.chunk_flow(flow, g)
  local n = #flow.stages
  if not trace.on or n < 2 then return nil end
  return g == 1 and "s" or g == n and "f" or "t", flow.flow_base
end

-- The name of the track of worker k of stage (or source) `name`.
function P.track(flow, name, k)
  return ("%s / %s #%d"):format(flow.label, name, k)
end

-- Worker w (its record in flow.workers) was found dead.
function P.worker_died(w)
  if trace.on then instant("worker died", "fault", w.pid, "exitcode", w.proc.exitcode) end
end

-- err (WorkerLost or Timeout) is the error of the item worker w was running.
function P.item_lost(w, err)
  if not trace.on then return end
  if err.kind == "Timeout" then
    instant("Timeout", "fault", w.pid, "item", err.index, "limit", w.stage.timeout)
  else
    instant(err.kind, "fault", w.pid, "item", err.index, "exitcode", err.exitcode)
  end
end

-- Worker w is killed: its item ran past its stage's limit of `limit` seconds.
function P.timeout_kill(w, limit)
  if trace.on then instant("Timeout", "fault", w.pid, "limit", limit) end
end

-- The worker of `slot` (pid old) was replaced by the one now in it.
function P.worker_replaced(flow, slot, old)
  if trace.on then
    local w = flow.workers[slot]
    instant("worker replaced", "pipeline", 0, "stage", w.stage.name, "k", w.k, "old_pid", old, "new_pid", w.pid)
  end
end

-- One sample of every stage's input queue fill, in chunks.
function P.queues(flow)
  if not trace.on or flow.stopped then return end
  for g, s in ipairs(flow.stages) do
    counter(("%s / %s queue"):format(flow.label, s.name), "chunks", flow.q[g]:qsize())
  end
end

-- ---- the workers -------------------------------------------------------------------

-- The slice of a chunk of n items, the first at source index first, that
-- stage `name` worked on from t0 to now; with ph (P.chunk_flow), its flow
-- step, in the middle of the slice (a flow event binds to the slice that
-- encloses it).
function P.chunk(name, t0, seq, n, first, ph, base)
  local t1 = now()
  slice(name, "pipeline", t0, t1, "items", n, "first", first, "seq", seq)
  if ph then flow_step(ph, base | (seq & 0x1fffffff), "chunk", "pipeline", (t0 + t1) / 2) end
end

return P
