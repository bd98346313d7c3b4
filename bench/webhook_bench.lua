-- wrk script of bench/webhook_bench.py: each thread sends its share of the
-- requests in the file named by the first argument (one a line:
-- "GET<TAB>path" or "POST<TAB>path<TAB>signature<TAB>timestamp<TAB>body"),
-- each exactly once, and counts their answers. A connection with nothing
-- left to send sends nothing (an empty request: it waits, idle, until wrk's
-- duration ends), so every request sent is answered within the run and no
-- other request adds to the latencies. Each thread notes the wall clock when
-- it starts and when its last answer arrives: the rate is taken over that
-- span, not over wrk's whole duration.
local threads = {}
local count = 0

function setup(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end

local reqs, next_req, answered, ok, bad = {}, 1, 0, 0, 0
-- wrk calls request() once on the first thread's state before the run, to
-- check it, and drops what it returns: that call gets a request of no use.
local checked = false
local mine

local function now()
  local clock = io.popen("date +%s.%N")
  local value = clock:read("*l")
  clock:close()
  return value
end

function init(args)
  local index = 0
  mine = tonumber(wrk.thread:get("id"))
  local total = tonumber(args[2])
  for line in io.lines(args[1]) do
    if index % total == mine then
      local f = {}
      for field in string.gmatch(line, "[^\t]+") do table.insert(f, field) end
      if f[1] == "GET" then
        table.insert(reqs, wrk.format("GET", f[2]))
      else
        table.insert(reqs, wrk.format("POST", f[2], {["X-Outreach-Signature"] = f[3],
          ["X-Outreach-Timestamp"] = f[4], ["Content-Type"] = "application/json"}, f[5]))
      end
    end
    index = index + 1
  end
  wrk.thread:set("started", now())
end

function request()
  if mine == 0 and not checked then
    checked = true
    return wrk.format("GET", "/healthz")
  end
  if next_req <= #reqs then
    next_req = next_req + 1
    return reqs[next_req - 1]
  end
  return ""
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 400 then ok = ok + 1 else bad = bad + 1 end
  wrk.thread:set("ok", ok)
  wrk.thread:set("bad", bad)
  if answered == #reqs then wrk.thread:set("finished", now()) end
end

function done(summary, latency, requests)
  local good, failed, first, last = 0, 0, math.huge, 0
  for _, thread in ipairs(threads) do
    first = math.min(first, tonumber(thread:get("started")))
    last = math.max(last, tonumber(thread:get("finished")) or math.huge)
    good = good + (tonumber(thread:get("ok")) or 0)
    failed = failed + (tonumber(thread:get("bad")) or 0)
  end
  local e = summary.errors
  io.write(string.format('RESULT {"ok": %d, "bad": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, ' ..
    '"socket_errors": %d}\n', good, failed, last - first, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.timeout))
end
