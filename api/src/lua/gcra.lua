-- GCRA rate limit for one bucket (see api::ratelimit).
-- KEYS: 1 bucket (string: theoretical arrival time, ms, with a PX expiry)
-- ARGV: 1 limit per period, 2 period in ms
-- Reply: {allowed (1/0), remaining, reset_ms, retry_after_ms}
-- The clock is the server's (TIME), so every api replica agrees.
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = period / limit
local tat = tonumber(redis.call("GET", KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call("SET", KEYS[1], string.format("%.3f", new_tat), "PX", math.ceil(new_tat - now))
local remaining = math.floor((period - (new_tat - now)) / interval + 1e-9)
return {1, remaining, math.ceil(new_tat - now), 0}
