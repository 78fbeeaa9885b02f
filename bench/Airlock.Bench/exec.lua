-- wrk script for the commands/s measurement (docs/performance.md): POST /v1/sandboxes/{id}/exec
-- {"cmd":"true"}, round-robin over the sandbox ids given after "--" (the API key first). A response
-- that is not 200 with "exitCode":0 is a failure; done() prints one JSON line the bench app reads.
local ids, key, n = {}, "", 0
local threads = {}
failures = 0 -- global: done() reads it from each thread with thread:get

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  key = args[1]
  for i = 2, #args do ids[#ids + 1] = args[i] end
end

function request()
  n = n + 1
  return wrk.format("POST", "/v1/sandboxes/" .. ids[(n % #ids) + 1] .. "/exec",
    { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }, '{"cmd":"true"}')
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"exitCode":0', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + t:get("failures") end
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"seconds":%.6f,"failures":%d,"socket_errors":%d,"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, failed, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
