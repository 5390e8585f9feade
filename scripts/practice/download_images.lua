-- Seed 000_8433a834d0ee5e01.txt, "## 实战例子：多进程下载图片".
-- Teaches: one process per download, all started, then all joined: the
-- downloads run at the same time.
-- No internet is used: the script starts a tiny HTTP server on 127.0.0.1
-- in a corral process (scripts/lib/httpd.lua, with Debian's lua-socket;
-- Python's requests becomes LuaSocket's http.request) that serves three
-- made-up images, and stops it at the end. The images are saved as
-- image_0.jpg … in a private temporary directory (scripts/lib/tmpdir.lua),
-- checked against what was served, and removed.
--   corral scripts/practice/download_images.lua
local mp = require "corral"
local lib = (arg[0]:match("^(.*)/") or ".") .. "/../lib/"
local httpd = dofile(lib .. "httpd.lua")
local tmpdir = dofile(lib .. "tmpdir.lua")

-- three made-up images: a JPEG signature and some bytes
local images = {}
for i = 1, 3 do
  local bytes = { "\xFF\xD8\xFF\xE0" }
  for k = 1, 2000 * i do bytes[#bytes + 1] = string.char((k * 7 + i) % 256) end
  images["/image" .. i .. ".jpg"] = table.concat(bytes)
end

local server <close> = httpd.start(images)
local tmp <close> = tmpdir.new("corral-images")

local function download_image(url, filename)
  local body, status = httpd.get(url)
  assert(body and status == 200, ("%s: %s"):format(url, tostring(status)))
  local file <close> = assert(io.open(filename, "wb"))
  file:write(body)
  print(("%s 下载完成"):format(filename:match("[^/]+$")))
end

-- the image links (the original's https://example.com/… served locally)
local image_urls = {
  server.url .. "/image1.jpg",
  server.url .. "/image2.jpg",
  server.url .. "/image3.jpg",
}

-- one process per image
local processes = {}
for i, url in ipairs(image_urls) do
  local process = mp.Process{ target = download_image, args = { url, tmp:file(("image_%d.jpg"):format(i - 1)) } }
  processes[#processes + 1] = process
  process:start()
end

-- wait for all of them
for _, process in ipairs(processes) do
  process:join()
  assert(process.exitcode == 0, process.name .. " failed")
end

-- the port's check: every file holds what was served
for i = 1, #image_urls do
  local f = assert(io.open(tmp:file(("image_%d.jpg"):format(i - 1)), "rb"))
  assert(f:read("a") == images["/image" .. i .. ".jpg"], "image_" .. (i - 1) .. ".jpg differs")
  f:close()
end

print("所有图片下载完成！")
