-- The failure convention, swept: every public function and method, called
-- with a few kinds of bad argument each, raises an error object whose kind
-- is ValueError (a bad argument) or TypeError (a method called on what is
-- not its object, a value its typed slot cannot hold), and whose `where` is
-- the line of this file that made the call: never empty, never a line
-- inside corral. A last test checks that the sweep names every public
-- function and method. Runs under both start methods.
local H = require "spec.helper"
local mp = H.mp

local SRC = debug.getinfo(1, "S").short_src
local unpack, pack = table.unpack, table.pack

-- An argument left out: the argument list ends before it.
local NONE = setmetatable({}, { __tostring = function() return "<none>" end })

-- Bad values for each kind of parameter (a list of values serves as is).
local BAD = {
  timeout = { "x", {}, true, -1, 0 / 0, print },
  count = { "x", {}, true, -1, 1.5 },        -- an optional integer >= 0
  positive = { "x", {}, true, 0, -1, 1.5 },   -- an integer >= 1
  fn = { 5, "x", {}, true, NONE },           -- something callable
  optfn = { 5, "x", {}, true },              -- the same, or nil
  opts = { 5, "x", true, { bogus = 1 } },     -- an options table
  string = { {}, true, print, NONE },
  typecode = { "z", "", 5, {}, true, NONE },
  array = { 5, "x", true, print },            -- an array table
  integer = { "x", {}, true, 1.5 },
  value = { NONE },                           -- any value, nil included
  key = { {}, print },                        -- a Manager dict's key
  method = { "thread", 5, {}, true },         -- a start method
}

local function show(v)
  if v == NONE then return "<none>" end
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" and next(v) then
    local k, x = next(v)
    return ("{%s = %s}"):format(tostring(k), tostring(x))
  end
  return (tostring(v):gsub(": 0x%x+", ""))
end

-- Calls fn(args...) (the list ends at the first NONE) and returns what
-- pcall gave, the `where` of this call, and kind.
local function call(fn, args, kind)
  local n = args.n
  for i = 1, n do if args[i] == NONE then n = i - 1; break end end
  local here = ("%s:%d: "):format(SRC, debug.getinfo(1, "l").currentline + 1)
  local ok, err = pcall(fn, unpack(args, 1, n))
  return ok, err, here, kind
end

-- What is wrong with the outcome of one call, or nil.
local function problem(ok, err, here, kind)
  if ok then return "no error" end
  if not mp.iserror(err) then return "a plain " .. type(err) .. ": " .. tostring(err) end
  if err.kind ~= kind then return ("kind %s, not %s: %s"):format(err.kind, kind, tostring(err)) end
  if err.where ~= here then return ("where %q, not %q: %s"):format(tostring(err.where), here, tostring(err)) end
end

-- fn(args...) with args[i] replaced, in turn, by each bad value of
-- params[i] (a kind of BAD, or a list); each call must raise `kind`.
-- Appends what went wrong to failures; returns the number of calls.
local function sweep_args(failures, label, fn, args, params, kind)
  local calls = 0
  for i, p in pairs(params) do
    for _, bad in ipairs(type(p) == "string" and BAD[p] or p) do
      local a = pack(unpack(args, 1, args.n))
      a[i] = bad
      a.n = math.max(a.n, i)
      calls = calls + 1
      local why = problem(call(fn, a, kind or "ValueError"))
      if why then failures[#failures + 1] = ("%s, argument %d = %s: %s"):format(label, i, show(bad), why) end
    end
  end
  return calls
end

-- Method `name` of obj: with bad arguments (params numbered after self;
-- each must raise `kind`), then with bad selves, `other` (a handle of
-- another kind) among them: a TypeError each.
local function sweep_method(failures, label, obj, name, args, params, other, kind)
  local fn = obj[name]
  if type(fn) ~= "function" then
    failures[#failures + 1] = label .. ": no such method"
    return 0
  end
  args = args or pack()
  local full = pack(obj, unpack(args, 1, args.n))
  local shifted = {}
  for i, p in pairs(params or {}) do shifted[i + 1] = p end
  local calls = sweep_args(failures, label, fn, full, shifted, kind)
  for _, bad in ipairs{ 5, "x", {}, other or NONE, NONE } do
    calls = calls + 1
    local why = problem(call(fn, pack(bad), "TypeError"))
    if why then failures[#failures + 1] = ("%s, self = %s: %s"):format(label, show(bad), why) end
  end
  return calls
end

local function report(calls, failures)
  assert(calls > 0, "nothing was called")
  assert(#failures == 0, #failures .. " of " .. calls .. " bad calls broke the convention:\n  "
    .. table.concat(failures, "\n  "))
end

-- ---- what is swept ----------------------------------------------------------------

-- The module's functions: name, good arguments, bad ones by position.
local FUNCTIONS = {
  { "Queue", pack(nil), { "count" } },
  { "JoinableQueue", pack(nil), { "count" } },
  { "Semaphore", pack(nil), { "count" } },
  { "BoundedSemaphore", pack(nil), { "count" } },
  { "Condition", pack(nil), { { 5, "x", {}, true, "<a Queue>" } } },
  { "Barrier", pack(2, nil, nil), { "positive", "optfn", "timeout" } },
  { "Value", pack("i", 0, nil), { "typecode", [3] = "opts" } },
  { "RawValue", pack("i", 0), { "typecode" } },
  { "Array", pack("i", 3, nil), { "typecode", { "x", true, -1, 1.5, print }, "opts" } },
  { "RawArray", pack("i", 3), { "typecode", { "x", true, -1, 1.5, print } } },
  { "Pool", pack(nil, nil), { { "x", {}, true, 0, -1, 1.5 },
    { 5, "x", true, { bogus = 1 }, { initializer = 5 }, { initargs = 5 }, { maxtasksperchild = 0 } } } },
  { "Process", pack(nil), { { 5, "x", true, { bogus = 1 }, { target = 5 }, { args = 5 }, { name = 5 } } } },
  { "sleep", pack(0), { { "a", {}, true, -1, 0 / 0, NONE } } },
  { "encode", pack(1, nil), { "value", { {}, true } } },
  { "decode", pack(mp.encode(1), nil), { "string", "opts" } },
  { "set_start_method", pack(H.method), { { "thread", 5, {}, true, NONE } } },
  { "get_context", pack(nil), { "method" } },
  { "iserror", pack(select(2, pcall(mp.sleep, -1)), nil), { [2] = { {}, true, print } } },
  { "trace", pack(false), { { 5, "", {}, true, print } } },
  { "log_to_stderr", pack(nil), { { "loud", 0, -1, 1.5, {}, true } } },
  -- Values that a typed slot cannot hold.
  { "Value", pack("i", 0), { [2] = { "x", 1.5, {} } }, "TypeError" },
  { "RawValue", pack("d", 0), { [2] = { "x", {}, true } }, "TypeError" },
}

-- Functions that take no argument, or any value as one.
local NO_BAD_ARGUMENTS = {
  Lock = true, RLock = true, Event = true, SimpleQueue = true, Manager = true, Pipe = true,
  active_children = true, arena_stats = true, cpu_count = true, current_process = true,
  get_all_start_methods = true, get_start_method = true, getpid = true, getppid = true,
  parent_process = true, time = true, get_logger = true,
}

local LOCK_METHODS = {
  { "acquire", pack(nil), { { "x", {}, -1, 0 / 0 } } },
  { "guard", pack(nil), { { "x", {}, -1 } } },
  { "with", pack(function() end), { "fn" } },
  { "release" },
  { "close" },
}

local QUEUE_METHODS = {
  { "put", pack(1, nil), { "value", "timeout" } },
  { "get", pack(nil), { "timeout" } },
  { "put_nowait", pack(1), { "value" } },
  { "get_nowait" }, { "qsize" }, { "empty" }, { "full" }, { "close" }, { "is_closed" },
  { "iter", pack(nil), { "timeout" } },
}

local function concat(...)
  local out = {}
  for _, list in ipairs{ ... } do for _, x in ipairs(list) do out[#out + 1] = x end end
  return out
end

-- The methods of each type of object: how to make one, its methods as
-- {name, good arguments, bad ones by position[, their kind]}, and which
-- handle to pass as a wrong self (a type may have several entries).
local TYPES = {
  { "Queue", function() return mp.Queue() end, QUEUE_METHODS, mp.Lock },
  { "SimpleQueue", function() return mp.SimpleQueue() end, QUEUE_METHODS, mp.Lock },
  { "JoinableQueue", function() return mp.JoinableQueue() end, QUEUE_METHODS, mp.Lock },
  -- Only these need a JoinableQueue: a plain Queue is a wrong self.
  { "JoinableQueue", function() return mp.JoinableQueue() end, {
    { "task_done" }, { "join", pack(nil), { "timeout" } },
  }, mp.Queue },
  { "Pipe", function() return (mp.Pipe()) end, {
    { "send", pack(1), { "value" } },
    { "recv", pack(nil), { "timeout" } },
    { "poll", pack(nil), { "timeout" } },
    { "send_bytes", pack("x"), { "string" } },
    { "recv_bytes", pack(nil), { "timeout" } },
    { "readable" }, { "writable" }, { "close" },
  }, mp.Lock },
  { "Lock", function() return mp.Lock() end, concat(LOCK_METHODS, { { "locked" } }), mp.Queue },
  { "RLock", function() return mp.RLock() end, concat(LOCK_METHODS, { { "depth" }, { "locked" } }), mp.Queue },
  { "Semaphore", function() return mp.Semaphore(1) end, concat(LOCK_METHODS, { { "get_value" } }), mp.Queue },
  { "BoundedSemaphore", function() return mp.BoundedSemaphore(1) end, concat(LOCK_METHODS, { { "get_value" } }),
    mp.Queue },
  { "Condition", function() return mp.Condition() end, concat(LOCK_METHODS, {
    { "wait", pack(nil), { "timeout" } },
    { "wait_for", pack(function() return true end, nil), { "fn", "timeout" } },
    { "notify", pack(nil), { "integer" } },
    { "notify_all" },
  }), mp.Queue },
  { "Event", function() return mp.Event() end, {
    { "set" }, { "clear" }, { "is_set" }, { "wait", pack(nil), { "timeout" } }, { "close" },
  }, mp.Queue },
  { "Barrier", function() return mp.Barrier(1) end, {
    { "wait", pack(nil), { "timeout" } }, { "reset" }, { "abort" }, { "close" },
  }, mp.Queue },
  { "Value", function() return mp.Value("i", 1) end, {
    { "get_lock" }, { "close" },
    { "add", pack(1), { { "x", 1.5, {} } }, "TypeError" },
    { "compare_and_set", pack(1, 2), { "integer", "integer" }, "TypeError" },
  }, mp.Queue },
  { "Array", function() return mp.Array("i", 2) end, { { "get_lock" }, { "totable" }, { "close" } }, mp.Queue },
  { "Manager", function() return mp.Manager() end, {
    { "list", pack(nil), { { 5, "x", true } } },
    { "dict", pack(nil), { { 5, "x", true } } },
    { "Namespace" },
    { "Queue", pack(nil), { "count" } },
    { "JoinableQueue", pack(nil), { "count" } },
    { "Lock" }, { "RLock" }, { "Event" },
    { "Semaphore", pack(nil), { "count" } },
    { "BoundedSemaphore", pack(nil), { "count" } },
    { "Condition", pack(nil), { { 5, "x", {} } } },
    { "Value", pack("i", 0), { "typecode" } },
    { "Array", pack("i", 2), { "typecode", { "x", true, -1, 1.5 } } },
    { "Barrier", pack(2), { "positive" } },
    { "is_shutdown" }, { "shutdown" },
  }, mp.Queue },
  { "ListProxy", function(m) return m:list{ 1, 2, 3 } end, {
    { "append", pack(1), { "value" } },
    { "extend", pack({}), { { 5, "x", true } } },
    { "insert", pack(1, 0), { "integer", "value" } },
    { "pop", pack(nil), { "integer" } },
    { "remove", pack(1), { "value" } },
    { "index", pack(1, 1, 3), { "value", "integer", "integer" } },
    { "count", pack(1), { "value" } },
    { "sort", pack(nil), { { 5, "x", {} } } },
    { "totable" }, { "reverse" }, { "clear" },
  }, mp.Queue },
  { "DictProxy", function(m) return m:dict{ a = 1 } end, {
    { "get", pack("a"), { "key" } },
    { "pop", pack("a", 0), { "key" } },
    { "update", pack({}), { { 5, "x", true } } },
    { "setdefault", pack("b", 0), { "key" } },
    { "keys" }, { "values" }, { "items" }, { "totable" }, { "copy" }, { "popitem" }, { "clear" },
  }, mp.Queue },
}

-- Lua-side objects: their methods' bad arguments (their selves are not
-- swept).
local POOL_METHODS = {
  { "apply", pack(function() end), { "fn" } },
  { "apply_async", pack(function() end, nil, nil), { "fn", "array", "opts" } },
  { "map", pack(function() end, {}, nil, nil), { "fn", "array", { "x", true, 0, -1, 1.5 }, "opts" } },
  { "map_async", pack(function() end, {}, nil, nil), { "fn", "array", { "x", true, 0, -1, 1.5 }, "opts" } },
  { "starmap", pack(function() end, {}, nil, nil), { "fn", "array", { "x", true, 0, -1, 1.5 }, "opts" } },
  { "starmap_async", pack(function() end, {}, nil, nil), { "fn", "array", { "x", true, 0, -1, 1.5 }, "opts" } },
  { "imap", pack(function() end, {}, nil, nil), { "fn", { 5, "x", true }, { "x", true, 0, -1, 1.5 }, "opts" } },
  { "imap_unordered", pack(function() end, {}, nil, nil),
    { "fn", { 5, "x", true }, { "x", true, 0, -1, 1.5 }, "opts" } },
  { "join", pack(nil), {} }, -- a running pool: a StateError first
  { "stats" }, { "close" }, { "terminate" },
}
local RESULT_METHODS = {
  { "get", pack(nil), { "timeout" } }, { "wait", pack(nil), { "timeout" } }, { "ready" }, { "successful" },
}
-- The Process class's methods; init and run are the ones a subclass
-- defines, extend is called on a class.
local PROCESS_METHODS = {
  { "start" }, { "join", pack(nil), { "timeout" } }, { "is_alive" }, { "terminate" }, { "kill" }, { "close" },
}
local PROCESS_HOOKS = { init = true, run = true, extend = true }

-- A Pipeline's methods: bad arguments on one pipeline (a call that
-- raises adds no stage), then bad selves.
local PIPELINE_METHODS = {
  { "map", pack(function() end, nil), { "fn", "opts" } },
  { "filter", pack(function() end, nil), { "fn", "opts" } },
  { "flat_map", pack(function() end, nil), { "fn", "opts" } },
  { "batch", pack(2, nil), { "positive", "opts" } },
  { "reduce", pack(function() end, 0, nil), { "fn", [3] = "opts" } },
  { "each", pack(function() end), { "fn" } },
  { "run" }, { "iter" }, { "stats" },
}

local function resolve(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v == "<a Queue>" and mp.Queue() or v end
  return out
end

describe("misuse raises an error object (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  it("from the module's functions", function()
    local failures, calls = {}, 0
    for _, f in ipairs(FUNCTIONS) do
      local params = {}
      for i, p in pairs(f[3]) do params[i] = type(p) == "table" and resolve(p) or p end
      calls = calls + sweep_args(failures, "mp." .. f[1], mp[f[1]], f[2], params, f[4])
    end
    report(calls, failures)
  end)

  for _, t in ipairs(TYPES) do
    local tname, make, methods, other = t[1], t[2], t[3], t[4]
    it("from the methods of " .. tname .. " (" .. methods[1][1] .. "...)", function()
      local m <close> = tname:find("Proxy$") and mp.Manager() or nil
      local obj = make(m)
      local failures, calls = {}, 0
      for _, meth in ipairs(methods) do
        calls = calls + sweep_method(failures, tname .. ":" .. meth[1], obj, meth[1], meth[2], meth[3], other(),
          meth[4])
      end
      if tname == "Manager" then obj:shutdown() end
      report(calls, failures)
    end)
  end

  it("from the methods of Process objects", function()
    local failures, calls = {}, 0
    calls = calls + sweep_method(failures, "Process:start", mp.Process{ target = function() end }, "start")
    local p = mp.Process{ target = function() end }
    p:start()
    for _, meth in ipairs(PROCESS_METHODS) do
      if meth[1] ~= "start" and meth[1] ~= "close" then
        calls = calls + sweep_method(failures, "Process:" .. meth[1], p, meth[1], meth[2], meth[3])
      end
    end
    H.join_ok(p)
    calls = calls + sweep_method(failures, "Process:close", p, "close")
    report(calls, failures)
  end)

  it("from the methods of a Pool and its results", function()
    local failures, calls = {}, 0
    local pool <close> = mp.Pool(1)
    for _, meth in ipairs(POOL_METHODS) do
      local params = {}
      for i, p in pairs(meth[3] or {}) do params[i + 1] = p end
      local args = meth[2] or pack()
      calls = calls + sweep_args(failures, "Pool:" .. meth[1], pool[meth[1]], pack(pool, unpack(args, 1, args.n)),
        params)
    end
    local r = pool:apply_async(function(x) return x end, { 1 })
    for _, meth in ipairs(RESULT_METHODS) do
      local params = {}
      for i, p in pairs(meth[3] or {}) do params[i + 1] = p end
      calls = calls + sweep_args(failures, "AsyncResult:" .. meth[1], r[meth[1]], pack(r, nil), params)
    end
    r:get()
    report(calls, failures)
  end)

  it("from mp.pipeline, mp.pipeline.produce and the methods of a Pipeline", function()
    local failures, calls = {}, 0
    calls = calls + sweep_args(failures, "mp.pipeline", mp.pipeline, pack({}, nil),
      { { 5, "x", true, NONE }, "opts" })
    calls = calls + sweep_args(failures, "mp.pipeline.produce", mp.pipeline.produce, pack(function() end, nil),
      { "fn", "opts" })
    local p = mp.pipeline({})
    for _, meth in ipairs(PIPELINE_METHODS) do
      calls = calls + sweep_method(failures, "Pipeline:" .. meth[1], p, meth[1], meth[2], meth[3])
    end
    report(calls, failures)
  end)

  it("with the where of the caller when corral's own modules find the fault", function()
    local failures = {}
    local co = coroutine.create(function() end)
    local pool <close> = mp.Pool(1)
    local cases = {
      { "Pool:apply, an argument that cannot travel", pool.apply, pack(pool, function() end, co), "EncodeError" },
      { "Pool:map, a function that cannot travel", pool.map, pack(pool, function() return co end, { 1 }),
        "EncodeError" },
      { "Process{args = 5}", mp.Process, pack{ args = 5 }, "ValueError" },
    }
    for _, c in ipairs(cases) do
      local why = problem(call(c[2], c[3], c[4]))
      if why then failures[#failures + 1] = c[1] .. ": " .. why end
    end
    report(#cases, failures)
  end)

  it("names every public function and method", function()
    local named, missing = {}, {}
    for _, f in ipairs(FUNCTIONS) do named["mp." .. f[1]] = true end
    for name, v in pairs(mp) do
      if type(name) == "string" and name:sub(1, 1) ~= "_" and (type(v) == "function" or name == "Process")
        and not named["mp." .. name] and not NO_BAD_ARGUMENTS[name] then
        missing[#missing + 1] = "mp." .. name
      end
    end
    local function methods_of(obj)
      local idx = getmetatable(obj).__index
      if type(idx) == "function" then idx = select(2, debug.getupvalue(idx, 1)) end
      local out = {}
      for k, v in pairs(idx) do
        if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" then out[#out + 1] = k end
      end
      return out
    end
    local swept = {} -- type name -> method name -> true
    local function check_type(tname, obj, list)
      swept[tname] = swept[tname] or {}
      for _, meth in ipairs(list) do swept[tname][meth[1]] = true end
      return function()
        for _, k in ipairs(methods_of(obj)) do
          if not swept[tname][k] then missing[#missing + 1] = tname .. ":" .. k end
        end
      end
    end
    local m <close> = mp.Manager()
    local checks = {}
    for _, t in ipairs(TYPES) do checks[#checks + 1] = check_type(t[1], t[2](m), t[3]) end
    for _, c in ipairs(checks) do c() end
    local pool <close> = mp.Pool(1)
    check_type("Pool", pool, POOL_METHODS)()
    local r = pool:apply_async(function() end)
    check_type("AsyncResult", r, RESULT_METHODS)()
    r:get()
    for k, v in pairs(mp.Process) do
      local listed = false
      for _, meth in ipairs(PROCESS_METHODS) do listed = listed or meth[1] == k end
      if type(v) == "function" and k:sub(1, 1) ~= "_" and not listed and not PROCESS_HOOKS[k] then
        missing[#missing + 1] = "Process:" .. k
      end
    end
    table.sort(missing)
    assert(#missing == 0, "not swept: " .. table.concat(missing, ", "))
  end)
end)

describe("mp.iserror", function()
  it("tells corral's error objects, by kind", function()
    local _, err = pcall(mp.sleep, -1)
    assert.is_true(mp.iserror(err))
    assert.is_true(mp.iserror(err, "ValueError"))
    assert.is_false(mp.iserror(err, "Interrupted"))
    assert.is_false(mp.iserror("ValueError: x", "ValueError"))
    assert.is_false(mp.iserror({ kind = "ValueError" }, "ValueError"))
  end)

  it("takes Lua's own SIGINT error for an Interrupted, and nothing else of a string", function()
    -- what lua5.4's hook raises: luaL_error's position, then the message
    assert.is_true(mp.iserror("script.lua:3: interrupted!", "Interrupted"))
    assert.is_true(mp.iserror("interrupted!", "Interrupted"))
    assert.is_false(mp.iserror("script.lua:3: interrupted!"))        -- not an error object
    assert.is_false(mp.iserror("script.lua:3: interrupted!", "ValueError"))
    assert.is_false(mp.iserror("interrupted! then more", "Interrupted"))
    assert.is_false(mp.iserror("not interrupted", "Interrupted"))
  end)
end)
