-- Publish the idle warning of one idle period, once (see proto_types::scripts::sweep).
-- KEYS: 1 idle-warning marker, 2 events stream
-- ARGV: 1 last use ms the warning is for, 2 now ms, 3 encoded notice,
--       4 events maxlen, 5 marker ttl ms
-- Replies: {"warned"} | {"already", warned_at_ms}

local prior = redis.call("GET", KEYS[1])
if prior then
  local sep = string.find(prior, " ", 1, true)
  if sep and string.sub(prior, 1, sep - 1) == ARGV[1] then
    return {"already", string.sub(prior, sep + 1)}
  end
end
redis.call("SET", KEYS[1], ARGV[1] .. " " .. ARGV[2], "PX", ARGV[5])
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[4], "*", "notice", ARGV[3])
return {"warned"}
