"""The Lua scripts of the Redis stores, and how they are run (EVALSHA, loaded once, NOSCRIPT handled).

Every store method is one script call, so each recorded outcome, state change or probe permit is one
round trip and atomic on the server: Redis runs a script alone, with nothing interleaved.

Keys of one breaker (the ``{name}`` hash tag keeps them in one Redis Cluster slot):

* ``<prefix>{name}`` hash: the state (``state version since open_until reopens reason``), the probe
  bookkeeping (``probe_ok next_token``) and the window's totals (``kind size head calls failures slow
  consec``);
* ``<prefix>{name}:ring`` string: a count window, one byte per position (0 success, bit 0 failed, bit 1
  slow), position ``head % size``; bytes past its end read as successes, so a healthy service stores
  almost nothing;
* ``<prefix>{name}:buckets`` hash: a time window, fields ``c<i> f<i> s<i>`` for absolute bucket ``i``;
* ``<prefix>{name}:leases`` hash: half-open permits, token → wall time the lease runs out;
* ``<prefix>{name}:batches`` hash: producer → the last batch sequence number added (``batch``), so a
  batch resent after a timeout is not counted twice; it expires a day after its last use.

A state change (``transition``) is published on the channel ``<prefix>changes`` as a JSON array of strings
``[name, state, version, since, open_until, reopens, cleared, reason]`` (see
:mod:`bounceback.stores.redis._push`).

Floats travel as strings both ways: Redis turns a Lua number in a reply into an integer.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["BREAKER_LUA", "BUDGET_LUA", "LuaScript"]

BREAKER_LUA = r"""
local H, RING, BUCKETS, LEASES, SEEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]

local function state()
  return redis.call('HMGET', H, 'state', 'version', 'since', 'open_until', 'reopens', 'reason')
end

local function create()
  redis.call('HSET', H, 'state', 'closed', 'version', 0, 'since', '0', 'reopens', 0, 'reason', '',
             'probe_ok', 0, 'next_token', 0, 'consec', 0)
end

local function bits(b)
  return b % 2, math.floor(b / 2) % 2
end

if op == 'load' then
  local s = state()
  if not s[2] then return false end
  return s

elseif op == 'record' or op == 'batch' then
  local kind, size = ARGV[2], ARGV[3]
  local buckets, width = tonumber(ARGV[7]), tonumber(ARGV[8])
  local cur = redis.call('HMGET', H, 'version', 'kind', 'size')
  if not cur[1] then create() end
  if cur[2] ~= kind or cur[3] ~= size then
    -- A reconfigured window starts empty: old outcomes do not fit the new shape.
    redis.call('DEL', RING, BUCKETS)
    redis.call('HSET', H, 'kind', kind, 'size', size, 'calls', 0, 'failures', 0, 'slow', 0)
    redis.call('HDEL', H, 'head')
  end
  local w = redis.call('HMGET', H, 'head', 'calls', 'failures', 'slow', 'consec')
  local head = tonumber(w[1])
  local calls, failures, slow = tonumber(w[2]), tonumber(w[3]), tonumber(w[4])
  local consec = tonumber(w[5]) or 0

  local function add(successes, outcome, now)
    if kind == 'count' then
      local n = tonumber(size)
      head = head or 0
      if successes > 0 then
        if successes >= n then
          redis.call('DEL', RING)
          calls, failures, slow = n, 0, 0
        else
          local function wipe(lo, hi)
            local old = redis.call('GETRANGE', RING, lo, hi - 1)
            local dirty = false
            for i = 1, #old do
              local b = string.byte(old, i)
              if b ~= 0 then
                local f, s = bits(b)
                failures, slow, dirty = failures - f, slow - s, true
              end
            end
            if dirty then redis.call('SETRANGE', RING, lo, string.rep('\0', #old)) end
          end
          local start = head % n
          local stop = start + successes
          if stop <= n then
            wipe(start, stop)
          else
            wipe(start, n)
            wipe(0, stop - n)
          end
          calls = math.min(calls + successes, n)
        end
        head = head + successes
      end
      if outcome >= 0 then
        local slot = head % n
        local old = redis.call('GETRANGE', RING, slot, slot)
        local ob = 0
        if #old == 1 then ob = string.byte(old) end
        if calls >= n then
          local f, s = bits(ob)
          failures, slow = failures - f, slow - s
        else
          calls = calls + 1
        end
        if outcome ~= ob then redis.call('SETRANGE', RING, slot, string.char(outcome)) end
        local f, s = bits(outcome)
        failures, slow = failures + f, slow + s
        head = head + 1
      end
    else
      local index = math.floor(now / width)
      if head == nil then
        head = index
      elseif index > head then
        if index - head >= buckets then
          redis.call('DEL', BUCKETS)
          calls, failures, slow = 0, 0, 0
        else
          for i = head - buckets + 1, index - buckets do
            local b = redis.call('HMGET', BUCKETS, 'c' .. i, 'f' .. i, 's' .. i)
            if b[1] then
              calls = calls - tonumber(b[1])
              failures = failures - (tonumber(b[2]) or 0)
              slow = slow - (tonumber(b[3]) or 0)
              redis.call('HDEL', BUCKETS, 'c' .. i, 'f' .. i, 's' .. i)
            end
          end
        end
        head = index
      end
      local n, f, s = math.max(successes, 0), 0, 0
      if outcome >= 0 then
        n = n + 1
        f, s = bits(outcome)
      end
      if n > 0 then
        -- A reading that lags the newest bucket (another machine's clock) counts in the newest bucket.
        redis.call('HINCRBY', BUCKETS, 'c' .. head, n)
        if f > 0 then redis.call('HINCRBY', BUCKETS, 'f' .. head, f) end
        if s > 0 then redis.call('HINCRBY', BUCKETS, 's' .. head, s) end
        calls, failures, slow = calls + n, failures + f, slow + s
      end
    end
    if successes > 0 then consec = 0 end
    if outcome >= 0 then
      if outcome % 2 == 1 then consec = consec + 1 else consec = 0 end
    end
  end

  if op == 'record' then
    add(tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
  else
    -- ARGV: 'batch' kind size - now buckets width producer seq then (successes outcome at) per run.
    -- A batch id seen before (a resend after a timeout whose first try did land) adds nothing.
    local producer, seq = ARGV[9], tonumber(ARGV[10])
    local fresh = true
    if producer ~= '' then
      local seen = tonumber(redis.call('HGET', SEEN, producer))
      if seen and seen >= seq then fresh = false end
    end
    if fresh then
      for i = 11, #ARGV, 3 do
        add(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
      end
      if producer ~= '' then
        redis.call('HSET', SEEN, producer, seq)
        redis.call('PEXPIRE', SEEN, 86400000)
      end
    end
    -- Age a time window to the flush time, so the counts returned are the counts now.
    add(0, -1, tonumber(ARGV[6]))
  end
  redis.call('HSET', H, 'head', head, 'calls', calls, 'failures', failures, 'slow', slow, 'consec', consec)
  local s = state()
  return {calls, failures, slow, consec, s[1], s[2], s[3], s[4], s[5], s[6]}

elseif op == 'counts' then
  local kind, size, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local w = redis.call('HMGET', H, 'kind', 'size', 'head', 'calls', 'failures', 'slow', 'consec')
  local consec = tonumber(w[7]) or 0
  if w[1] ~= kind or w[2] ~= size then
    if redis.call('HEXISTS', H, 'version') == 1 then
      -- Read right after a reconfiguration: the window starts anew in the new shape.
      redis.call('DEL', RING, BUCKETS)
      redis.call('HSET', H, 'kind', kind, 'size', size, 'calls', 0, 'failures', 0, 'slow', 0)
      redis.call('HDEL', H, 'head')
    end
    return {0, 0, 0, consec}
  end
  local head = tonumber(w[3])
  local calls, failures, slow = tonumber(w[4]), tonumber(w[5]), tonumber(w[6])
  if kind == 'count' or head == nil then return {calls, failures, slow, consec} end
  local buckets, width = tonumber(ARGV[5]), tonumber(ARGV[6])
  local index = math.floor(now / width)
  if index <= head then return {calls, failures, slow, consec} end
  if index - head >= buckets then return {0, 0, 0, consec} end
  for i = head - buckets + 1, index - buckets do
    local b = redis.call('HMGET', BUCKETS, 'c' .. i, 'f' .. i, 's' .. i)
    calls = calls - (tonumber(b[1]) or 0)
    failures = failures - (tonumber(b[2]) or 0)
    slow = slow - (tonumber(b[3]) or 0)
  end
  return {calls, failures, slow, consec}

elseif op == 'transition' then
  local v = redis.call('HGET', H, 'version')
  if not v then
    create()
    v = '0'
  end
  if tonumber(v) ~= tonumber(ARGV[2]) then return state() end
  redis.call('HSET', H, 'state', ARGV[3], 'version', tonumber(ARGV[2]) + 1, 'since', ARGV[4],
             'reopens', ARGV[6], 'reason', ARGV[7], 'probe_ok', 0)
  if ARGV[5] == '' then
    redis.call('HDEL', H, 'open_until')
  else
    redis.call('HSET', H, 'open_until', ARGV[5])
  end
  redis.call('DEL', LEASES)
  if ARGV[8] == '1' then
    redis.call('DEL', RING, BUCKETS)
    redis.call('HSET', H, 'calls', 0, 'failures', 0, 'slow', 0, 'consec', 0)
    redis.call('HDEL', H, 'head')
  end
  if ARGV[9] ~= '' then
    -- Push the change to every process of the fleet (their feeds subscribe to the channel). Fields travel
    -- as the strings stored, so floats keep every digit.
    redis.call('PUBLISH', ARGV[9], cjson.encode({ARGV[10], ARGV[3], tostring(tonumber(ARGV[2]) + 1),
               ARGV[4], ARGV[5], ARGV[6], ARGV[8], ARGV[7]}))
  end
  return state()

elseif op == 'acquire' then
  local s = redis.call('HMGET', H, 'state', 'version')
  if s[1] ~= 'half_open' or tonumber(s[2]) ~= tonumber(ARGV[2]) then return false end
  local limit, now = tonumber(ARGV[3]), tonumber(ARGV[4])
  local held = redis.call('HLEN', LEASES)
  if held >= limit then
    -- Permits whose holder died (their lease ran out) free themselves here.
    local all = redis.call('HGETALL', LEASES)
    for i = 1, #all, 2 do
      if tonumber(all[i + 1]) <= now then
        redis.call('HDEL', LEASES, all[i])
        held = held - 1
      end
    end
    if held >= limit then return false end
  end
  local token = redis.call('HINCRBY', H, 'next_token', 1)
  redis.call('HSET', LEASES, token, ARGV[5])
  return token

elseif op == 'finish' then
  local s = redis.call('HMGET', H, 'version', 'probe_ok')
  if not s[1] or tonumber(s[1]) ~= tonumber(ARGV[2]) then return -1 end
  redis.call('HDEL', LEASES, ARGV[3])
  if ARGV[4] == '1' then return redis.call('HINCRBY', H, 'probe_ok', 1) end
  return tonumber(s[2]) or 0

elseif op == 'probes' then
  local now = tonumber(ARGV[2])
  local all = redis.call('HGETALL', LEASES)
  local held = 0
  for i = 2, #all, 2 do
    if tonumber(all[i]) > now then held = held + 1 end
  end
  return held
end
return redis.error_reply('bounceback: unknown breaker operation ' .. tostring(op))
"""
"""One script for every breaker operation (``ARGV[1]`` names it), so one SHA is loaded once."""

BUDGET_LUA = r"""
local K = KEYS[1]
local width, slices, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local calls, span, spend = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local ratio, floor_amount, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
-- A batch (settle_many): retries already granted by a process, added without a check, under an id
-- (producer, seq) so that a batch resent after a timeout is not added twice.
local add, producer, seq = tonumber(ARGV[10] or '0') or 0, ARGV[11] or '', tonumber(ARGV[12] or '0') or 0
local function fmt(x) return string.format('%.17g', x) end
local index = math.floor(now / width)
if producer ~= '' then
  local last = tonumber(redis.call('HGET', K, 'b:' .. producer) or '0') or 0
  if seq <= last then calls, add = 0, 0 end
end
local h = redis.call('HMGET', K, 'width', 'head', 'calls', 'retries')
local head, total_calls, total_retries
if h[1] ~= ARGV[1] or index - tonumber(h[2]) >= slices then
  -- New, reshaped (the window setting changed) or idle for a whole window: start empty.
  redis.call('DEL', K)
  head, total_calls, total_retries = index, 0, 0
else
  head, total_calls, total_retries = tonumber(h[2]), tonumber(h[3]), tonumber(h[4])
  if index > head then
    for i = head - slices + 1, index - slices do
      local v = redis.call('HMGET', K, 'c' .. i, 'r' .. i)
      total_calls = total_calls - (tonumber(v[1]) or 0)
      total_retries = total_retries - (tonumber(v[2]) or 0)
      redis.call('HDEL', K, 'c' .. i, 'r' .. i)
    end
    -- Repeated subtraction of fractions must not leave a negative crumb behind.
    total_calls, total_retries = math.max(total_calls, 0), math.max(total_retries, 0)
    head = index
  end
end
if calls > 0 then
  -- Calls made evenly over (t - span, t]; the part older than the window is dropped.
  local t = math.max(now, head * width)
  local start = t - span
  if span <= 0 or start >= head * width then
    redis.call('HINCRBYFLOAT', K, 'c' .. head, fmt(calls))
    total_calls = total_calls + calls
  else
    local rate = calls / span
    start = math.max(start, (head - slices + 1) * width)
    local first = math.max(math.floor(start / width), head - slices + 1)
    for i = first, head do
      local part = rate * (math.min(t, (i + 1) * width) - math.max(start, i * width))
      if part > 0 then
        redis.call('HINCRBYFLOAT', K, 'c' .. i, fmt(part))
        total_calls = total_calls + part
      end
    end
  end
end
if add > 0 then
  redis.call('HINCRBYFLOAT', K, 'r' .. head, fmt(add))
  total_retries = total_retries + add
end
if producer ~= '' then redis.call('HSET', K, 'b:' .. producer, seq) end
local allowance = ratio * total_calls + floor_amount
local granted = 0
if spend and total_retries + 1 <= allowance + 1e-9 then
  redis.call('HINCRBYFLOAT', K, 'r' .. head, '1')
  total_retries = total_retries + 1
  granted = 1
end
redis.call('HSET', K, 'width', ARGV[1], 'head', head, 'calls', fmt(total_calls), 'retries', fmt(total_retries))
redis.call('PEXPIRE', K, ttl)
return {granted, fmt(total_calls), fmt(total_retries), fmt(allowance)}
"""
"""Settle a retry budget: expire old slices, deposit calls, maybe spend a retry (one round trip)."""


class LuaScript:
    """A script run by SHA; the first call after a server start (or ``SCRIPT FLUSH``) loads it.

    Loading happens on ``NOSCRIPT`` only, so a healthy run costs exactly one ``EVALSHA`` per call.
    """

    __slots__ = ("_missing", "loads", "sha", "source")

    def __init__(self, source: str) -> None:
        from redis.exceptions import NoScriptError  # redis-py is optional: imported when a store is built

        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.loads = 0
        self._missing = NoScriptError

    def __call__(self, client: Any, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """Run the script on ``client`` (a redis-py client)."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except self._missing:
            # The server lost its script cache (restarted, or flushed): load once and go on.
            self.sha = client.script_load(self.source)
            self.loads += 1
            return client.evalsha(self.sha, len(keys), *keys, *args)
