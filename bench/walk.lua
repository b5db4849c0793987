-- wrk script: every request takes the next path from a file of unique URLs, so each download
-- uses a fresh token. Threads split the file (line i goes to thread i mod threads). A thread
-- that runs out starts over: reused tokens answer 410 and show up as status errors.
-- Usage: wrk -tT ... -s walk.lua URL -- <paths file> <T>

local counter = 0

-- WALK_PAUSE_MS: each connection waits this long after each response before its next
-- request, which paces the load below a server's capacity (wrk asks for `delay` only when
-- the script defines it, so an unpaced load runs exactly as without it).
local pause = tonumber(os.getenv("WALK_PAUSE_MS") or "")
if pause and pause > 0 then
  function delay()
    return pause
  end
end

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local file, threads = args[1], tonumber(args[2])
  paths = {}
  local i = 0
  for line in io.lines(file) do
    if i % threads == id then
      paths[#paths + 1] = line
    end
    i = i + 1
  end
  next_path = 0
end

function request()
  next_path = next_path + 1
  if next_path > #paths then
    next_path = 1
  end
  return wrk.format("GET", paths[next_path])
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
