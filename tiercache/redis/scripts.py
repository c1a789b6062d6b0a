"""The Lua scripts the Redis tier runs: each does one atomic step of a write, fill or flush."""

from __future__ import annotations

from dataclasses import dataclass

from .envelope import LUA as _ENVELOPE_LUA

__all__ = [
    "ACK",
    "BUMP",
    "FILL",
    "FILL_VERSIONED",
    "JOURNAL_PUT",
    "READ_VERSION",
    "RELEASE",
    "RESTORE",
    "SET",
    "SET_VERSIONED",
    "UNLOCK",
    "LuaScript",
]


@dataclass(frozen=True, slots=True, eq=False)
class LuaScript:
    """A script's name (for errors and logs) and source; clients cache it by this object."""

    # eq=False: hashed by identity, so looking up a registered script on
    # every call does not run a Python-level __hash__ over its fields.
    name: str
    source: str


# Per-key versions (Versioned namespaces): each key has a version key, and
# each copy carries the version it was written under, spliced in after the
# envelope's header (envelope.LUA: the one Lua copy of that layout). A reader serves a copy only if
# its version is the key's current one, so a write makes every older copy
# unreachable. Versions come from the server clock in microseconds and only
# grow, so a version key lost to eviction, FLUSHALL or a restart never
# makes an older copy current again.
_KEY_VERSIONS = _ENVELOPE_LUA + """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function bumped(vkey)
  local v = tonumber(redis.call('GET', vkey) or '0')
  local now = now_us()
  if now > v then return now end
  return v + 1
end
local function put(key, value, px)
  if px > 0 then
    redis.call('SET', key, value, 'PX', px)
  else
    redis.call('SET', key, value)
  end
end
"""
# Versioned writes: each key (KEYS in triples: lease, copy, version key)
# takes a new version; the copy is set under it (ARGV pairs: sealed copy,
# px) or, with an empty copy, removed (its version key then lives ARGV px).
_SET_VERSIONED = _KEY_VERSIONS + """
for i = 1, #KEYS / 3 do
  local vkey = KEYS[3*i]
  local v = bumped(vkey)
  local blob, px = ARGV[2*i-1], tonumber(ARGV[2*i])
  put(vkey, version_text(v), px)
  if blob == '' then
    redis.call('DEL', KEYS[3*i-1])
  else
    put(KEYS[3*i-1], stamped(blob, v), px)
  end
  redis.call('DEL', KEYS[3*i-2])
end
return 0
"""
# A versioned fill, only while the reader's lease is intact: the copy takes
# the key's current version (a fresh one from the clock when it has none).
_FILL_VERSIONED = _KEY_VERSIONS + """
local filled = 0
for i = 1, #KEYS / 3 do
  if redis.call('GET', KEYS[3*i-2]) == ARGV[1] then
    local vkey = KEYS[3*i]
    local v = tonumber(redis.call('GET', vkey) or '0')
    if v == 0 then v = now_us() end
    local px = tonumber(ARGV[2*i+1])
    put(vkey, version_text(v), px)
    put(KEYS[3*i-1], stamped(ARGV[2*i], v), px)
    redis.call('DEL', KEYS[3*i-2])
    filled = filled + 1
  end
end
return filled
"""

# Write-back journal: one script records a pending write (with a sequence
# number that orders writers) and sets the cached copy, atomically, so the
# journal and the cache can never disagree on which write came last.
_JOURNAL_PUT = _KEY_VERSIONS + """
-- ARGV: 4 per entry, then the limit, then (announcing) the bus entry and the
-- stream's maxlen; KEYS then end with the bus stream.
local announce = (#ARGV - 1) % 4 == 2
local n = (#ARGV - (announce and 3 or 1)) / 4
local limit = tonumber(ARGV[4 * n + 1])
-- Under Versioned, KEYS ends with each key's version key: a copy set here
-- takes a new version, atomically with its journal entry.
local versioned = #KEYS - (announce and 1 or 0) > 2 + 2 * n
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
    if versioned then
      local vkey = KEYS[2+2*n+i]
      local v = bumped(vkey)
      put(vkey, version_text(v), px)
      blob = stamped(blob, v)
    end
    put(KEYS[2+i], blob, px)
  end
end
if announce then
  -- Other processes hear of the change in the same atomic step that makes it.
  redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', ARGV[4*n+3], '*', 'm', ARGV[4*n+2])
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

JOURNAL_PUT = LuaScript("journal put", _JOURNAL_PUT)
ACK = LuaScript("journal ack", _JOURNAL_ACK)
RESTORE = LuaScript("journal restore", _JOURNAL_RESTORE)
BUMP = LuaScript("version bump", _BUMP_VERSION)
READ_VERSION = LuaScript("version read", _READ_VERSION)
UNLOCK = LuaScript("unlock", _UNLOCK)
FILL = LuaScript("fenced fill", _FILL_LEASED)
SET = LuaScript("set", _SET)
RELEASE = LuaScript("release", _RELEASE)
SET_VERSIONED = LuaScript("versioned set", _SET_VERSIONED)
FILL_VERSIONED = LuaScript("versioned fill", _FILL_VERSIONED)
