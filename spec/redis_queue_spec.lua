-- Queue and JoinableQueue on Redis: the local Queue's methods between
-- "machines" (independent corral processes sharing no arena), maxsize,
-- close, redelivery of a killed consumer's item, signing, and the errors
-- of a server that is not there, wants a password, or goes away. Each
-- test's server is its own redis-server on a free 127.0.0.1 port.
local H = require "spec.helper"
local R = require "spec.redis_helper"
local mp = H.mp
local error, tostring = error, tostring

local names = 0
local function qname()
  names = names + 1
  return ("q%d-%d"):format(mp.getpid(), names)
end

local kind_of = R.kind_of

describe("a Redis Queue", function()
  local srv = R.server()

  -- A Queue `name` with 1 to n in it (on the server).
  local function queue_with(name, visibility, n)
    local q = mp.Queue{ url = srv.url, name = name, visibility = visibility }
    for i = 1, n do q:put(i) end
    assert.equal(n, q:qsize())
    return q
  end

  -- A consumer on another machine that takes one item of the Queue `name`
  -- (its batch: the rest too), hands out 1 and holds the rest until it is
  -- killed.
  local function holder(name, visibility)
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q, visibility = %s }
      print("got", q:get(20)) io.stdout:flush()
      mp.sleep(60)
    ]]):format(name, visibility), srv.url)
    assert.equal("got\t1", m.proc:read("l"))
    return m
  end

  -- n items of q (waiting up to 10 s for each), sorted.
  local function take_sorted(q, n)
    local got = {}
    for _ = 1, n do got[#got + 1] = q:get(10) end
    table.sort(got)
    return got
  end

  it("keeps the local Queue's methods and return conventions", function()
    local q = mp.Queue{ url = srv.url, name = qname(), maxsize = 2 }
    assert.is_true(q:empty())
    assert.equal(0, q:qsize())
    assert.is_true(q:put(1))
    assert.is_true(q:put({ a = { 2, 3 } }))
    assert.is_true(q:full())
    assert.same({ false, "full" }, { q:put(3, 0.05) })
    assert.equal("Full", (kind_of(q.put_nowait, q, 3)))
    assert.equal(1, q:get())
    assert.same({ a = { 2, 3 } }, q:get(1))
    assert.same({ nil, "timeout" }, { q:get(0.05) })
    assert.equal("Empty", (kind_of(q.get_nowait, q)))
    q:put(nil)
    local v, why = q:get(1)
    assert.is_nil(v)
    assert.is_nil(why)
    q:close()
    assert.same({ false, "closed" }, { q:put(1) })
    assert.same({ nil, "closed" }, { q:get(1) })
    assert.matches("Queue %(redis://127.0.0.1:%d+, 'q", tostring(q))
  end)

  it("hands an item put on one machine to another", function()
    local name = qname()
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q }
      local v = q:get(20)
      print("got", v.n, v.s)
    ]]):format(name), srv.url)
    local q = mp.Queue{ url = srv.url, name = name }
    q:put({ n = 42, s = ("x"):rep(100000) })
    local out, code = m.wait()
    assert.equal(0, code, out)
    assert.equal("got\t42\t" .. ("x"):rep(100000) .. "\n", out)
  end)

  it("is shared with a child process opened by url and name (" .. H.method .. ")", function()
    local name, url = qname(), srv.url
    local p = H.start(function(u, n)
      local q = mp.Queue{ url = u, name = n }
      q:put(q:get(20) * 2)
    end, url, name)
    local q = mp.Queue{ url = url, name = name }
    q:put(21)
    H.join_ok(p)
    -- the child took 21 and put 42; nothing else is left
    assert.equal(42, q:get(5))
    assert.is_true(q:empty())
  end)

  it("is inherited by a forked child, which gets a connection of its own", function()
    if H.method ~= "fork" then return end
    local q = mp.Queue{ url = srv.url, name = qname() }
    q:put("from the parent")
    local p = H.start(function() q:put(q:get(20) .. ", through the child") end)
    H.join_ok(p)
    assert.equal("from the parent, through the child", q:get(5))
  end)

  it("forks while its feeder sends, and the children's own puts go through", function()
    if H.method ~= "fork" then return end
    local q = mp.Queue{ url = srv.url, name = qname() }
    for round = 1, 20 do
      for i = 1, 500 do q:put(i) end -- the parent's feeder is sending these as it forks
      local p = H.start(function() q:put("child " .. round) end)
      H.join_ok(p, 30)
    end
    assert.is_true(H.wait_until(function() return q:qsize() == 20 * 501 end, 30), "items: " .. q:qsize())
  end)

  it("sends the puts of a process that ends with os.exit", function()
    local name = qname()
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q }
      for i = 1, 1000 do q:put(i) end
      os.exit(0)
    ]]):format(name), srv.url)
    local _, code = m.wait()
    assert.equal(0, code)
    local q = mp.Queue{ url = srv.url, name = name }
    assert.equal(1000, q:qsize())
    local sum = 0
    for _ = 1, 1000 do sum = sum + q:get(5) end
    assert.equal(500500, sum)
  end)

  it("holds a producer back at maxsize", function()
    local name = qname()
    local q = mp.Queue{ url = srv.url, name = name, maxsize = 2 }
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q, maxsize = 2 }
      for i = 1, 5 do assert(q:put(i, 30)) io.stdout:write(i, " ") io.stdout:flush() end
    ]]):format(name), srv.url)
    assert.is_true(H.wait_until(function() return q:qsize() == 2 end, 10))
    -- the producer stays held back while the queue stays full
    mp.sleep(0.3)
    assert.equal(2, q:qsize())
    local got = {}
    for _ = 1, 5 do got[#got + 1] = q:get(10) end
    local out, code = m.wait()
    assert.equal(0, code, out)
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.equal("1 2 3 4 5 ", out)
  end)

  it("ends iteration on every machine once closed and drained", function()
    local name = qname()
    local src = ([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q }
      local n = 0
      for v in q:iter(30) do n = n + v end
      print("sum", n)
    ]]):format(name)
    local a, b = R.machine(src, srv.url), R.machine(src, srv.url)
    local q = mp.Queue{ url = srv.url, name = name }
    for i = 1, 100 do q:put(i) end
    q:close()
    local oa, ca = a.wait()
    local ob, cb = b.wait()
    assert.equal(0, ca, oa)
    assert.equal(0, cb, ob)
    assert.equal(5050, tonumber(oa:match("sum\t(%d+)")) + tonumber(ob:match("sum\t(%d+)")))
  end)

  it("delivers again a JoinableQueue item whose consumer was SIGKILLed before task_done", function()
    local name = qname()
    local q = mp.JoinableQueue{ url = srv.url, name = name, visibility = 0.5 }
    q:put("job-1")
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.JoinableQueue{ url = URL, name = %q, visibility = 0.5 }
      print("got", q:get(20)) io.stdout:flush()
      mp.sleep(60)
    ]]):format(name), srv.url)
    local line = m.proc:read("l")
    assert.equal("got\tjob-1", line)
    m.kill()
    m.wait()
    assert.is_false(q:join(0.1))
    local t0 = mp.time()
    assert.equal("job-1", q:get(10))
    assert.is_true(mp.time() - t0 >= 0.3, "delivered again before its visibility timeout")
    assert.equal(1, q:unfinished())
    q:task_done()
    assert.is_true(q:join(5))
    assert.equal("ValueError", (kind_of(q.task_done, q)))
  end)

  it("loses none of the items a killed consumer had taken in a batch and not handed out", function()
    local name = qname()
    local q = queue_with(name, 1.5, 10)
    local m = holder(name, 1.5)
    -- it took the ten at once: none is left to deliver until it is gone
    assert.same({ nil, "timeout" }, { q:get(0.1) })
    m.kill()
    m.wait()
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, take_sorted(q, 10))
  end)

  it("gives back at once the items a consumer holds when its handle goes", function()
    local name = qname()
    local q = queue_with(name, 60, 10)
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q, visibility = 60 }
      print("got", q:get(20), q:get(20))
    ]]):format(name), srv.url)
    local out, code = m.wait()
    assert.equal(0, code, out)
    assert.equal("got\t1\t2", out:match("[^\n]+"))
    -- it held 3 to 10 when it ended: another consumer has them well before the visibility timeout
    local t0 = mp.time()
    assert.same({ 3, 4, 5, 6, 7, 8, 9, 10 }, take_sorted(q, 8))
    assert.is_true(mp.time() - t0 < 10)
    assert.equal(0, q:qsize())
  end)

  it("keeps the items another consumer holds when it deletes the ones it was given", function()
    local name = qname()
    local q = queue_with(name, 1.5, 10)
    local m = holder(name, 1.5)
    -- the machine holds 1 to 10 (one handed out); 11 to 20 come after them
    for i = 11, 20 do q:put(i) end
    for i = 11, 20 do assert.equal(i, q:get(5)) end
    assert.equal(0, q:qsize()) -- those handed out here are gone from the stream, the held ones are not counted
    m.kill()
    m.wait()
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, take_sorted(q, 10))
    assert.same({ nil, "timeout" }, { q:get(0.1) })
    assert.equal(0, q:qsize())
  end)

  it("does not deliver again an item that was marked done", function()
    local q = mp.JoinableQueue{ url = srv.url, name = qname(), visibility = 0.2 }
    q:put(1)
    q:put(2)
    assert.equal(1, q:get(5))
    q:task_done()
    assert.equal(2, q:get(5))
    q:task_done()
    assert.is_true(q:join(1))
    assert.same({ nil, "timeout" }, { q:get(0.5) })
  end)

  describe("signing", function()
    it("carries a function in a signed item", function()
      local q = mp.Queue{ url = srv.url, name = qname(), authkey = "k1" }
      local up = 40
      q:put(function(x) return x + up end)
      assert.equal(42, q:get(5)(2))
    end)

    it("refuses an item signed with another key, and drops it", function()
      local name = qname()
      local a = mp.Queue{ url = srv.url, name = name, authkey = "right" }
      local b = mp.Queue{ url = srv.url, name = name, authkey = "wrong" }
      a:put(function() error("must never run") end)
      local kind, err = kind_of(b.get, b, 5)
      assert.equal("AuthError", kind)
      assert.matches(srv.url, err.message, 1, true)
      assert.is_true(b:empty())
    end)

    it("refuses an unsigned item when it has a key", function()
      local name = qname()
      local a = mp.Queue{ url = srv.url, name = name }
      local b = mp.Queue{ url = srv.url, name = name, authkey = "k" }
      a:put("plain")
      assert.equal("AuthError", (kind_of(b.get, b, 5)))
    end)

    it("without a key, refuses to send a function and decodes data without them", function()
      local name = qname()
      local q = mp.Queue{ url = srv.url, name = name }
      assert.equal("EncodeError", (kind_of(q.put, q, { f = function() end })))
      local signed = mp.Queue{ url = srv.url, name = name, authkey = "k" }
      signed:put(function() end)
      assert.equal("DecodeError", (kind_of(q.get, q, 5)))
      signed:put({ 1, 2 })
      assert.same({ 1, 2 }, q:get(5))
    end)

    it("takes its key from CORRAL_AUTHKEY", function()
      local name = qname()
      local m = R.machine(([[
        local mp = require "corral"
        local q = mp.Queue{ url = URL, name = %q }
        q:put(function() return "ran" end)
      ]]):format(name), srv.url, { CORRAL_AUTHKEY = "envkey" })
      local out, code = m.wait()
      assert.equal(0, code, out)
      local q = mp.Queue{ url = srv.url, name = name, authkey = "envkey" }
      assert.equal("ran", q:get(5)())
    end)
  end)

  describe("errors", function()
    it("names the url when the connection is refused", function()
      local port = srv.port + 1
      local url = "redis://127.0.0.1:" .. port
      local kind, err = kind_of(mp.Queue, { url = url, name = "x" })
      assert.equal("ConnectionError", kind)
      assert.matches(url .. ": cannot connect: connection refused", err.message, 1, true)
    end)

    it("says that the server wants a password", function()
      local locked = R.start{ password = "sesame" }
      local kind, err = kind_of(mp.Queue, { url = locked.url, name = "x" })
      assert.equal("AuthError", kind)
      assert.matches(locked.url .. ": the server requires a password", err.message, 1, true)
      local url = locked.url:gsub("redis://", "redis://:sesame@")
      local q = mp.Queue{ url = url, name = "x" }
      q:put(1)
      assert.equal(1, q:get(1))
      -- the password never shows
      assert.is_nil(tostring(q):find("sesame"))
      locked.stop()
    end)

    it("rejects bad options", function()
      assert.equal("ValueError", (kind_of(mp.Queue, { name = "x" })))
      assert.equal("ValueError", (kind_of(mp.Queue, { url = "http://x", name = "x" })))
      assert.equal("ValueError", (kind_of(mp.Queue, { url = srv.url, name = "x", bogus = 1 })))
      assert.equal("ValueError", (kind_of(mp.Queue, { url = srv.url, name = "x", maxsize = -1 })))
      assert.equal("ValueError", (kind_of(mp.Queue, { url = srv.url })))
    end)
  end)
end)

describe("a Redis Queue whose server restarts", function()
  local server = R.server{ appendonly = true }

  it("keeps what was put, honours get(t) while the server is away, and recovers", function()
    local q = mp.JoinableQueue{ url = server.url, name = qname(), visibility = 30 }
    for i = 1, 100 do q:put(i) end
    assert.equal(1, q:get(1))
    q:task_done()
    server.kill()
    local t0 = mp.time()
    local kind, err = kind_of(q.get, q, 0.5)
    local took = mp.time() - t0
    assert.equal("ConnectionError", kind)
    assert.matches(server.url, err.message, 1, true)
    assert.is_true(took >= 0.4 and took < 3, "get(0.5) took " .. took .. " s")
    server.launch()
    -- every item put, less the one marked done, is still there
    assert.equal(99, q:unfinished())
    local seen = {}
    for _ = 2, 100 do
      local v = q:get(5)
      seen[#seen + 1] = v
      q:task_done()
    end
    table.sort(seen)
    for i = 2, 100 do assert.equal(i, seen[i - 1]) end
    assert.is_true(q:join(5))
  end)

  it("lets a process whose server is gone end, saying how many items it could not send", function()
    local flag = os.tmpname()
    os.remove(flag)
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q }
      print("ready") io.stdout:flush()
      while not io.open(%q) do mp.sleep(0.01) end
      for i = 1, 300 do q:put(i) end
      os.exit(0) -- the state is not closed: the exit handlers flush the feeder
    ]]):format(qname(), flag), server.url)
    assert.equal("ready", m.proc:read("l"))
    server.kill()
    io.open(flag, "w"):close()
    -- the feeder gives up once its connection's reconnect budget (10 s) is spent
    local ended = H.ended(m.pid, 60)
    server.launch()
    os.remove(flag)
    assert.is_true(ended, "the process did not end")
    local out, code = m.wait()
    assert.equal(0, code, out)
    local lost = 0
    for n in out:gmatch("(%d+) [%a ]*queue items could not be sent") do lost = lost + tonumber(n) end
    assert.equal(300, lost, out)
  end)

  it("reconnects within a get(t) when the server comes back in time", function()
    local name = qname()
    local m = R.machine(([[
      local mp = require "corral"
      local q = mp.Queue{ url = URL, name = %q }
      print("ready") io.stdout:flush()
      print("got", q:get(20))
    ]]):format(name), server.url)
    assert.equal("ready", m.proc:read("l"))
    server.kill()
    mp.sleep(0.5) -- the server stays away for a while: the reader retries
    server.launch()
    local q = mp.Queue{ url = server.url, name = name }
    q:put("later")
    local out, code = m.wait()
    assert.equal(0, code, out)
    assert.equal("got\tlater\n", out)
  end)
end)
