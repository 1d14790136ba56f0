-- Mixed load, 80% reads / 20% writes: 80% GET /user/{id}, 10% POST /users, 10% POST /posts.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

function request()
   local r = math.random()
   if r < 0.8 then
      return get_user()
   elseif r < 0.9 then
      return post_user()
   end
   return post_post()
end
