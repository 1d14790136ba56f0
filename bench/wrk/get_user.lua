-- GET /user/{id}, id random among the seeded users.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

function request()
   return get_user()
end
