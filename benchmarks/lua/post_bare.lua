-- wrk script for the ceiling: the same request shape against an endpoint that does nothing.
wrk.method = "POST"
wrk.body = '{"model":"synthetic-acu","scope":{"type":"samples","sample_ids":["synthetic-000001"]}}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  io.write(string.format("RESULT accepted=%d refused=%d p50_us=%d p99_us=%d duration_us=%d\n",
    summary.requests - summary.errors.status, summary.errors.status, latency:percentile(50),
    latency:percentile(99), summary.duration))
end
