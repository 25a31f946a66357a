-- Live state of all three stages, applying any due breaker timer first.
-- ARGV: policy (see read_cfg), now.
-- Returns {JSON document, recent transition events (newest first)...}.
local function snapshot(keys, args)
  bind(keys, args)
  local now = clock_now(ARGV[2])
  local result = {now = encode(now)}
  local events = {}
  local cfg = read_cfg()

  if cfg.on then
    local b = load_breaker(now)
    ensure_window(b, cfg, events, now)
    apply_timers(b, cfg, events, now, false)
    if cfg.wtype == 'time_based' then
      advance_buckets(b, cfg, now)
    end
    save_breaker(b)
    local total, failed, slow, minimum = b.total, b.failed, b.slow, cfg.min_calls
    if b.state == 'half_open' then
      total, failed, slow = b.ho_total, b.ho_failed, b.ho_slow
      minimum = math.min(cfg.min_calls, cfg.permitted)
    end
    local fr, sr = rates(total, failed, slow, minimum)
    result.breaker = {
      state = b.state, generation = b.gen, changed_at = encode(b.changed_at),
      buffered_calls = total, failed_calls = failed, slow_calls = slow,
      not_permitted_calls = b.not_permitted,
      failure_rate = fr or cjson.null, slow_call_rate = sr or cjson.null,
      open_until = b.state == 'open' and encode(b.open_until) or cjson.null,
      half_open_permits_taken = b.ho_admitted,
    }
  end

  redis.call('ZREMRANGEBYSCORE', K_BH, '-inf', encode(now))
  redis.call('ZREMRANGEBYSCORE', K_BH_WAIT, '-inf', encode(now))
  redis.call('ZREMRANGEBYSCORE', K_RL, '-inf', encode(now - cfg.rl_period))
  redis.call('ZREMRANGEBYSCORE', K_RL_WAIT, '-inf', encode(now))
  local stats = redis.call('HMGET', K_STATS, 'bh_rejected', 'rl_rejected')
  result.bulkhead = {
    in_use = redis.call('ZCARD', K_BH), waiting = redis.call('ZCARD', K_BH_WAIT),
    rejected = tonumber(stats[1]) or 0,
  }
  result.rate_limiter = {
    used = redis.call('ZCARD', K_RL), waiting = redis.call('ZCARD', K_RL_WAIT),
    rejected = tonumber(stats[2]) or 0,
  }
  result.new_events = events
  local recent = redis.call('LRANGE', K_EVENTS, 0, MAX_EVENTS - 1)
  return {cjson.encode(result), unpack(recent)}
end
