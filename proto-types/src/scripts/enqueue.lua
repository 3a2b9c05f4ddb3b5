-- Enqueue one job atomically (see proto_types::scripts::enqueue).
-- KEYS: 1 session hash, 2 job hash, 3 jobs stream, 4 sessions index,
--       5 user sessions set, 6 idempotency key, 7 lifecycle-due set,
--       8 backup hash to restore from (create with restore_from; any key otherwise)
-- ARGV: 1 job_id, 2 session_id, 3 command, 4 payload, 5 now_ms,
--       6 expected generation, 7 desired, 8 status, 9 user_id,
--       10 max sessions per user (0 = no limit), 11 use idempotency ("1"/"0"),
--       12 request fingerprint, 13 idempotency ttl secs, 14 workspace url,
--       15 idempotency key (as sent by the client), 16 origin,
--       17 session idle timeout secs ("" = keep / worker default),
--       18 backup id to restore from ("" = none; create only),
--       19 restore any user's backup ("1" = admin key, "0" = only the owner's)
-- Replies: {"ok", stream_id} | {"idem", job_id, "same"|"different"}
--          | {"conflict", current_generation} | {"limit", live_count}
--          | {"restore", "missing"|"gone"|"unusable", backup_state}
-- Every refusal writes nothing.

if ARGV[11] == "1" then
  local prior = redis.call("GET", KEYS[6])
  if prior then
    local sep = string.find(prior, " ", 1, true)
    local prior_job = string.sub(prior, 1, sep - 1)
    local prior_fp = string.sub(prior, sep + 1)
    if prior_fp == ARGV[12] then
      return {"idem", prior_job, "same"}
    end
    return {"idem", prior_job, "different"}
  end
end

local current = redis.call("HGET", KEYS[1], "generation")
if not current then current = "0" end
if current ~= ARGV[6] then
  return {"conflict", current}
end

local generation = tostring(tonumber(current) + 1)
local is_create = ARGV[3] == "create"

if is_create then
  local max = tonumber(ARGV[10])
  if max > 0 then
    local live = redis.call("SCARD", KEYS[5])
    if live >= max then
      return {"limit", tostring(live)}
    end
  end
  local restore = nil
  if ARGV[18] ~= "" then
    -- Another user's backup answers like a missing one (no existence leak).
    local b = redis.call("HMGET", KEYS[8], "id", "user_id", "state", "kind", "location", "size_bytes", "sha256")
    if not b[1] or (ARGV[19] ~= "1" and b[2] ~= ARGV[9]) then
      return {"restore", "missing", ""}
    end
    if b[3] == "deleted" then
      return {"restore", "gone", b[3]}
    end
    if b[3] ~= "succeeded" or (b[4] ~= "archive" and b[4] ~= "snapshot") or not b[5] or b[5] == "" then
      return {"restore", "unusable", b[3] or ""}
    end
    restore = b
  end
  redis.call("HSET", KEYS[1],
    "user_id", ARGV[9],
    "created_at_ms", ARGV[5],
    "replicas", "0",
    "last_error", "",
    "backup_file", "",
    "fence", "0",
    "workspace_url", ARGV[14])
  if restore then
    redis.call("HSET", KEYS[1],
      "restore_from", ARGV[18],
      "restore_kind", restore[4],
      "restore_location", restore[5],
      "restore_size_bytes", restore[6] or "0",
      "restore_sha256", restore[7] or "")
  end
  redis.call("ZADD", KEYS[4], ARGV[5], ARGV[2])
  redis.call("SADD", KEYS[5], ARGV[2])
end

local status_before = redis.call("HGET", KEYS[1], "status")
if status_before and status_before ~= ARGV[8] then
  redis.call("HSET", KEYS[1], "last_transition",
    status_before .. " " .. ARGV[8] .. " " .. ARGV[16] .. " " .. ARGV[5])
end
redis.call("HSET", KEYS[1],
  "status", ARGV[8],
  "desired", ARGV[7],
  "generation", generation,
  "last_activity_ms", ARGV[5],
  "last_job_id", ARGV[1])
if ARGV[17] ~= "" then
  redis.call("HSET", KEYS[1], "idle_timeout_secs", ARGV[17])
end
-- The command is use: the sweeper looks at the session again now (it
-- computes the real next deadline), never later than it would have.
redis.call("ZADD", KEYS[7], "LT", ARGV[5], ARGV[2])

local stream_id = redis.call("XADD", KEYS[3], "*", "job", ARGV[4])

redis.call("HSET", KEYS[2],
  "session_id", ARGV[2],
  "command", ARGV[3],
  "state", "queued",
  "generation", generation,
  "requested_at_ms", ARGV[5],
  "attempts", "0",
  "error", "",
  "stream_id", stream_id,
  "idempotency_key", ARGV[15],
  "origin", ARGV[16])

if ARGV[11] == "1" then
  redis.call("SET", KEYS[6], ARGV[1] .. " " .. ARGV[12], "EX", ARGV[13])
end

return {"ok", stream_id}
