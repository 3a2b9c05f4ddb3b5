-- Start one delivered job (see proto_types::scripts::start).
-- KEYS: 1 job hash, 2 session hash
-- ARGV: 1 now_ms, 2 terminal job states (space-separated, from JobState::is_terminal)
-- Replies: {"terminal", job_state}
--          | {"started", attempts, session_generation, desired, status, workspace_url, user_id,
--             restore_from, restore_location, restore_size_bytes, restore_sha256, restore_kind}
--            (session fields are "" and generation "0" when the session hash is missing)

local function is_terminal(state)
  return state and string.find(" " .. ARGV[2] .. " ", " " .. state .. " ", 1, true) ~= nil
end

local state = redis.call("HGET", KEYS[1], "state")
if is_terminal(state) then
  return {"terminal", state}
end

redis.call("HSET", KEYS[1], "state", "running")
local attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
if redis.call("HEXISTS", KEYS[1], "started_at_ms") == 0 then
  redis.call("HSET", KEYS[1], "started_at_ms", ARGV[1])
end

local s = redis.call("HMGET", KEYS[2], "generation", "desired", "status", "workspace_url", "user_id",
  "restore_from", "restore_location", "restore_size_bytes", "restore_sha256", "restore_kind")
return {"started", tostring(attempts), s[1] or "0", s[2] or "", s[3] or "", s[4] or "", s[5] or "",
  s[6] or "", s[7] or "", s[8] or "", s[9] or "", s[10] or ""}
