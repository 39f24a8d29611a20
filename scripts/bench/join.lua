-- wrk script for scripts/bench/join: joins spread round-robin over the sessions listed in
-- $SESSIONS_FILE (one "id pin" per line, created by the bench in the same run).
--
-- MODE=new (default): every request joins under a client name no request of this run used
-- before ("<STEP>-t<thread>-<n>"; STEP differs per wrk invocation), so every join is a new
-- durable journal record (the expensive case).
-- MODE=rejoin: every request re-joins the name "bench-device", which the bench joined into
-- every session beforehand (the journal records nothing new).
-- MODE=http: every request is GET /healthz, an HTTP request that does no work: what the
-- HTTP layer and loopback TCP cost the service per request, the part of a join no store
-- or signer change can remove.
local sessions = {}
for line in io.lines(os.getenv("SESSIONS_FILE")) do
  local id, pin = line:match("^(%S+) (%S+)$")
  if id then sessions[#sessions + 1] = { path = "/api/v1/sessions/" .. id .. "/join", pin = pin } end
end
local step = os.getenv("STEP") or "s"
local rejoin = os.getenv("MODE") == "rejoin"
local http_only = os.getenv("MODE") == "http"
local headers = { ["Content-Type"] = "application/json" }
local thread_counter = 0
local thread_count = tonumber(os.getenv("THREADS") or "1")

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_index", thread_counter)
end

local n = 0
function request()
  if http_only then return wrk.format("GET", "/healthz") end
  n = n + 1
  -- Threads interleave over the sessions, so each session gets an even share.
  local s = sessions[((n - 1) * thread_count + thread_index - 1) % #sessions + 1]
  local client
  if rejoin then client = "bench-device" else client = step .. "-t" .. thread_index .. "-" .. n end
  return wrk.format("POST", s.path, headers, '{"pin":"' .. s.pin .. '","client":"' .. client .. '"}')
end

done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests":%d,"duration_us":%d,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"errors":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
