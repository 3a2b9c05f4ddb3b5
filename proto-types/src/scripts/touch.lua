-- Heartbeat for one pending entry: reset its idle time, but only while
-- this consumer still owns it (see proto_types::scripts::touch).
-- KEYS: 1 jobs stream
-- ARGV: 1 group, 2 consumer, 3 entry id
-- Replies: {"touched"} | {"lost", current_owner} ("" when no longer pending)
-- XCLAIM JUSTID does not count as a delivery.

local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 then
  return {"lost", ""}
end
if p[1][2] ~= ARGV[2] then
  return {"lost", p[1][2]}
end
redis.call("XCLAIM", KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], "JUSTID")
return {"touched"}
