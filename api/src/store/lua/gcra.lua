-- GCRA rate limit for N buckets at once (see api::store::gcra).
-- KEYS: 1..N buckets (string: theoretical arrival time, ms, with a PX expiry)
-- ARGV: 1 period in ms, 2..N+1 limit per period of KEYS[i]
-- Reply: one {allowed (1/0), remaining, reset_ms, retry_after_ms} per key, in order.
-- Every bucket is judged (and charged when it allows) on its own, exactly
-- as N separate calls would. The clock is the server's (TIME), so every api
-- replica agrees.
local period = tonumber(ARGV[1])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 1])
  local interval = period / limit
  local tat = tonumber(redis.call("GET", key) or now) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    out[i] = {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
  else
    redis.call("SET", key, string.format("%.3f", new_tat), "PX", math.ceil(new_tat - now))
    local remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
    out[i] = {1, remaining, math.ceil(new_tat - now), 0}
  end
end
return out
