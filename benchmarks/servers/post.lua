-- wrk script: POST the ~1.6 KB Segment-style batch in body.json with a valid
-- write key (wk_bench_1) as HTTP Basic username. wrk must run in this directory.
local f = assert(io.open("body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic d2tfYmVuY2hfMTo="
