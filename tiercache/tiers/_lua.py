"""The Lua scripts RedisTier runs: each does one atomic step of a write, fill or flush."""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# Write-back journal: one script records a pending write (with a sequence
# number that orders writers) and sets the cached copy, atomically, so the
# journal and the cache can never disagree on which write came last.
_JOURNAL_PUT = """
local limit = tonumber(ARGV[#ARGV])
local n = (#ARGV - 1) / 4
if redis.call('HLEN', KEYS[1]) + n > limit then
  local new = 0
  for i = 1, n do
    if redis.call('HEXISTS', KEYS[1], ARGV[4*i-3]) == 0 then new = new + 1 end
  end
  if redis.call('HLEN', KEYS[1]) + new > limit then return -1 end
end
for i = 1, n do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], ARGV[4*i-3], seq .. '|' .. ARGV[4*i-2])
  redis.call('DEL', KEYS[2+n+i])
  local blob = ARGV[4*i-1]
  if blob ~= '' then
    local px = tonumber(ARGV[4*i])
    if px > 0 then
      redis.call('SET', KEYS[2+i], blob, 'PX', px)
    else
      redis.call('SET', KEYS[2+i], blob)
    end
  end
end
return n
"""
# Remove journal entries only if unchanged since they were read: a write
# that arrived during the flush stays pending.
_JOURNAL_ACK = """
local done = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i+1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    if KEYS[2] then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
    done = done + 1
  end
end
return done
"""
_JOURNAL_RESTORE = """
local moved = 0
for i = 1, #ARGV do
  local entry = redis.call('HGET', KEYS[2], ARGV[i])
  if entry then
    if redis.call('HSETNX', KEYS[1], ARGV[i], entry) == 1 then moved = moved + 1 end
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return moved
"""
# A namespace version that never goes backwards: at least the server's clock
# in microseconds, so a version key lost to eviction, FLUSHALL or a restart
# comes back larger than any version handed out before.
_BUMP_VERSION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if now > v then v = now else v = v + 1 end
redis.call('SET', KEYS[1], v)
return v
"""
_READ_VERSION = """
local v = redis.call('GET', KEYS[1])
if v then return tonumber(v) end
local t = redis.call('TIME')
v = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('SET', KEYS[1], v)
return v
"""
# A fill from a read that loaded the store: only while the reader's lease
# on the key is intact. Any write, delete or invalidation deletes the lease,
# so a read that raced one never puts the older value back (memcache leases).
_FILL_LEASED = """
local filled = 0
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2*i-1]) == ARGV[1] then
    local px = tonumber(ARGV[2*i+1])
    if px > 0 then
      redis.call('SET', KEYS[2*i], ARGV[2*i], 'PX', px)
    else
      redis.call('SET', KEYS[2*i], ARGV[2*i])
    end
    redis.call('DEL', KEYS[2*i-1])
    filled = filled + 1
  end
end
return filled
"""
_SET = """
for i = 1, #KEYS / 2 do
  local px = tonumber(ARGV[2*i])
  if px > 0 then
    redis.call('SET', KEYS[2*i], ARGV[2*i-1], 'PX', px)
  else
    redis.call('SET', KEYS[2*i], ARGV[2*i-1])
  end
  redis.call('DEL', KEYS[2*i-1])
end
return 0
"""
_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

SCRIPTS = {
    "put": _JOURNAL_PUT,
    "ack": _JOURNAL_ACK,
    "restore": _JOURNAL_RESTORE,
    "bump": _BUMP_VERSION,
    "version": _READ_VERSION,
    "unlock": _UNLOCK,
    "fill": _FILL_LEASED,
    "set": _SET,
    "release": _RELEASE,
}
