-- wrk script: POST deletion requests, each with its own Idempotency-Key and one training sample id.
-- Environment: API_KEY, IDS_FILE (one sample id per line), RUN (key prefix), MODEL, LIMIT (stop after
-- this many 202s per thread; 0 = run for the duration), ACCEPTED_OUT (optional: each thread writes the
-- id of every request answered 202 to ACCEPTED_OUT.<thread>, one a line, so that the benchmark can
-- check each of them against the database).
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
  key = os.getenv("API_KEY")
  run = os.getenv("RUN") or "run"
  model = os.getenv("MODEL") or "synthetic-acu"
  limit = tonumber(os.getenv("LIMIT") or "0")
  counter, accepted, refused, unnamed = 0, 0, 0, 0
  local path = os.getenv("ACCEPTED_OUT")
  if path and path ~= "" then
    out = io.open(path .. "." .. tid, "w")
    out:setvbuf("line")  -- wrk may be stopped by a signal: every id written is on disk
  end
end

function request()
  counter = counter + 1
  local id = ids[((counter * 7919) + tid * 104729) % #ids + 1]
  local body = '{"model":"' .. model .. '","scope":{"type":"samples","sample_ids":["' .. id .. '"]}}'
  return wrk.format("POST", "/v1/deletion-requests", {
    ["Content-Type"] = "application/json", ["X-API-Key"] = key,
    ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter }, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
    if out then
      local rid = body:match('"id"%s*:%s*"(%x+)"')
      if rid then out:write(rid, "\n") else unnamed = unnamed + 1 end
    end
  else
    refused = refused + 1
  end
  if limit > 0 and accepted >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local a, r, u = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("accepted"); r = r + t:get("refused"); u = u + t:get("unnamed") end
  io.write(string.format("RESULT accepted=%d refused=%d p50_us=%d p99_us=%d duration_us=%d unnamed=%d\n",
    a, r, latency:percentile(50), latency:percentile(99), summary.duration, u))
end
