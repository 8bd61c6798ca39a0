-- wrk script for bench/throughput.py: POST the body in BENCH_BODY_FILE, with a fresh
-- hookInstance (a random UUID) per request so every audited call is a distinct record.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local marker = "00000000-0000-4000-8000-000000000000"
local before, after = body:match("^(.-)" .. marker:gsub("%-", "%%-") .. "(.*)$")
assert(before, "the body must contain the hookInstance placeholder")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

local function uuid4()
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
    math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xfff),
    0x8000 + math.random(0, 0x3fff), math.random(0, 0xffff), math.random(0, 0xffff), math.random(0, 0xffff))
end

function request()
  return wrk.format(nil, nil, nil, before .. uuid4() .. after)
end
