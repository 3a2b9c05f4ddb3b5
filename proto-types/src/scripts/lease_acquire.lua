-- Acquire a session lease (see proto_types::scripts::lease).
-- KEYS: 1 lease key, 2 fence counter
-- ARGV: 1 owner, 2 ttl_ms
-- Value stored: "<token> <owner>".
-- Replies: {"acquired", token} | {"held", owner, pttl_ms}
-- The same owner acquiring again keeps its token and refreshes the TTL.

local cur = redis.call("GET", KEYS[1])
if cur then
  local sep = string.find(cur, " ", 1, true)
  local token = string.sub(cur, 1, sep - 1)
  local owner = string.sub(cur, sep + 1)
  if owner == ARGV[1] then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return {"acquired", token}
  end
  return {"held", owner, tostring(redis.call("PTTL", KEYS[1]))}
end

local token = redis.call("INCR", KEYS[2])
redis.call("SET", KEYS[1], tostring(token) .. " " .. ARGV[1], "PX", ARGV[2])
return {"acquired", tostring(token)}
