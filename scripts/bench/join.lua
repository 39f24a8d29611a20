-- wrk script for scripts/bench/join: every request joins one session under a new client
-- name, so every join is a new durable journal record (the expensive case).
-- SESSION_ID and PIN come from the environment.
local session_id = os.getenv("SESSION_ID")
local pin = os.getenv("PIN")
local path = "/api/v1/sessions/" .. session_id .. "/join"
local headers = { ["Content-Type"] = "application/json" }
local thread_counter = 0
local prefix = "t"

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("prefix", "t" .. thread_counter .. "-")
end

local n = 0
function request()
  n = n + 1
  local body = '{"pin":"' .. pin .. '","client":"' .. prefix .. n .. '"}'
  return wrk.format("POST", path, headers, body)
end

done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests":%d,"duration_us":%d,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"errors":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
