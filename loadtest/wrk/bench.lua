-- wrk script for the raw-rate measurements of `make bench`.
--
-- WRK_MODE selects the request:
--   livez      GET /livez (no Redis): the ceiling for any request
--   enqueue    POST /session/{uuid}/{sleep|wake} against existing sessions
--              (uuids, one per line, from the file WRK_SESSIONS)
--   badkey     the same POSTs with a wrong X-API-Key (expect 401)
--   ratelimit  the same POSTs with the right key against an api whose
--              limit is low (expect mostly 429), from X-Forwarded-For
--              198.51.100.7 (that api trusts 127.0.0.1 as a proxy, so its
--              per-IP bucket is not the benchmark api's 127.0.0.1 bucket)
--   get        GET WRK_PATH (default /) with Host WRK_HOST when set (the
--              gateway group: the same small GET direct, via nginx, via
--              the gateway)
-- WRK_KEY is the API key. done() prints one JSON line prefixed "WRKJSON ".

local mode = os.getenv("WRK_MODE") or "livez"
-- Client address the ratelimit mode claims through X-Forwarded-For (TEST-NET-2).
LIMITED_CLIENT_IP = "198.51.100.7"
local key = os.getenv("WRK_KEY") or ""
local sessions = {}
local counter = 0
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  local path = os.getenv("WRK_SESSIONS")
  if path and mode ~= "livez" and mode ~= "get" then
    for line in io.lines(path) do
      if #line > 0 then sessions[#sessions + 1] = line end
    end
  end
  if mode ~= "livez" and mode ~= "get" and #sessions == 0 then
    sessions[1] = "0fa6debc"
  end
  math.randomseed(os.time() * 100 + (tid or 0))
end

local actions = { "sleep", "wake" }

local get_path = os.getenv("WRK_PATH") or "/"
local get_host = os.getenv("WRK_HOST")

function request()
  if mode == "get" then
    if get_host and #get_host > 0 then
      return wrk.format("GET", get_path, { ["Host"] = get_host })
    end
    return wrk.format("GET", get_path)
  end
  if mode == "livez" then
    return wrk.format("GET", "/livez")
  end
  counter = counter + 1
  local uuid = sessions[math.random(#sessions)]
  local action = actions[(counter % 2) + 1]
  local k = key
  if mode == "badkey" then k = "wrong-key-" .. counter % 7 end
  local headers = { ["X-API-Key"] = k, ["Content-Length"] = "0" }
  -- The low-limit api trusts 127.0.0.1 as a proxy: its clients get their own IP bucket.
  if mode == "ratelimit" then headers["X-Forwarded-For"] = LIMITED_CLIENT_IP end
  return wrk.format("POST", "/session/" .. uuid .. "/" .. action, headers, nil)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"mode":"%s","requests":%d,"seconds":%.3f,"rps":%.1f,"non2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"lat_mean_ms":%.3f,"lat_p50_ms":%.3f,' ..
    '"lat_p90_ms":%.3f,"lat_p99_ms":%.3f,"lat_p999_ms":%.3f,"lat_max_ms":%.3f}\n',
    mode, summary.requests, secs, summary.requests / secs, e.status, e.connect, e.read, e.write, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
