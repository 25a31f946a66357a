-- Admission through rate limiter, bulkhead and circuit breaker in one step.
-- ARGV: policy (see read_cfg), then the per-call values: now, call id,
--   rate-limit cost, seconds left to wait for a rate-limit permit, seconds
--   left to wait for a bulkhead permit, '1' if an earlier reply for this
--   call id was 'wait'.
-- Returns 'code|stage|breaker state|generation|wait hint|quiet level', or
-- {that string, events...} when the breaker changed state. One string
-- parses faster on the client than an array of six values. Code is 'ok',
-- 'wait' (sleep up to the hint, then ask again) or 'reject'. The quiet
-- level lists the outcomes of this call that can be recorded without
-- waiting for the reply: 2 any, 1 success or ignored, 0 none (see
-- quiet_level).
-- Nothing is taken unless every stage admits: a call rejected by the
-- bulkhead or breaker consumes no rate-limit permit, and one rejected by
-- the breaker holds no bulkhead permit.
local function finish_admit(events, code, stage, b, hint, quiet)
  local state, gen = '', 0
  if b then
    save_breaker(b)
    state, gen = b.state, b.gen
  end
  -- Only a call that got a 'wait' reply has an entry in a waiting set.
  if code ~= 'wait' and ARGV[7] == '1' then
    redis.call('ZREM', K_RL_WAIT, ARGV[3])
    redis.call('ZREM', K_BH_WAIT, ARGV[3])
  end
  local reply = code .. '|' .. stage .. '|' .. state .. '|' .. gen .. '|'
    .. encode(hint) .. '|' .. (quiet or 0)
  if #events == 0 then
    return reply
  end
  return {reply, unpack(events)}
end

local function admit(keys, args)
  bind(keys, args)
  local now, now_text = clock_now(ARGV[2])
  local id = ARGV[3]
  local events = {}
  local cfg = read_cfg()

  -- Rate limiter: a sliding log of admitted permits. The window is
  -- (now - period, now], so at most `limit` permits fall in any period and
  -- there is no double burst across a window edge.
  local rl_on = cfg.rl_on
  local rl_limit, rl_period = cfg.rl_limit, cfg.rl_period
  local rl_cost = tonumber(ARGV[4])
  if rl_on then
    if rl_cost > rl_limit then
      -- It could never be admitted, so it is rejected without consuming.
      redis.call('HINCRBY', K_STATS, 'rl_rejected', 1)
      return finish_admit(events, 'reject', 'rate_limiter', nil, 0)
    end
    redis.call('ZREMRANGEBYSCORE', K_RL, '-inf', encode(now - rl_period))
    local used = redis.call('ZCARD', K_RL)
    if used + rl_cost > rl_limit then
      -- The permit frees up when the entry that must leave does, which is
      -- once the clock reaches its score + period.
      local rank = used + rl_cost - rl_limit - 1
      local entry = redis.call('ZRANGE', K_RL, rank, rank, 'WITHSCORES')
      local wait = tonumber(entry[2]) + rl_period - now
      local rl_budget = tonumber(ARGV[5])
      if wait <= rl_budget then
        -- Entries of callers that died while waiting expire here and in
        -- snapshots, which are the only readers of the waiting set.
        redis.call('ZREMRANGEBYSCORE', K_RL_WAIT, '-inf', now_text)
        redis.call('ZADD', K_RL_WAIT, encode(now + rl_budget), id)
        return finish_admit(events, 'wait', 'rate_limiter', nil, wait)
      end
      redis.call('HINCRBY', K_STATS, 'rl_rejected', 1)
      return finish_admit(events, 'reject', 'rate_limiter', nil, 0)
    end
  end

  -- Bulkhead: a set of leases scored by expiry. A lease is expired once the
  -- clock reaches its expiry, so a holder that died frees its permit then.
  -- Only unexpired leases are counted. Expired ones are deleted when the
  -- bulkhead is full and by snapshots, so the common case needs one command.
  local bh_on = cfg.bh_on
  if bh_on then
    if redis.call('ZCOUNT', K_BH, '(' .. now_text, '+inf') >= cfg.bh_max then
      redis.call('ZREMRANGEBYSCORE', K_BH, '-inf', now_text)
      local bh_budget = tonumber(ARGV[6])
      if bh_budget > 0 then
        redis.call('ZREMRANGEBYSCORE', K_BH_WAIT, '-inf', now_text)
        redis.call('ZADD', K_BH_WAIT, encode(now + bh_budget), id)
        local first = redis.call('ZRANGE', K_BH, 0, 0, 'WITHSCORES')
        local hint = tonumber(first[2]) - now
        return finish_admit(events, 'wait', 'bulkhead', nil, hint)
      end
      redis.call('HINCRBY', K_STATS, 'bh_rejected', 1)
      return finish_admit(events, 'reject', 'bulkhead', nil, 0)
    end
  end

  -- Circuit breaker: closed, metrics_only and disabled admit every call;
  -- half-open admits its permitted number of probes cluster-wide.
  local b = nil
  local quiet = 2
  if cfg.on then
    b = load_breaker(now)
    ensure_window(b, cfg, events, now)
    apply_timers(b, cfg, events, now, true)
    local admitted = b.state == 'closed' or b.state == 'metrics_only'
      or b.state == 'disabled'
    if b.state == 'half_open' and b.ho_admitted < cfg.permitted then
      set(b, 'ho_admitted', b.ho_admitted + 1)
      admitted = true
    end
    if not admitted then
      -- Rejections are counted as not permitted, never as failures.
      set(b, 'not_permitted', b.not_permitted + 1)
      return finish_admit(events, 'reject', 'circuit_breaker', b, 0)
    end
    quiet = quiet_level(b, cfg)
  end

  -- Every stage admitted: take the permits.
  if bh_on then
    redis.call('ZADD', K_BH, encode(now + cfg.bh_lease), id)
  end
  if rl_on then
    -- One entry per permit, named after the call id, which is unique per
    -- call, so no counter has to be read and bumped.
    if rl_cost == 1 then
      redis.call('ZADD', K_RL, now_text, id)
    else
      local entries = {}
      for i = 1, rl_cost do
        entries[#entries + 1] = now_text
        entries[#entries + 1] = id .. '/' .. i
      end
      redis.call('ZADD', K_RL, unpack(entries))
    end
    -- Idle logs expire; the margin keeps entries of a frozen test
    -- clock alive while the test runs.
    redis.call('PEXPIRE', K_RL, math.ceil(rl_period * 1000) + 60000)
  end
  return finish_admit(events, 'ok', '', b, 0, quiet)
end
