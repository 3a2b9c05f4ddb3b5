-- Finish one job atomically (see proto_types::scripts::finish).
-- KEYS: 1 job hash, 2 session hash, 3 jobs stream, 4 events stream,
--       5 demand list, 6 user sessions set, 7 backup hash,
--       8 user backups zset, 9 session backups zset
-- ARGV: 1 stream entry id, 2 group, 3 job state, 4 error ("" for none),
--       5 now_ms, 6 apply to session ("1"/"0"), 7 fencing token,
--       8 session status, 9 replicas, 10 backup file ("" keeps the old one),
--       11 encoded event, 12 session id, 13 job ttl secs,
--       14 tombstone ttl secs, 15 events maxlen,
--       16 terminal job states (space-separated, from JobState::is_terminal),
--       17 upstream "ip:port" (recorded when the status is running; any
--          other status, or "", removes the field)
--       18 backup id ("" for none), 19 location, 20 size bytes, 21 sha256,
--       22 user id, 23 backup state ("succeeded" | "failed"; a failed one
--          keeps the job's error as its reason), 24 backup kind ("archive" | "snapshot"),
--       25 the id of the backup this job may have recorded `pending` ("" for
--          none; KEYS[7] is then its hash when 18 is ""): with no backup
--          written, a still-pending one becomes `failed` if the job ended in
--          one of ARGV 26 (its error, or that it was superseded, is the
--          reason: a backup Job may have left a file, which retention then
--          removes), and is removed (record and index entries) otherwise: the
--          job succeeded without taking a backup;
--       26 job states that fail a pending backup (space-separated:
--          JobState::Failed and JobState::Superseded)
-- Replies: {"finished"} | {"already", job_state} | {"fenced", session_fence}
-- A "fenced" reply means nothing was written and nothing acknowledged.

local function is_terminal(state)
  return state and string.find(" " .. ARGV[16] .. " ", " " .. state .. " ", 1, true) ~= nil
end

local state = redis.call("HGET", KEYS[1], "state")
if is_terminal(state) then
  redis.call("XACK", KEYS[3], ARGV[2], ARGV[1])
  return {"already", state}
end

local apply = ARGV[6] == "1" and redis.call("EXISTS", KEYS[2]) == 1
if apply then
  local fence = tonumber(redis.call("HGET", KEYS[2], "fence") or "0") or 0
  if fence > tonumber(ARGV[7]) then
    return {"fenced", tostring(fence)}
  end
end

redis.call("HSET", KEYS[1],
  "state", ARGV[3],
  "error", ARGV[4],
  "finished_at_ms", ARGV[5])
redis.call("EXPIRE", KEYS[1], ARGV[13])

if apply then
  local before = redis.call("HGET", KEYS[2], "status")
  if before and before ~= ARGV[8] then
    local origin = redis.call("HGET", KEYS[1], "origin") or "api"
    redis.call("HSET", KEYS[2], "last_transition", before .. " " .. ARGV[8] .. " " .. origin .. " " .. ARGV[5])
  end
  redis.call("HSET", KEYS[2],
    "status", ARGV[8],
    "replicas", ARGV[9],
    "last_error", ARGV[4],
    "last_activity_ms", ARGV[5],
    "fence", ARGV[7])
  if ARGV[10] ~= "" then
    redis.call("HSET", KEYS[2], "backup_file", ARGV[10])
  end
  if ARGV[8] == "running" and ARGV[17] ~= "" then
    redis.call("HSET", KEYS[2], "upstream", ARGV[17])
  else
    redis.call("HDEL", KEYS[2], "upstream")
  end
  local desired = redis.call("HGET", KEYS[2], "desired")
  local status = ARGV[8]
  redis.call("DEL", KEYS[5])
  if desired == "running" and (status == "running" or status == "creating" or status == "waking") then
    redis.call("RPUSH", KEYS[5], "1")
  end
  if ARGV[18] ~= "" then
    redis.call("HSET", KEYS[7],
      "id", ARGV[18], "session_id", ARGV[12], "user_id", ARGV[22],
      "created_at_ms", ARGV[5], "kind", ARGV[24], "location", ARGV[19],
      "size_bytes", ARGV[20], "sha256", ARGV[21], "state", ARGV[23],
      "error", ARGV[4])
    redis.call("ZADD", KEYS[8], ARGV[5], ARGV[18])
    redis.call("ZADD", KEYS[9], ARGV[5], ARGV[18])
  end
  if status == "deleted" then
    redis.call("SREM", KEYS[6], ARGV[12])
    redis.call("EXPIRE", KEYS[2], ARGV[14])
  end
end

if ARGV[18] == "" and ARGV[25] ~= "" and redis.call("HGET", KEYS[7], "state") == "pending" then
  if string.find(" " .. ARGV[26] .. " ", " " .. ARGV[3] .. " ", 1, true) then
    local why = ARGV[4]
    if why == "" then
      why = "the " .. ARGV[3] .. " job recorded no backup"
    end
    redis.call("HSET", KEYS[7], "state", "failed", "error", why)
  else
    redis.call("DEL", KEYS[7])
    redis.call("ZREM", KEYS[8], ARGV[25])
    redis.call("ZREM", KEYS[9], ARGV[25])
  end
end

redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[15], "*", "event", ARGV[11])
redis.call("XACK", KEYS[3], ARGV[2], ARGV[1])
return {"finished"}
