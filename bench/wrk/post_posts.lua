-- POST /posts for a random seeded user.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

function request()
   return post_post()
end
