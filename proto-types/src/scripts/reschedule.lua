-- Reschedule one session's lifecycle deadline (see proto_types::scripts::sweep).
-- KEYS: 1 session hash, 2 lifecycle-due set, 3 activity set
-- ARGV: 1 session id, 2 generation the deadline was computed on,
--       3 next deadline ms ("" = forget the session),
--       4 next automatic action and its time, "sleep 1700000000000"
--         ("" = none), shown by the api as next_action,
--       5 the session's idle_timeout_secs as read ("" = none)
-- Replies: {"set"} | {"forgot"} | {"moved", generation}
-- "moved": a command (or a new idle timeout) changed the session since;
-- it already lowered the deadline, which must not be raised again.

local generation = redis.call("HGET", KEYS[1], "generation") or "0"
if generation ~= ARGV[2] or (redis.call("HGET", KEYS[1], "idle_timeout_secs") or "") ~= ARGV[5] then
  return {"moved", generation}
end
local exists = redis.call("EXISTS", KEYS[1]) == 1
if ARGV[3] == "" then
  redis.call("ZREM", KEYS[2], ARGV[1])
  redis.call("ZREM", KEYS[3], ARGV[1])
  if exists then redis.call("HDEL", KEYS[1], "next_action") end
  return {"forgot"}
end
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
if exists then
  if ARGV[4] == "" then
    redis.call("HDEL", KEYS[1], "next_action")
  else
    redis.call("HSET", KEYS[1], "next_action", ARGV[4])
  end
end
return {"set"}
