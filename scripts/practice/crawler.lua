-- Seed 001_a2c236ba738e7e5f.txt, "### 练习4：多进程爬虫" (an exercise, solved).
-- Teaches: a Pool of workers fetches several sites at once and saves each
-- page to a local file; a failed fetch is reported, not fatal (the text's
-- "handle exceptions in the process function").
-- No internet is used: the script starts a tiny HTTP server on 127.0.0.1
-- in a corral process (scripts/lib/httpd.lua, with Debian's lua-socket)
-- that serves five made-up sites (and lacks a sixth page, which fails with
-- 404), and stops it at the end. Pages are saved in a private temporary
-- directory (scripts/lib/tmpdir.lua), removed at the end.
--   corral scripts/practice/crawler.lua
local mp = require "corral"
local lib = (arg[0]:match("^(.*)/") or ".") .. "/../lib/"
local httpd = dofile(lib .. "httpd.lua")
local tmpdir = dofile(lib .. "tmpdir.lua")

local sites = { "news", "books", "music", "weather", "sports" }
local routes = {}
for i, name in ipairs(sites) do
  routes["/" .. name .. "/index.html"] = ("<html><head><title>%s</title></head><body>%s</body></html>")
    :format(name, ("<p>page %d</p>"):format(i):rep(i * 10))
end

local server <close> = httpd.start(routes)
local tmp <close> = tmpdir.new("corral-crawl")

local urls = {}
for i, name in ipairs(sites) do urls[i] = server.url .. "/" .. name .. "/index.html" end
urls[#urls + 1] = server.url .. "/missing/index.html"

-- fetch one page and save it; returns a line of report
local function crawl(url)
  local ok, body, status = pcall(httpd.get, url)
  if not ok or status ~= 200 then
    return { url = url, ok = false, why = tostring(ok and status or body) }
  end
  local name = url:match("//[^/]+/([^/]+)/") .. ".html"
  local f = assert(io.open(tmp:file(name), "wb"))
  f:write(body)
  f:close()
  return { url = url, ok = true, file = name, size = #body, title = body:match("<title>(.-)</title>"),
           pid = mp.getpid() }
end

local reports
do
  local pool <close> = mp.Pool(4)
  reports = pool:map(crawl, urls, 1)
end

local saved = 0
for _, r in ipairs(reports) do
  if r.ok then
    saved = saved + 1
    print(("已保存 %s -> %s（%d 字节，标题: %s）"):format(r.url:gsub("^http://[^/]+", ""), r.file, r.size, r.title))
  else
    print(("爬取失败 %s（%s）"):format(r.url:gsub("^http://[^/]+", ""), r.why))
  end
end
print(("共爬取 %d 个网站，保存了 %d 个页面"):format(#urls, saved))
