-- May this lease holder create a Kubernetes object for the session now?
-- (see proto_types::scripts::entitled)
-- KEYS: 1 lease key, 2 session hash; with a pending backup also
--       3 backup hash, 4 user backups zset, 5 session backups zset
-- ARGV: 1 "<token> <owner>" (the lease value), 2 job generation,
--       3 purpose: "workspace" (refused once desired is deleted) | "backup",
--       with a pending backup also 4 backup id, 5 kind, 6 session id,
--       7 user id, 8 now_ms
-- Replies: {"entitled"} | {"lost"} | {"superseded", generation} | {"deleted"}
-- Run right before each create, so the lease, the generation and the
-- desired state are checked in one atomic step. When entitled to create a
-- request's backup, its record is written `pending` in the same step (once:
-- an existing record is left as it is).

if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return {"lost"}
end
local s = redis.call("HMGET", KEYS[2], "generation", "desired")
local generation = s[1] or "0"
if generation ~= ARGV[2] then
  return {"superseded", generation}
end
if s[2] == false or (s[2] == "deleted" and ARGV[3] ~= "backup") then
  return {"deleted"}
end
if ARGV[3] == "backup" and KEYS[3] and redis.call("EXISTS", KEYS[3]) == 0 then
  redis.call("HSET", KEYS[3],
    "id", ARGV[4], "session_id", ARGV[6], "user_id", ARGV[7], "created_at_ms", ARGV[8],
    "kind", ARGV[5], "location", "", "size_bytes", "0", "sha256", "", "state", "pending", "error", "")
  redis.call("ZADD", KEYS[4], ARGV[8], ARGV[4])
  redis.call("ZADD", KEYS[5], ARGV[8], ARGV[4])
end
return {"entitled"}
