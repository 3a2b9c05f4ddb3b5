-- Move one stream entry to the dead-letter stream atomically
-- (see proto_types::scripts::dead_letter).
-- KEYS: 1 jobs stream, 2 dead stream, 3 job hash, 4 session hash, 5 events stream,
--       6 hash of the backup the job's generation takes (a delete's or backup's)
-- ARGV: 1 stream entry id, 2 group, 3 raw payload, 4 reason, 5 delivery count,
--       6 payload decoded ("1"/"0"), 7 now_ms, 8 job ttl secs,
--       9 encoded event ("" for none), 10 events maxlen, 11 job generation,
--       12 terminal job states (space-separated, from JobState::is_terminal)
-- Replies: {"dead", dead_entry_id}
-- When the payload decoded: the job hash becomes "dead" (unless already
-- terminal), the session records last_error, and, when the job was the
-- session's latest, its status becomes "failed", and a backup the job left
-- `pending` becomes `failed` with the reason.

local function is_terminal(state)
  return state and string.find(" " .. ARGV[12] .. " ", " " .. state .. " ", 1, true) ~= nil
end

local dead_id = redis.call("XADD", KEYS[2], "*",
  "original_id", ARGV[1],
  "job", ARGV[3],
  "reason", ARGV[4],
  "deliveries", ARGV[5],
  "at_ms", ARGV[7])

if ARGV[6] == "1" then
  local state = redis.call("HGET", KEYS[3], "state")
  if not is_terminal(state) then
    redis.call("HSET", KEYS[3], "state", "dead", "error", ARGV[4], "finished_at_ms", ARGV[7])
    redis.call("EXPIRE", KEYS[3], ARGV[8])
    if redis.call("EXISTS", KEYS[4]) == 1 then
      redis.call("HSET", KEYS[4], "last_error", ARGV[4], "last_activity_ms", ARGV[7])
      if redis.call("HGET", KEYS[4], "generation") == ARGV[11] then
        redis.call("HSET", KEYS[4], "status", "failed")
      end
    end
    if ARGV[9] ~= "" then
      redis.call("XADD", KEYS[5], "MAXLEN", "~", ARGV[10], "*", "event", ARGV[9])
    end
    if redis.call("HGET", KEYS[6], "state") == "pending" then
      redis.call("HSET", KEYS[6], "state", "failed", "error", ARGV[4])
    end
  end
end

redis.call("XACK", KEYS[1], ARGV[2], ARGV[1])
return {"dead", dead_id}
