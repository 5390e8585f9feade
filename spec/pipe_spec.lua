-- Pipe: duplex and simplex connections, poll, bytes, end of stream when
-- the far end is closed or its process is gone, bad input. Runs under both
-- start methods.
local H = require "spec.helper"
local mp = H.mp
local error, pcall = error, pcall -- process targets use only upvalues (see queue_spec.lua)
local testing = require "corral.testing"

local start = H.start

local join_ok = H.join_ok

local kind_of = H.kind_of

describe("Pipe (" .. H.method .. ")", function()
  after_each(function() H.assert_no_children() end)

  it("is duplex by default: an echo server in another process", function()
    local a, b = mp.Pipe()
    local p = start(function(a, b)
      a:close() -- as with OS pipes: an inherited unused end keeps the stream open
      while true do
        local v, why = b:recv(10)
        if why == "timeout" then error("no end of stream") end
        if why then break end
        b:send({ echo = v })
      end
    end, a, b)
    b:close() -- the child holds its own handle of b
    for i = 1, 100 do
      a:send(i)
      assert.are.same({ echo = i }, a:recv(10))
    end
    a:send({ nested = { "x" } })
    assert.are.same({ echo = { nested = { "x" } } }, a:recv(10))
    a:close() -- the child reads end of stream and exits
    join_ok(p)
  end)

  it("carries nil, and keeps order", function()
    local a, b = mp.Pipe()
    a:send(nil); a:send(1); a:send(nil)
    local v, why = b:recv(0)
    assert.is_nil(v); assert.is_nil(why)
    assert.are.equal(1, b:recv(0))
    v, why = b:recv(0)
    assert.is_nil(v); assert.is_nil(why)
  end)

  it("is one-way with duplex = false", function()
    local r, w = mp.Pipe(false)
    assert.is_true(r:readable()); assert.is_false(r:writable())
    assert.is_false(w:readable()); assert.is_true(w:writable())
    w:send("one way")
    assert.are.equal("one way", r:recv(1))
    assert.are.equal("StateError", (kind_of(r.send, r, 1)))
    assert.are.equal("StateError", (kind_of(w.recv, w, 0)))
    assert.are.equal("StateError", (kind_of(w.poll, w)))
  end)

  it("polls without taking, with a timeout", function()
    local a, b = mp.Pipe()
    assert.is_false(b:poll())
    assert.is_false(b:poll(0))
    assert.is_false(b:poll(0.05))
    local p = start(function(a) a:send("late") end, a)
    assert.is_true(b:poll(10))
    assert.is_true(b:poll())
    assert.are.equal("late", b:recv(0))
    assert.is_false(b:poll())
    local v, why = b:recv(0.05)
    assert.is_nil(v); assert.are.equal("timeout", why)
    join_ok(p)
  end)

  it("sends and receives raw bytes", function()
    local a, b = mp.Pipe()
    local bin = {}
    for i = 255, 0, -1 do bin[#bin + 1] = string.char(i) end
    bin = table.concat(bin)
    local p = start(function(b)
      local s = b:recv_bytes(10)
      b:send_bytes(s:reverse())
      b:send_bytes("")
    end, b)
    a:send_bytes(bin)
    assert.are.equal(bin:reverse(), a:recv_bytes(10))
    assert.are.equal("", a:recv_bytes(10))
    join_ok(p)
    local v, why = a:recv_bytes(0)
    assert.is_nil(v); assert.are.equal("timeout", why)
  end)

  it("reports end of stream after draining when the far end is closed", function()
    local a, b = mp.Pipe()
    local p = start(function(b)
      for i = 1, 3 do b:send(i) end
      b:close()
    end, b)
    b:close()
    join_ok(p)
    for i = 1, 3 do assert.are.equal(i, a:recv(10)) end
    assert.is_true(a:poll()) -- recv would not block
    local v, why = a:recv(10)
    assert.is_nil(v); assert.are.equal("closed", why)
    v, why = a:recv()
    assert.is_nil(v); assert.are.equal("closed", why)
    local kind = kind_of(a.send, a, "anyone?")
    assert.are.equal("Closed", kind)
  end)

  it("reports end of stream when the far end's process is killed", function()
    local a, b = mp.Pipe()
    local p = start(function(b)
      b:send("ready")
      mp.sleep(60) -- until killed
    end, b)
    b:close()
    assert.are.equal("ready", a:recv(10))
    local v, why = a:recv(0.05)
    assert.are.equal("timeout", why) -- alive: no end yet
    p:kill()
    v, why = a:recv(10)
    assert.is_nil(v); assert.are.equal("closed", why)
    assert.is_true(p:join(10))
  end)

  -- Sends 1 KiB messages on conn until one raises; returns how many were
  -- sent first, and the error's kind (nil after `limit` sends).
  local function send_until_closed(conn, limit)
    local msg = ("m"):rep(1024)
    for n = 0, limit - 1 do
      local ok, err = pcall(conn.send, conn, msg)
      if not ok then return n, err.kind end
    end
    return limit
  end

  it("raises Closed in a writer whose reader was killed, before anyone reaps it", function()
    local a, b = mp.Pipe()
    local p = start(function(a, b)
      a:close()
      b:send("ready")
      mp.sleep(60) -- until killed
    end, a, b)
    b:close()
    assert.are.equal("ready", a:recv(10))
    p:kill() -- not joined: a send never reaps, so nobody has reaped it
    local n, kind = send_until_closed(a, 20000)
    assert.is_true(p:join(10))
    assert.are.equal("Closed", kind)
    assert.is_true(n < 5000, n .. " sends went through")
  end)

  it("raises Closed in a sibling writer when the reader is killed", function()
    local a, b = mp.Pipe()
    local ready, go = mp.Queue(), mp.Queue()
    local result = mp.RawValue("q", -1)
    local reader = start(function(a, b, ready)
      a:close()
      ready:put("reader")
      mp.sleep(60) -- until killed
    end, a, b, ready)
    local writer = start(function(a, b, ready, go, result)
      b:close()
      ready:put("writer")
      go:get(30)
      local n, kind = send_until_closed(a, 20000)
      result.value = kind == "Closed" and n or 20000
    end, a, b, ready, go, result)
    a:close(); b:close()
    ready:get(10); ready:get(10)
    reader:kill()
    go:put("go")
    -- Wait without servicing the engine, so that the reader stays unreaped.
    local deadline = mp.time() + 30
    while result.value < 0 and mp.time() < deadline do end
    assert.is_true(reader:join(10))
    join_ok(writer)
    assert.is_true(result.value < 5000, result.value .. " sends went through")
  end)

  it("delivers the message of a reader killed in a recv before the later ones", function()
    local a, b = mp.Pipe()
    for i = 1, 10 do a:send(i == 1 and ("first"):rep(100) or i) end
    local p = start(function(a, b)
      a:close()
      testing.queue_park("get")
      b:recv()
    end, a, b)
    assert.is_true(H.wait_until(function() return testing.queue_parked(b) == 1 end, 10))
    p:kill()
    assert.is_true(p:join(10))
    a:send(11)
    assert.are.equal(("first"):rep(100), b:recv(0))
    for i = 2, 11 do assert.are.equal(i, b:recv(0)) end
    assert.is_false(b:poll())
  end)

  it("travels inside a queue", function()
    local q = mp.Queue()
    local a, b = mp.Pipe()
    local p = start(function(q)
      local conn = q:get(10)
      conn:send("via queue")
    end, q)
    q:put(b)
    b:close()
    assert.are.equal("via queue", a:recv(10))
    join_ok(p)
    local v, why = a:recv(10)
    assert.is_nil(v); assert.are.equal("closed", why)
  end)

  it("rejects bad input and use after close", function()
    local a, b = mp.Pipe()
    assert.are.equal("EncodeError", (kind_of(a.send, a, coroutine.create(print))))
    assert.is_false(b:poll())
    assert.are.equal("ValueError", (kind_of(a.recv, a, -1)))
    assert.has_error(function() a:send_bytes({}) end)
    assert.matches("^Connection %(0x", tostring(a))
    a:close()
    a:close()
    assert.are.equal("Connection (closed)", tostring(a))
    local kind, msg = kind_of(a.send, a, 1)
    assert.are.equal("Closed", kind)
    assert.matches("attempt to use a closed Connection", msg)
    local v, why = b:recv(1)
    assert.is_nil(v); assert.are.equal("closed", why)
  end)
end)
