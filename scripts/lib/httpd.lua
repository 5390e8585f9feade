-- scripts/lib/httpd.lua: a tiny HTTP server on 127.0.0.1 for the network
-- examples (image download, crawler), so that they never use the internet.
--
--   local httpd = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/httpd.lua")
--   local server <close> = httpd.start{ ["/a.jpg"] = bytes, ... }
--   server.url .. "/a.jpg"            -- http://127.0.0.1:PORT/a.jpg
--   httpd.get(url) -> body, status    -- a client, usable in any process
--
-- The server is a corral process (daemon, so it cannot outlive the script)
-- that serves the given paths, one request at a time, on a port the kernel
-- picks. Closing the variable (or server:stop()) asks it to stop, waits for
-- it and reaps it. Sockets come from LuaSocket (Debian's lua-socket,
-- installed by tools/deps.sh): Lua's standard library has none.
local mp = require "corral"

local M = {}

local Server = {}
Server.__index = Server

local function serve(routes, ready, stop)
  local socket = require "socket"
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0.02)
  local _, port = srv:getsockname()
  ready:put(port)
  while not stop:is_set() do
    local c = srv:accept()
    if c then
      c:settimeout(5)
      local line = c:receive("*l")
      repeat
        local h = c:receive("*l")
      until not h or h == ""
      local path = line and line:match("^GET (%S+)")
      local body = path and routes[path]
      if body then
        c:send(("HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"):format(#body) .. body)
      else
        c:send("HTTP/1.0 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n")
      end
      c:close()
    end
  end
  srv:close()
end

-- start(routes): routes maps a path ("/image1.jpg") to the body served there.
function M.start(routes)
  local ready, stop = mp.Queue(), mp.Event()
  local p = mp.Process{ name = "httpd", daemon = true, target = serve, args = { routes, ready, stop } }
  p:start()
  local port = ready:get(10)
  if not port then
    p:kill()
    p:join()
    error("the HTTP server did not start", 2)
  end
  return setmetatable({ port = port, url = "http://127.0.0.1:" .. port, process = p, _stop = stop,
                        owner = mp.getpid() }, Server)
end

-- stop(): stops the server process and reaps it (in the process that started it)
function Server:stop()
  if self.stopped or mp.getpid() ~= self.owner then return end
  self.stopped = true
  self._stop:set()
  if not self.process:join(5) then
    self.process:kill()
    self.process:join()
  end
end

Server.__close = Server.stop

-- get(url) -> body, status code (nil, message on a connection error)
function M.get(url)
  local http = require "socket.http"
  local body, code = http.request(url)
  return body, code
end

return M
