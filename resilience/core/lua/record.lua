-- Record one attempt's outcome and, at the end of a call, release its
-- bulkhead permit.
-- ARGV: policy (see read_cfg; 'breaker on' is '0' when only the permit is
--   released), then now, permit id ('' for none), generation, outcome (S, F,
--   SS, SF, or I for ignored).
-- Returns 1 if the permit was still held, else 0; when the breaker changed
-- state, {that number, events...} instead.
local function record(keys, args)
  bind(keys, args)
  local now = clock_now(ARGV[2])
  local released = 0
  if ARGV[3] ~= '' then
    released = redis.call('ZREM', K_BH, ARGV[3])
  end
  local cfg = read_cfg()
  if not cfg.on then
    return released
  end

  local gen, code = tonumber(ARGV[4]), ARGV[5]
  local events = {}
  local b = load_breaker(now)
  ensure_window(b, cfg, events, now)
  apply_timers(b, cfg, events, now, false)

  -- A result admitted under another generation is late: it is recorded where
  -- the current state keeps a window, but it never causes a transition.
  local late = gen ~= b.gen
  local state = b.state
  if state == 'disabled' or state == 'forced_open' then
    -- These states record nothing.
  elseif code == 'I' then
    -- Ignored outcomes are not recorded; in half-open they hand their probe
    -- permit back so another call can take it.
    if state == 'half_open' and not late and b.ho_admitted > 0 then
      set(b, 'ho_admitted', b.ho_admitted - 1)
    end
  elseif state == 'half_open' then
    -- The half-open window holds only probes admitted in this half-open
    -- period, so a late result is not counted there.
    if not late then
      set(b, 'ho_total', b.ho_total + 1)
      set(b, 'ho_failed', b.ho_failed + FAILED[code])
      set(b, 'ho_slow', b.ho_slow + SLOW[code])
      -- Decide once min(minimum_number_of_calls, permitted) probes are in.
      if b.ho_total >= math.min(cfg.min_calls, cfg.permitted) then
        local fr, sr = rates(b.ho_total, b.ho_failed, b.ho_slow, 1)
        if exceeded(b.ho_total, b.ho_failed, b.ho_slow, cfg) then
          transition(b, cfg, events, now, 'open', 'half_open_rates_exceeded', fr, sr)
        else
          transition(b, cfg, events, now, 'closed', 'half_open_rates_below_threshold', fr, sr)
        end
      end
    end
  else
    -- closed, metrics_only, or open (a late result, kept for display).
    record_in_window(b, cfg, now, code)
    if state == 'closed' and not late and b.total >= cfg.min_calls then
      local reason = exceeded(b.total, b.failed, b.slow, cfg)
      if reason then
        local fr, sr = rates(b.total, b.failed, b.slow, cfg.min_calls)
        transition(b, cfg, events, now, 'open', reason, fr, sr)
      end
    end
  end
  save_breaker(b)
  if #events == 0 then
    return released
  end
  return {released, unpack(events)}
end
