-- wrk script: POST one GraphQL request, again and again, and report the run as one JSON line.
--
-- Read from the environment (bench/run sets them):
--   BENCH_BODY   the JSON body, e.g. {"query":"{ labs(first: 20) { nodes { id } } }"}
--   BENCH_METHOD "GET": send GET, the request in the URL's query string, and no body
--   BENCH_TOKEN  an access token, sent as "Authorization: Bearer <token>" (optional)
--   BENCH_CHECK  "1": look at every response and count non-2xx statuses and bodies holding
--                GraphQL "errors" (wrk then hands each body to Lua, which costs it some speed)
--
-- done() prints one line "BENCH_JSON {...}" after wrk's own summary: requests, duration,
-- latency percentiles (microseconds) and every kind of error wrk knows of.

if os.getenv("BENCH_METHOD") == "GET" then
   wrk.method = "GET"
else
   wrk.method = "POST"
   wrk.body = os.getenv("BENCH_BODY") or error("BENCH_BODY is not set")
   wrk.headers["Content-Type"] = "application/json"
end
wrk.headers["Accept"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

if os.getenv("BENCH_CHECK") == "1" then
   -- globals: done() reads them from each thread with thread:get()
   checked = 0
   non2xx = 0
   gql_errors = 0
   first_error = nil

   function response(status, headers, body)
      checked = checked + 1
      if status < 200 or status > 299 then
         non2xx = non2xx + 1
         first_error = first_error or (status .. " " .. string.sub(body or "", 1, 200))
      elseif body and string.find(body, '"errors":', 1, true) then
         gql_errors = gql_errors + 1
         first_error = first_error or string.sub(body, 1, 200)
      end
   end
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local checked_total, non2xx_total, gql_total, sample = 0, 0, 0, nil
   local checking = false
   for _, thread in ipairs(threads) do
      local c = thread:get("checked")
      if c ~= nil then
         checking = true
         checked_total = checked_total + c
         non2xx_total = non2xx_total + thread:get("non2xx")
         gql_total = gql_total + thread:get("gql_errors")
         sample = sample or thread:get("first_error")
      end
   end
   local e = summary.errors
   local fields = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"p50_us":%d', latency:percentile(50)),
      string.format('"p90_us":%d', latency:percentile(90)),
      string.format('"p99_us":%d', latency:percentile(99)),
      string.format('"max_us":%d', latency.max),
      string.format('"mean_us":%.1f', latency.mean),
      string.format('"connect":%d', e.connect),
      string.format('"read":%d', e.read),
      string.format('"write":%d', e.write),
      string.format('"status":%d', e.status),
      string.format('"timeout":%d', e.timeout),
      string.format('"checking":%s', tostring(checking)),
      string.format('"checked":%d', checked_total),
      string.format('"non2xx":%d', non2xx_total),
      string.format('"gql_errors":%d', gql_total),
   }
   if sample then
      table.insert(fields, '"first_error":' .. json_string(sample))
   end
   io.write("BENCH_JSON {" .. table.concat(fields, ",") .. "}\n")
end
