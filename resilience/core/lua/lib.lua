-- Helpers shared by every entry point. The Redis 7 function library is this
-- file, the entry points and their registration; on older servers each
-- entry point runs as its own script of this file plus its body. All entry
-- points take the same KEYS of one target, and every key carries the target
-- in a {hash tag}, so they also run on Redis Cluster.
--
-- Redis runs one function or script at a time, so `bind` can keep the keys
-- and arguments of the running call in these upvalues for the helpers.
local K_CB, K_RING, K_BUCKETS, K_EVENTS
local K_BH, K_BH_WAIT, K_RL, K_RL_WAIT, K_STATS
local ARGV

local function bind(keys, args)
  K_CB, K_RING, K_BUCKETS, K_EVENTS = keys[1], keys[2], keys[3], keys[4]
  K_BH, K_BH_WAIT, K_RL, K_RL_WAIT, K_STATS =
    keys[5], keys[6], keys[7], keys[8], keys[9]
  ARGV = args
end

local MAX_EVENTS = 50

-- One clock for the whole cluster: the server's TIME, unless a test passes
-- its own. Redis 7 replicates script effects, so TIME is allowed here.
-- Returns the time in seconds and a text that parses to exactly that number,
-- which is cheaper to build from TIME's reply than to format with %.17g.
local function clock_now(arg)
  if arg ~= '' then
    return tonumber(arg), arg
  end
  local t = redis.call('TIME')
  local text = t[1] .. '.' .. string.sub('00000' .. t[2], -6)
  return tonumber(text), text
end

-- Redis formats Lua numbers with 14 significant digits, which would cut
-- epoch seconds to 0.1 ms; %.17g keeps every bit of the double, so stored
-- times compare exactly with the boundaries computed from them.
local function encode(v)
  if type(v) ~= 'number' then
    return v
  end
  if v == math.floor(v) and math.abs(v) < 1e15 then
    return string.format('%d', v)
  end
  return string.format('%.17g', v)
end

-- The breaker's state is the field 'p' of its hash, packed by struct.pack:
-- state and window type as one byte each, then 17 numbers as doubles, which
-- hold every count and time exactly. Unpacking one string costs a fraction
-- of reading and converting 19 hash fields, which is what every call does.
-- Written out, because loading a function library runs without the string
-- library.
local CB_FORMAT = '<BBddddddddddddddddd'
local STATES = {
  'closed', 'open', 'half_open', 'disabled', 'forced_open', 'metrics_only',
}
local STATE_CODES = {
  closed = 1, open = 2, half_open = 3, disabled = 4, forced_open = 5,
  metrics_only = 6,
}
local WINDOW_TYPES = {'count_based', 'time_based'}
local WINDOW_CODES = {count_based = 1, time_based = 2}

-- Earlier versions kept one hash field per value under these names. A
-- breaker saved that way is read from them once and then packed.
-- NOTE: processes still running such a version during a rolling deploy
-- read and write those fields only, so until they stop they keep a breaker
-- state of their own for each target.
local UNPACKED_FIELDS = {
  'state', 'gen', 'changed_at', 'opened_at', 'open_until', 'open_attempts',
  'ho_since', 'ho_admitted', 'ho_total', 'ho_failed', 'ho_slow',
  'total', 'failed', 'slow', 'not_permitted', 'idx', 'head', 'wtype', 'wsize',
}

local function set(b, name, value)
  b[name] = value
  b.dirty = true
end

local function load_unpacked()
  local values = redis.call('HMGET', K_CB, unpack(UNPACKED_FIELDS))
  local b = {dirty = false, unpacked = values[1] ~= false}
  for i, name in ipairs(UNPACKED_FIELDS) do
    if name == 'state' or name == 'wtype' then
      b[name] = values[i] or nil
    else
      b[name] = tonumber(values[i]) or 0
    end
  end
  b.dirty = b.unpacked
  return b
end

local function load_breaker(now)
  local raw = redis.call('HGET', K_CB, 'p')
  local b
  if raw then
    local state, wtype, gen, changed_at, opened_at, open_until, open_attempts,
      ho_since, ho_admitted, ho_total, ho_failed, ho_slow, total, failed, slow,
      not_permitted, idx, head, wsize = struct.unpack(CB_FORMAT, raw)
    b = {
      dirty = false, state = STATES[state], wtype = WINDOW_TYPES[wtype],
      gen = gen, changed_at = changed_at, opened_at = opened_at,
      open_until = open_until, open_attempts = open_attempts,
      ho_since = ho_since, ho_admitted = ho_admitted, ho_total = ho_total,
      ho_failed = ho_failed, ho_slow = ho_slow, total = total,
      failed = failed, slow = slow, not_permitted = not_permitted, idx = idx,
      head = head, wsize = wsize,
    }
  else
    b = load_unpacked()
  end
  if not b.state then
    set(b, 'state', 'closed')
    set(b, 'changed_at', now)
  end
  return b
end

local function save_breaker(b)
  if not b.dirty then
    return
  end
  local packed = struct.pack(CB_FORMAT, STATE_CODES[b.state],
    WINDOW_CODES[b.wtype] or 0, b.gen, b.changed_at, b.opened_at,
    b.open_until, b.open_attempts, b.ho_since, b.ho_admitted, b.ho_total,
    b.ho_failed, b.ho_slow, b.total, b.failed, b.slow, b.not_permitted,
    b.idx, b.head, b.wsize)
  redis.call('HSET', K_CB, 'p', packed)
  if b.unpacked then
    redis.call('HDEL', K_CB, unpack(UNPACKED_FIELDS))
    b.unpacked = false
  end
  b.dirty = false
end

-- Every entry point takes the policy as ARGV[1], one string of 18 values
-- separated by spaces, and then its per-call values. The policy values are
--   breaker on, window type, window size, minimum number of calls, failure
--   rate threshold, slow call rate threshold, wait in open, wait multiplier,
--   maximum wait in open, permitted calls in half-open, maximum wait in
--   half-open, automatic transition to half-open ('1' or '0');
--   rate limiter on, limit, period; bulkhead on, max concurrent, lease.
-- A pipeline sends the same few strings on every call, so the parsed tables
-- are kept between calls of the function library (scripts parse on every
-- call). They are shared, so no caller may change one.
local parsed_policies, parsed_count = {}, 0
local MAX_PARSED_POLICIES = 256

local function read_cfg()
  local text = ARGV[1]
  local cfg = parsed_policies[text]
  if cfg then
    return cfg
  end
  local v = {}
  for token in string.gmatch(text, '%S+') do
    v[#v + 1] = token
  end
  cfg = {
    on = v[1] == '1',
    wtype = v[2],
    wsize = tonumber(v[3]),
    min_calls = tonumber(v[4]),
    fail_thr = tonumber(v[5]),
    slow_thr = tonumber(v[6]),
    wait = tonumber(v[7]),
    mult = tonumber(v[8]),
    max_wait = tonumber(v[9]),
    permitted = tonumber(v[10]),
    ho_max_wait = tonumber(v[11]),
    auto = v[12] == '1',
    rl_on = v[13] == '1',
    rl_limit = tonumber(v[14]),
    rl_period = tonumber(v[15]),
    bh_on = v[16] == '1',
    bh_max = tonumber(v[17]),
    bh_lease = tonumber(v[18]),
  }
  if parsed_count >= MAX_PARSED_POLICIES then
    parsed_policies, parsed_count = {}, 0
  end
  parsed_policies[text] = cfg
  parsed_count = parsed_count + 1
  return cfg
end

local function clear_window(b)
  redis.call('DEL', K_RING, K_BUCKETS)
  for _, name in ipairs({'total', 'failed', 'slow', 'not_permitted', 'idx', 'head'}) do
    set(b, name, 0)
  end
end

-- Rates in percent, or nil while fewer than `minimum` calls are buffered.
local function rates(total, failed, slow, minimum)
  if total == 0 or total < minimum then
    return nil, nil
  end
  return failed * 100 / total, slow * 100 / total
end

local function push_event(b, events, now, from, to, reason, fr, sr)
  local event = cjson.encode({
    at = encode(now), from_state = from, to_state = to, reason = reason,
    failure_rate = fr or cjson.null, slow_call_rate = sr or cjson.null,
  })
  redis.call('LPUSH', K_EVENTS, event)
  redis.call('LTRIM', K_EVENTS, 0, MAX_EVENTS - 1)
  events[#events + 1] = event
end

-- Move to state `to`. Every transition bumps the generation, so results of
-- calls admitted before it are recognised as late and cannot transition.
local function transition(b, cfg, events, now, to, reason, fr, sr)
  local from = b.state
  set(b, 'state', to)
  set(b, 'gen', b.gen + 1)
  set(b, 'changed_at', now)
  if to == 'open' then
    -- A re-open from half-open grows the wait by the multiplier, up to the
    -- cap (0 = none); an open from any other state starts at the base wait.
    local attempts = 1
    if from == 'half_open' then
      attempts = b.open_attempts + 1
    end
    local wait = cfg.wait * cfg.mult ^ (attempts - 1)
    if cfg.max_wait > 0 and wait > cfg.max_wait then
      wait = cfg.max_wait
    end
    set(b, 'open_attempts', attempts)
    set(b, 'opened_at', now)
    set(b, 'open_until', now + wait)
  else
    if to ~= 'half_open' then
      set(b, 'open_attempts', 0)
    end
    -- Only open keeps the window it tripped on, for display; every other
    -- state starts counting afresh.
    clear_window(b)
  end
  if to == 'half_open' then
    for _, name in ipairs({'ho_admitted', 'ho_total', 'ho_failed', 'ho_slow'}) do
      set(b, name, 0)
    end
    set(b, 'ho_since', now)
  end
  push_event(b, events, now, from, to, reason, fr, sr)
end

-- A change of window type or size empties the window; other policy changes
-- keep the breaker's state.
local function ensure_window(b, cfg, events, now)
  if b.wtype == cfg.wtype and b.wsize == cfg.wsize then
    return
  end
  if b.wtype then
    clear_window(b)
    push_event(b, events, now, b.state, b.state, 'window_reconfigured', nil, nil)
  end
  set(b, 'wtype', cfg.wtype)
  set(b, 'wsize', cfg.wsize)
end

-- Apply the timers. Open becomes half-open only when the clock is strictly
-- after open_until; without automatic transition that happens only when a
-- call requests admission. Half-open with max_wait_duration_in_half_open_state
-- set goes back to open when the clock is strictly after ho_since + max wait.
local function apply_timers(b, cfg, events, now, admitting)
  if b.state == 'open' and now > b.open_until and (admitting or cfg.auto) then
    transition(b, cfg, events, now, 'half_open', 'wait_duration_elapsed')
  elseif b.state == 'half_open' and cfg.ho_max_wait > 0
      and now > b.ho_since + cfg.ho_max_wait then
    transition(b, cfg, events, now, 'open', 'max_wait_in_half_open_elapsed')
  end
end

-- Drop the time-based buckets that left the window. At second `sec` the
-- window contains seconds sec - size + 1 .. sec, one bucket each, so a call
-- recorded in second t counts until the clock reaches second t + size.
local function advance_buckets(b, cfg, now)
  local sec = math.floor(now)
  if b.head == 0 or sec <= b.head then
    if b.head == 0 then
      set(b, 'head', sec)
    end
    return
  end
  if sec - b.head >= cfg.wsize then
    redis.call('DEL', K_BUCKETS)
    set(b, 'total', 0)
    set(b, 'failed', 0)
    set(b, 'slow', 0)
  else
    for s = b.head + 1, sec do
      local i = s % cfg.wsize
      local old = redis.call('HMGET', K_BUCKETS, 't' .. i, 'f' .. i, 's' .. i)
      if old[1] then
        set(b, 'total', b.total - tonumber(old[1]))
        set(b, 'failed', b.failed - (tonumber(old[2]) or 0))
        set(b, 'slow', b.slow - (tonumber(old[3]) or 0))
        redis.call('HDEL', K_BUCKETS, 't' .. i, 'f' .. i, 's' .. i)
      end
    end
  end
  set(b, 'head', sec)
end

-- Outcome codes: S success, F failure, SS slow success, SF slow failure.
local FAILED = {S = 0, F = 1, SS = 0, SF = 1}
local SLOW = {S = 0, F = 0, SS = 1, SF = 1}
-- Ring bytes are the characters '1' to '4', which BITFIELD reads as 49 to 52.
local RING_BYTE = {S = 49, F = 50, SS = 51, SF = 52}
local RING_CODE = {[49] = 'S', [50] = 'F', [51] = 'SS', [52] = 'SF'}

local function record_in_window(b, cfg, now, code)
  if cfg.wtype == 'count_based' then
    -- A ring buffer of one byte per call; the byte being overwritten is
    -- the oldest call, which leaves the window.
    local pos = b.idx % cfg.wsize
    -- One BITFIELD writes the new byte and returns the one it replaced.
    local replaced = redis.call(
      'BITFIELD', K_RING, 'SET', 'u8', '#' .. pos, RING_BYTE[code])
    local old = RING_CODE[replaced[1]]
    if old then
      set(b, 'total', b.total - 1)
      set(b, 'failed', b.failed - FAILED[old])
      set(b, 'slow', b.slow - SLOW[old])
    end
    set(b, 'idx', b.idx + 1)
  else
    advance_buckets(b, cfg, now)
    -- A clock that went backwards records into the newest bucket.
    local i = math.max(math.floor(now), b.head) % cfg.wsize
    redis.call('HINCRBY', K_BUCKETS, 't' .. i, 1)
    redis.call('HINCRBY', K_BUCKETS, 'f' .. i, FAILED[code])
    redis.call('HINCRBY', K_BUCKETS, 's' .. i, SLOW[code])
  end
  set(b, 'total', b.total + 1)
  set(b, 'failed', b.failed + FAILED[code])
  set(b, 'slow', b.slow + SLOW[code])
end

-- Trip check with integer arithmetic, so a rate exactly at the threshold
-- trips (failed * 100 >= threshold * total) without rounding surprises.
local function exceeded(total, failed, slow, cfg)
  if failed * 100 >= cfg.fail_thr * total then
    return 'failure_rate_exceeded'
  end
  if slow * 100 >= cfg.slow_thr * total then
    return 'slow_call_rate_exceeded'
  end
  return nil
end

-- Which outcomes of a call admitted now cannot cause a transition when
-- recorded, unless the breaker changes first: 2 any (disabled and
-- metrics_only never transition on a record), 1 success and ignored, 0 none.
-- In closed, a success adds one call and no failed or slow one, and the
-- window may drop old calls, so the recorded window has failed' <= failed,
-- slow' <= slow and total' <= total + 1 calls. Its total' is at least
-- min(total + 1, size) for a count-based window and at least 1 for a
-- time-based one. Neither rate can reach its threshold if it stays below it
-- with that smallest total, and nothing trips below the minimum.
local function quiet_level(b, cfg)
  local state = b.state
  if state == 'disabled' or state == 'metrics_only' then
    return 2
  end
  if state ~= 'closed' then
    return 0
  end
  local total = b.total + 1
  if total < cfg.min_calls then
    return 1
  end
  local smallest = 1
  if cfg.wtype == 'count_based' then
    smallest = math.min(total, cfg.wsize)
  end
  if b.failed * 100 < cfg.fail_thr * smallest
      and b.slow * 100 < cfg.slow_thr * smallest then
    return 1
  end
  return 0
end
