-- Renew a session lease only while this holder still owns it.
-- KEYS: 1 lease key
-- ARGV: 1 "<token> <owner>", 2 ttl_ms
-- Replies: {"renewed"} | {"lost"}

if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return {"renewed"}
end
return {"lost"}
