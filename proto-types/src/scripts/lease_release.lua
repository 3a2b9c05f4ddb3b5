-- Release a session lease by compare-and-delete.
-- KEYS: 1 lease key
-- ARGV: 1 "<token> <owner>"
-- Replies: {"released"} | {"lost"}

if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return {"released"}
end
return {"lost"}
