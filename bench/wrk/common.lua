-- Shared by the wrk scripts here: random ids among the seeded users, and a count of
-- non-2xx responses over all threads, printed by done() as one parseable line:
--   BENCH responses=N non2xx=M statuses=404:3,500:1
-- (wrk's own "Non-2xx or 3xx responses" line appears only when it is nonzero and counts
-- 3xx as errors too, so the harness reads this line instead.)
--
-- Environment: WRK_USER_ID_MIN / WRK_USER_ID_MAX (the seeded users' id range).

local threads = {}
local next_id = 0

user_id_min = tonumber(os.getenv("WRK_USER_ID_MIN") or "1")
user_id_max = tonumber(os.getenv("WRK_USER_ID_MAX") or "10000")
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
   responses = 0
   non2xx = 0
   statuses = {}
   counter = 0
end

function random_user_id()
   return math.random(user_id_min, user_id_max)
end

function unique_suffix()
   counter = counter + 1
   return string.format("%d-%d-%d", thread_id or 0, counter, math.random(1, 1000000000))
end

function get_user()
   return wrk.format("GET", "/user/" .. random_user_id())
end

function post_user()
   return wrk.format("POST", "/users", nil,
      '{"name":"bench user ' .. unique_suffix() .. '"}')
end

local filler = string.rep("lorem ipsum dolor sit amet ", 5)

function post_post()
   return wrk.format("POST", "/posts", nil,
      '{"user_id":' .. random_user_id() .. ',"content":"' .. filler .. unique_suffix() .. '"}')
end

function response(status, headers, body)
   responses = responses + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local total, bad, by_status = 0, 0, {}
   for _, thread in ipairs(threads) do
      total = total + (thread:get("responses") or 0)
      bad = bad + (thread:get("non2xx") or 0)
      for status, count in pairs(thread:get("statuses") or {}) do
         by_status[status] = (by_status[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(by_status) do
      table.insert(parts, status .. ":" .. count)
   end
   io.write(string.format("BENCH responses=%d non2xx=%d statuses=%s\n",
      total, bad, table.concat(parts, ",")))
end
