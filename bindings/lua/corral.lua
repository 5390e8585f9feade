-- corral: the public module, built on the C core (bindings/src).
--
-- Every core field whose name does not start with "_" is public as is; this
-- file adds what Lua says more clearly: the Process class, start methods and
-- contexts, current/parent process and active_children.
local _, core = ...

local M = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:sub(1, 1) ~= "_" then M[k] = v end
end
M._VERSION = core._VERSION
M.VERSION = core._VERSION

local type, pairs, ipairs, setmetatable, getmetatable, rawget, rawset, tostring, error, select =
  type, pairs, ipairs, setmetatable, getmetatable, rawget, rawset, tostring, error, select
local tunpack = table.unpack
local raise = core._raise -- where: the caller's line outside corral, at any depth

local START_METHODS = { fork = true, spawn = true }
local default_method = os.getenv("CORRAL_START_METHOD") or "fork"
if not START_METHODS[default_method] then
  error(("CORRAL_START_METHOD must be 'fork' or 'spawn', not '%s'"):format(default_method))
end

-- ---- Process ---------------------------------------------------------------

local Process = {}
local ClassMeta = {}        -- metatable of every process class
local children = {}         -- started here, not yet seen ended: obj -> true
local counter = 0           -- for default names
local current               -- the Process object of this process (a child), or the main one
local parent_info           -- {pid=, name=} in a child
local main_process          -- the Process object of the main process (set below)

-- Fields computed on access; everything else is looked up in the class.
local getters = {
  -- after close() too: the code it ended with is kept (Python raises)
  exitcode = function(self)
    if rawget(self, "_closed") then return rawget(self, "_exitcode_at_close") end
    local h = rawget(self, "_handle")
    if h then return h:exitcode() end
    return nil
  end,
}

local function process_index(self, k)
  local g = getters[k]
  if g then return g(self) end
  return getmetatable(self)[k]
end

Process.__index = process_index
Process.__name = "corral.Process"

function Process.__tostring(self)
  local state
  local h = rawget(self, "_handle")
  if rawget(self, "_closed") then state = "closed"
  elseif not h then state = "initial"
  elseif h:alive() then state = "started"
  else state = "stopped exitcode=" .. tostring(h:exitcode()) end
  return ("<%s name='%s' pid=%s %s%s>"):format("Process", tostring(self.name),
    tostring(rawget(self, "pid")), state, self.daemon and " daemon" or "")
end

local function construct(cls, ...)
  local self = setmetatable({}, cls)
  counter = counter + 1
  local prefix = current and rawget(current, "_name_prefix")
  self.name = prefix and (prefix .. ":" .. counter) or ("Process-" .. counter)
  self._name_prefix = self.name
  self.daemon = current and current.daemon or false
  self._args = {}
  self:init(...)
  return self
end

ClassMeta.__call = construct
ClassMeta.__index = function(cls, k)
  local super = rawget(cls, "super")
  if super then return super[k] end
  return nil
end
setmetatable(Process, ClassMeta)

-- Process:extend() -> a subclass; define init(...) and run() on it.
function Process:extend()
  local cls = { super = self, __index = process_index, __tostring = Process.__tostring,
                __name = "corral.Process" }
  return setmetatable(cls, ClassMeta)
end

local function checkargs(args)
  if args == nil then return {} end
  if type(args) ~= "table" then
    raise("ValueError", "Process 'args' must be an array table, got " .. type(args))
  end
  return args
end

-- Process{target=, args=, name=, daemon=}
function Process:init(opts)
  if opts == nil then return end
  if type(opts) ~= "table" then
    raise("ValueError", "Process expects a table {target=, args=, name=, daemon=}, got " .. type(opts))
  end
  for k in pairs(opts) do
    if k ~= "target" and k ~= "args" and k ~= "name" and k ~= "daemon" then
      raise("ValueError", "Process: unknown option '" .. tostring(k) .. "'")
    end
  end
  local target = opts.target
  if target ~= nil and type(target) ~= "function" and not (getmetatable(target) or {}).__call then
    raise("ValueError", "Process 'target' must be callable, got " .. type(target))
  end
  self._target = target
  self._args = checkargs(opts.args)
  if opts.name ~= nil then
    if type(opts.name) ~= "string" then raise("ValueError", "Process 'name' must be a string") end
    self.name = opts.name
  end
  if opts.daemon ~= nil then self.daemon = not not opts.daemon end
end

-- What the child runs; override in a subclass.
function Process:run()
  local target = rawget(self, "_target")
  if target then
    local args = self._args
    target(tunpack(args, 1, args.n or #args))
  end
end

-- Every method checks its self first: p.start() for p:start() is a
-- TypeError naming the method, not an error from deep inside.
local function check_self(self, what)
  local cls = type(self) == "table" and getmetatable(self)
  if not (cls and getmetatable(cls) == ClassMeta) then
    local got = type(self) == "table" and (getmetatable(self) or {}).__name or type(self)
    raise("TypeError", "calling '" .. what .. "' on bad self (Process expected, got " .. tostring(got) .. ")")
  end
end

local function check_open(self, what)
  check_self(self, what)
  if rawget(self, "_closed") then raise("Closed", "attempt to use a closed Process (" .. what .. ")") end
end

function Process:start()
  check_open(self, "start")
  if rawget(self, "_handle") then raise("StateError", "cannot start a process twice") end
  if current and rawget(current, "daemon") and rawget(current, "_is_child") then
    raise("StateError", "daemonic processes are not allowed to have children")
  end
  local method = self._method or default_method
  self._start_method = method
  self._parent_name = M.current_process().name
  local ok, handle = pcall(core._start, self, method, self.daemon, self.name)
  if not ok then
    local err = handle
    if M.iserror(err, "EncodeError") then
      -- Name what the user gave: args[2].cb, target<upvalue 'co'>.
      local msg = err.message:gsub("^process%._args", "args"):gsub("^process%._target", "target")
      raise("EncodeError", msg)
    end
    error(err, 0)
  end
  self._handle = handle
  self.pid = handle:pid()
  children[self] = true
end

local function started(self, what)
  check_open(self, what)
  local h = rawget(self, "_handle")
  if not h then raise("StateError", "can only " .. what .. " a started process") end
  return h
end

-- join(timeout) -> true once ended, false on timeout
function Process:join(timeout)
  local h = started(self, "join")
  if self == current then raise("StateError", "cannot join the current process") end
  local done = h:join(timeout)
  if done then children[self] = nil end
  return done
end

function Process:is_alive()
  check_open(self, "is_alive")
  if self == (current or main_process) then return true end
  -- the parent: alive while it is still this process's parent
  if rawget(self, "_foreign") then return core.getppid() == rawget(self, "pid") end
  local h = rawget(self, "_handle")
  if not h then return false end
  if not h:mine() then return false end
  local alive = h:alive()
  if not alive then children[self] = nil end
  return alive
end

function Process:terminate() started(self, "terminate"):signal(core._SIGTERM) end
function Process:kill() started(self, "kill"):signal(core._SIGKILL) end

function Process:close()
  check_self(self, "close")
  if rawget(self, "_closed") then return end
  local h = rawget(self, "_handle")
  if h then
    if h:alive() then
      raise("StateError", "cannot close a process while it is still running; join or terminate it first")
    end
    self._exitcode_at_close = h:exitcode()
    h:release()
  end
  children[self] = nil
  self._closed = true
end

-- In the child: make obj the current process, then run it.
core._set_bootstrap(function(obj)
  parent_info = { pid = core.getppid(), name = rawget(obj, "_parent_name") or "MainProcess" }
  children = {}
  counter = 0
  rawset(obj, "_handle", nil)
  rawset(obj, "pid", core.getpid())
  rawset(obj, "_is_child", true)
  -- its own children start as it was started, unless it says otherwise
  default_method = rawget(obj, "_start_method") or default_method
  current = obj
  obj:run()
end)

M.Process = Process
M._process_index = process_index
M._ClassMeta = ClassMeta

-- ---- process-wide queries ---------------------------------------------------

main_process = setmetatable({ name = "MainProcess", daemon = false, pid = core.getpid(),
                                    _name_prefix = nil }, Process)

function M.current_process()
  return current or main_process
end

function M.parent_process()
  if not parent_info then return nil end
  return setmetatable({ name = parent_info.name, pid = parent_info.pid, daemon = false, _foreign = true }, Process)
end

-- Live children started by this process; the ones that ended are reaped.
function M.active_children()
  local out = {}
  for p in pairs(children) do
    local h = rawget(p, "_handle")
    if h and h:mine() and h:alive() then
      out[#out + 1] = p
    else
      children[p] = nil
    end
  end
  table.sort(out, function(a, b) return a.pid < b.pid end)
  return out
end

-- ---- pools (corral.pool) ------------------------------------------------------

-- Pool(n, {initializer=, initargs=, maxtasksperchild=})
function M.Pool(n, opts)
  return require("corral.pool").Pool(n, opts)
end

-- ---- observability (corral.trace, corral.log) ---------------------------------

-- trace(path) / trace(false) / trace(): the timeline (docs/observability.md)
function M.trace(...) return require("corral.trace").trace(...) end
function M.log_to_stderr(level) return require("corral.log").log_to_stderr(level) end
function M.get_logger() return require("corral.log").get_logger() end

-- ---- pipelines (corral.pipeline) ---------------------------------------------

-- pipeline(source, opts) -> a Pipeline; pipeline.produce(fn, opts) -> a source
M.pipeline = setmetatable({}, {
  __call = function(_, source, opts) return require("corral.pipeline").new(source, opts) end,
  __index = function(_, k) return require("corral.pipeline")[k] end,
})

-- ---- start methods and contexts ---------------------------------------------

local function check_method(m)
  if not START_METHODS[m] then
    raise("ValueError", "unknown start method '" .. tostring(m) .. "' (expected 'fork' or 'spawn')")
  end
end

function M.set_start_method(m)
  check_method(m)
  default_method = m
end

function M.get_start_method() return default_method end

function M.get_all_start_methods() return { "fork", "spawn" } end

-- get_context(m): an object with the module's constructors bound to method m.
function M.get_context(m)
  if m == nil then m = default_method end
  check_method(m)
  local ctx = setmetatable({}, { __index = M })
  local P = Process:extend()
  P._method = m
  P.init = Process.init
  ctx.Process = P
  function ctx.Pool(n, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.context = ctx
    return require("corral.pool").Pool(n, o)
  end
  function ctx.get_start_method() return m end
  return ctx
end

return M
