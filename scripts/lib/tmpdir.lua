-- scripts/lib/tmpdir.lua: a private temporary directory for an example.
--
--   local tmpdir = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/tmpdir.lua")
--   local tmp <close> = tmpdir.new()
--   local path = tmp:file("tickets.json")
--
-- The directory is made under $TMPDIR (default /tmp) with mktemp, and it is
-- removed with everything in it when the variable goes out of scope (or on
-- tmp:remove()), only by the process that made it: a forked child that
-- inherits the object leaves it alone.
local mp = require "corral"

local Tmp = {}
Tmp.__index = Tmp

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function new(prefix)
  local base = os.getenv("TMPDIR")
  if not base or base == "" then base = "/tmp" end
  local p = assert(io.popen("mktemp -d " .. quote(base .. "/" .. (prefix or "corral-example") .. ".XXXXXX")))
  local path = p:read("l")
  p:close()
  assert(path and path ~= "", "mktemp -d failed")
  return setmetatable({ path = path, owner = mp.getpid() }, Tmp)
end

-- file(name): the path of `name` inside the directory
function Tmp:file(name)
  return self.path .. "/" .. name
end

-- remove(): removes the directory and its contents (in the owner only)
function Tmp:remove()
  if self.removed or mp.getpid() ~= self.owner then return end
  self.removed = true
  os.execute("rm -rf " .. quote(self.path))
end

Tmp.__close = Tmp.remove

return { new = new }
