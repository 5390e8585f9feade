-- The script of a pool whose worker is SIGKILLed in the middle of a task
-- (shared by the trace and log specs): prelude runs first; the script
-- prints "victim <pid> main <pid>" and leaves its workers to the at-exit
-- policy.
return function(prelude)
  return ([[
    local mp = require "corral"
    %s
    local pool = mp.Pool(2)
    pool:map(function(x) return x end, { 1, 2, 3, 4 }, 1)
    local started, victim = mp.Event(), mp.Value("i", 0)
    local ar = pool:apply_async(function(e, v) v.value = mp.getpid(); e:set(); mp.sleep(60) end, { started, victim })
    assert(started:wait(30))
    os.execute("kill -9 " .. victim.value)
    local ok, err = pcall(ar.get, ar)
    assert(not ok and mp.iserror(err, "WorkerLost"), tostring(err))
    assert(pool:apply(function() return 7 end) == 7)
    print("victim " .. victim.value .. " main " .. mp.getpid())
  ]]):format(prelude or "")
end
