-- Sweep guard (see proto_types::scripts::sweep): this text is followed by
-- enqueue.lua, so a sweep enqueues exactly like a command, or not at all.
-- KEYS: 1..8 as enqueue.lua, 9 activity set
-- ARGV: 1..19 as enqueue.lua, 20 status the decision was made on,
--       21 last use the decision was made on, in ms ("" = no check): the
--       job is enqueued only if the session's last use (the larger of
--       last_activity_ms and its activity score) is not later
-- Replies (before enqueue's): {"gone"} | {"status", current}
--          | {"active", last_use_ms}

local sweep_status = redis.call("HGET", KEYS[1], "status")
if not sweep_status then
  return {"gone"}
end
if sweep_status ~= ARGV[20] then
  return {"status", sweep_status}
end
if ARGV[21] ~= "" then
  local last_use = tonumber(redis.call("HGET", KEYS[1], "last_activity_ms") or "0") or 0
  local seen = tonumber(redis.call("ZSCORE", KEYS[9], ARGV[2]) or "0") or 0
  if seen > last_use then last_use = seen end
  if last_use > tonumber(ARGV[21]) then
    return {"active", string.format("%d", last_use)}
  end
end

