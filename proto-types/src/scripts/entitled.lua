-- May this lease holder create a Kubernetes object for the session now?
-- (see proto_types::scripts::entitled)
-- KEYS: 1 lease key, 2 session hash
-- ARGV: 1 "<token> <owner>" (the lease value), 2 job generation,
--       3 purpose: "workspace" (refused once desired is deleted) | "backup"
-- Replies: {"entitled"} | {"lost"} | {"superseded", generation} | {"deleted"}
-- Run right before each create, so the lease, the generation and the
-- desired state are checked in one atomic step.

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
return {"entitled"}
