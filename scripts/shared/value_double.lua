-- Seed 002_37fd0902249e69e8.txt, "### 3.共享内存".
-- Teaches: a child sets a shared Value('d') and the parent sees the change.
-- What the original got wrong: it ends with `print()`, which prints an
-- empty line, not the 3.1415 its comment shows; the port prints val.value.
--   corral scripts/shared/value_double.lua
local mp = require "corral"

local function task(n)
  n.value = 3.1415
end

local val = mp.Value("d", 0.0) -- a double ('d') starting at 0.0
local process = mp.Process{ target = task, args = { val } }
process:start() -- the child sets the value
process:join()

print(val.value) -- the parent sees it too
