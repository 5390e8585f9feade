-- corral.log: the logger, as Python's multiprocessing.get_logger() and
-- log_to_stderr(). One logger for the program; its lines go to stderr
-- once log_to_stderr was called (in this process or in one it was started
-- from), prefixed with the time, the level, the process name and pid:
--   [16:03:20.123 INFO/MainProcess 4242] message
-- The engine's own lines (processes starting and ending, at-exit joins)
-- and those of pools come through the same writer (engine/src/log.c).
local _, core = ...

local type, tostring, select, sformat = type, tostring, select, string.format
local raise = core._raise
local clog, clevel = core._log, core._log_level

local LEVELS = { debug = 10, info = 20, warning = 30, error = 40 }
local NAMES = { [10] = "debug", [20] = "info", [30] = "warning", [40] = "error" }
local OFF = 1000

local M = {}

-- The level lines are written at (the C side holds OFF until log_to_stderr).
local inherited = clevel()
local attached = inherited < OFF
local level = attached and inherited or LEVELS.warning
local threshold = attached and level or OFF -- what is written: a cheap test

local function check_level(lv, fname)
  if type(lv) == "string" then
    local n = LEVELS[lv:lower()]
    if n then return n end
  elseif math.type(lv) == "integer" and lv > 0 then
    return lv
  end
  raise("ValueError", ("%s: level must be 'debug', 'info', 'warning', 'error' or a positive integer, got %s")
    :format(fname, type(lv) == "string" and ("'" .. lv .. "'") or tostring(lv)))
end

local function apply()
  threshold = attached and level or OFF
  clevel(threshold)
end

-- Writes a line at level n: msg, or msg:format(...) with arguments.
local function write(n, msg, ...)
  if n < threshold then return end
  if select("#", ...) > 0 then msg = sformat(msg, ...) else msg = tostring(msg) end
  clog(n, msg)
end
M.write = write

-- Whether a line at level n would be written (to skip building one).
function M.enabled(n) return n >= threshold end

M.DEBUG, M.INFO, M.WARNING, M.ERROR = LEVELS.debug, LEVELS.info, LEVELS.warning, LEVELS.error

local Logger = { __name = "corral.Logger" }
Logger.__index = Logger

function Logger:debug(msg, ...) return write(10, msg, ...) end
function Logger:info(msg, ...) return write(20, msg, ...) end
function Logger:warning(msg, ...) return write(30, msg, ...) end
function Logger:error(msg, ...) return write(40, msg, ...) end
Logger.warn = Logger.warning

function Logger:log(lv, msg, ...) return write(check_level(lv, "log"), msg, ...) end

function Logger:set_level(lv)
  level = check_level(lv, "set_level")
  apply()
end

-- The level's name ("info"), or its number for another level.
function Logger:get_level() return NAMES[level] or level end

function Logger:is_enabled_for(lv) return check_level(lv, "is_enabled_for") >= threshold end

function Logger.__tostring() return ("<Logger corral (%s%s)>"):format(tostring(NAMES[level] or level),
  attached and ", to stderr" or "") end

local logger = setmetatable({}, Logger)

function M.get_logger() return logger end

-- log_to_stderr([level]): lines from now on go to stderr, in this process
-- and the processes it starts; level, when given, is set first.
function M.log_to_stderr(lv)
  if lv ~= nil then level = check_level(lv, "log_to_stderr") end
  attached = true
  apply()
  return logger
end

return M
