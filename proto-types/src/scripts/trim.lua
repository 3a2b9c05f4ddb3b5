-- Trim the jobs stream without ever dropping a pending or unread entry
-- (see proto_types::scripts::trim).
-- KEYS: 1 jobs stream
-- ARGV: none
-- Replies: {"trimmed", removed_count, min_id} | {"skipped", why}
-- The bound is the minimum over every group of its oldest pending id and
-- its last-delivered id; XTRIM MINID keeps every entry at or above it.

if redis.call("EXISTS", KEYS[1]) == 0 then
  return {"skipped", "no stream"}
end

local function parse(id)
  local sep = string.find(id, "-", 1, true)
  return tonumber(string.sub(id, 1, sep - 1)), tonumber(string.sub(id, sep + 1))
end

local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end

local groups = redis.call("XINFO", "GROUPS", KEYS[1])
if #groups == 0 then
  return {"skipped", "no group"}
end

local min = nil
for _, g in ipairs(groups) do
  local name, last = nil, nil
  for i = 1, #g, 2 do
    if g[i] == "name" then name = g[i + 1] end
    if g[i] == "last-delivered-id" then last = g[i + 1] end
  end
  if min == nil or less(last, min) then min = last end
  local pending = redis.call("XPENDING", KEYS[1], name)
  local oldest = pending[2]
  if oldest and less(oldest, min) then min = oldest end
end

local removed = redis.call("XTRIM", KEYS[1], "MINID", min)
return {"trimmed", tostring(removed), min}
