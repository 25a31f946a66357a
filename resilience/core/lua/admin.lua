-- Operator actions on the breaker.
-- ARGV: policy (see read_cfg), now, action.
-- Returns the transition events.
local function admin(keys, args)
  bind(keys, args)
  local now = clock_now(ARGV[2])
  local cfg = read_cfg()
  local events = {}
  local b = load_breaker(now)
  ensure_window(b, cfg, events, now)

  local TARGETS = {
    force_open = {'forced_open', 'forced_open'},
    disable = {'disabled', 'disabled'},
    metrics_only = {'metrics_only', 'metrics_only'},
    reset = {'closed', 'reset'},
    close = {'closed', 'manual_close'},
    half_open = {'half_open', 'manual_half_open'},
    open = {'open', 'manual_open'},
  }
  local target = TARGETS[ARGV[3]]
  if not target then
    return redis.error_reply('unknown breaker action ' .. ARGV[3])
  end
  -- Every target state but open empties the window, and closed also resets
  -- the re-open count, so reset leaves a fresh closed breaker.
  transition(b, cfg, events, now, target[1], target[2])
  save_breaker(b)
  return events
end
