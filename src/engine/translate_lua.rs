//! Lua scripts that do on an older target what one command of a newer source does.
//!
//! Some commands of Redis 8.2 have no combination of older commands that reproduces them
//! without reading the target first: whether a stream entry is still referenced by a consumer
//! group, the TTLs a hash's fields already have, the bytes of the strings `BITOP DIFF` combines.
//! A script reads and writes in one atomic step on the target, inside the writer's `MULTI`, and
//! the target holds exactly the source's data at that point of the stream, so the script sees
//! what the source's command saw. Every server we write to (Redis 6.2+, Valkey) runs Lua with
//! the `bit` library, and replicates a script by its effects.
//!
//! The scripts avoid `unpack` of long lists (Lua's stack caps it at a few thousand values):
//! ids are acknowledged and deleted in chunks.

/// Shared helpers: stream-id comparison without floating point (ids are two u64s, beyond what a
/// Lua number holds exactly), the consumer groups with their last delivered id, whether an entry
/// is still referenced, and acknowledging ids in every group.
const STREAM_HELPERS: &str = r#"
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then ms, seq = string.match(id, '^(%d+)$'), '0' end
  return ms, seq
end
local function numcmp(a, b)
  a = string.gsub(a, '^0+(%d)', '%1'); b = string.gsub(b, '^0+(%d)', '%1')
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function idcmp(a, b)
  local am, as = split(a); local bm, bs = split(b)
  local c = numcmp(am, bm)
  if c ~= 0 then return c end
  return numcmp(as, bs)
end
local function groups(key)
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    out[#out + 1] = {name, last}
  end
  return out
end
local function referenced(key, gs, id)
  for _, g in ipairs(gs) do
    if idcmp(id, g[2]) > 0 then return true end
    if #redis.call('XPENDING', key, g[1], id, id, 1) > 0 then return true end
  end
  return false
end
local function chunked(cmd, key, extra, ids)
  local n = 0
  while n < #ids do
    local args = {cmd, key}
    if extra then args[#args + 1] = extra end
    for i = n + 1, math.min(n + 500, #ids) do args[#args + 1] = ids[i] end
    n = math.min(n + 500, #ids)
    redis.call(unpack(args))
  end
end
local function unref(key, ids)
  for _, g in ipairs(groups(key)) do chunked('XACK', key, g[1], ids) end
end
local function delete_unreferenced(key, ids)
  local gs = groups(key)
  local removed = 0
  for _, id in ipairs(ids) do
    if not referenced(key, gs, id) then removed = removed + redis.call('XDEL', key, id) end
  end
  return removed
end
"#;

/// `XDELEX key DELREF IDS …` (and the delete half of `XACKDEL … DELREF`): delete the entries
/// and every consumer group's reference to them. `KEYS[1]` the stream, `ARGV` the ids.
pub(crate) fn xdel_delref() -> String {
    format!(
        "{STREAM_HELPERS}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
unref(KEYS[1], ARGV)
local removed = 0
for _, id in ipairs(ARGV) do removed = removed + redis.call('XDEL', KEYS[1], id) end
return removed"
    )
}

/// `XDELEX key ACKED IDS …`: delete only the entries no group still needs (delivered to every
/// group and in no pending list), as Redis 8.2 does. `KEYS[1]` the stream, `ARGV` the ids.
pub(crate) fn xdel_acked() -> String {
    format!(
        "{STREAM_HELPERS}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return delete_unreferenced(KEYS[1], ARGV)"
    )
}

/// A trim with `DELREF` or `ACKED` (`XTRIM`, or `XADD`'s trim after the entry was added).
/// `KEYS[1]` the stream; `ARGV` = strategy (`MAXLEN`/`MINID`), exact threshold, policy.
///
/// `DELREF` trims exactly what a plain trim does, then drops the trimmed ids from every group.
/// `ACKED` walks from the oldest entry and deletes the unreferenced ones, skipping the others,
/// until the length (MAXLEN) or the id (MINID) is reached: measured on Redis 8.2.3, where
/// `XTRIM MAXLEN 4 ACKED` over six entries whose first is pending deletes the second and third.
/// Such a trim does not move the stream's max-deleted id (a trim never does). The deleted run at
/// the head goes by an exact `XTRIM MINID`, which does not move it either; an entry behind a
/// kept one can only go by `XDEL`, which does, so the script sets the id back with `XSETID …
/// MAXDELETEDID` (7.0+). One case stays inexact: a stream that never had a deletion has
/// max-deleted id `0-0`, which `XSETID` does not accept as a value (it leaves the id as is), so
/// after such a mid-stream deletion the target reports the deleted entry's id there.
pub(crate) fn trim_with_policy() -> String {
    format!(
        "{STREAM_HELPERS}
local key, strategy, threshold, policy = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 0 then return 0 end
local minid = threshold
if strategy == 'MINID' and not string.find(minid, '-', 1, true) then minid = minid .. '-0' end
if policy == 'DELREF' then
  local doomed
  if strategy == 'MAXLEN' then
    local excess = redis.call('XLEN', key) - tonumber(threshold)
    if excess <= 0 then return 0 end
    doomed = redis.call('XRANGE', key, '-', '+', 'COUNT', excess)
  else
    doomed = redis.call('XRANGE', key, '-', '(' .. minid)
  end
  if #doomed == 0 then return 0 end
  redis.call('XTRIM', key, strategy, '=', threshold)
  local ids = {{}}
  for i, e in ipairs(doomed) do ids[i] = e[1] end
  unref(key, ids)
  return #ids
end
local maxdel, lastid
local info = redis.call('XINFO', 'STREAM', key)
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then maxdel = info[i + 1]
  elseif info[i] == 'last-generated-id' then lastid = info[i + 1] end
end
local gs = groups(key)
local len, goal = redis.call('XLEN', key), tonumber(threshold)
local head, rest, kept, last = {{}}, {{}}, nil, nil
local cursor = '-'
while true do
  if strategy == 'MAXLEN' and len <= goal then break end
  local batch
  if strategy == 'MAXLEN' then
    batch = redis.call('XRANGE', key, cursor, '+', 'COUNT', 100)
  else
    batch = redis.call('XRANGE', key, cursor, '(' .. minid, 'COUNT', 100)
  end
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if strategy == 'MAXLEN' and len <= goal then break end
    local id = e[1]
    last = id
    if referenced(key, gs, id) then
      if not kept then kept = id end
    else
      if kept then rest[#rest + 1] = id else head[#head + 1] = id end
      len = len - 1
    end
    cursor = '(' .. id
  end
end
if #head > 0 then
  local after = kept
  if not after then
    local nxt = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
    if #nxt > 0 then after = nxt[1][1] end
  end
  if after then
    redis.call('XTRIM', key, 'MINID', '=', after)
  else
    redis.call('XTRIM', key, 'MAXLEN', '=', 0)
  end
end
for _, id in ipairs(rest) do redis.call('XDEL', key, id) end
if #rest > 0 and maxdel and maxdel ~= '0-0' then
  redis.call('XSETID', key, lastid, 'MAXDELETEDID', maxdel)
end
return #head + #rest"
    )
}

/// `HSETEX key KEEPTTL FIELDS …` on a 7.4 target, which has field TTLs but not `HSETEX`: `HSET`
/// clears a field's TTL, so read them first and set them again. `KEYS[1]` the hash, `ARGV` the
/// field/value pairs.
pub(crate) const HSET_KEEP_TTL: &str = r#"
local key = KEYS[1]
local fields = {}
for i = 1, #ARGV, 2 do fields[#fields + 1] = ARGV[i] end
local times = {}
if redis.call('EXISTS', key) == 1 then
  for i = 1, #fields, 500 do
    local args = {'HPEXPIRETIME', key, 'FIELDS', 0}
    for j = i, math.min(i + 499, #fields) do args[#args + 1] = fields[j] end
    args[4] = #args - 4
    for j, t in ipairs(redis.call(unpack(args))) do times[i + j - 1] = t end
  end
end
for i = 1, #ARGV, 1000 do
  local args = {'HSET', key}
  for j = i, math.min(i + 999, #ARGV) do args[#args + 1] = ARGV[j] end
  redis.call(unpack(args))
end
for i, f in ipairs(fields) do
  local t = times[i]
  if t and t > 0 then redis.call('HPEXPIREAT', key, t, 'FIELDS', 1, f) end
end
return #fields"#;

/// `BITOP DIFF|DIFF1|ANDOR|ONE dest key…` (Redis 8.2) on a target that has only AND, OR, XOR
/// and NOT. `KEYS[1]` the destination, `KEYS[2..]` the sources, `ARGV[1]` the operation.
/// Missing keys are empty strings and shorter strings are padded with zero bytes, as `BITOP`
/// does; an all-empty result deletes the destination.
pub(crate) const BITOP_8_2: &str = r#"
local op = ARGV[1]
local vals, maxlen = {}, 0
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i]) or ''
  vals[#vals + 1] = v
  if #v > maxlen then maxlen = #v end
end
if maxlen == 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
local out = {}
for j = 1, maxlen do
  local x = string.byte(vals[1], j) or 0
  local rest = 0
  for i = 2, #vals do rest = bit.bor(rest, string.byte(vals[i], j) or 0) end
  local r
  if op == 'DIFF' then r = bit.band(x, bit.bnot(rest))
  elseif op == 'DIFF1' then r = bit.band(bit.bnot(x), rest)
  elseif op == 'ANDOR' then r = bit.band(x, rest)
  else
    local seen, multi = 0, 0
    for i = 1, #vals do
      local b = string.byte(vals[i], j) or 0
      multi = bit.bor(multi, bit.band(seen, b))
      seen = bit.bor(seen, b)
    end
    r = bit.band(seen, bit.bnot(multi))
  end
  out[j] = string.char(bit.band(r, 255))
end
redis.call('SET', KEYS[1], table.concat(out))
return maxlen"#;
