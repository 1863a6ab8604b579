-- Runs health.lua against sample objects with a real Lua interpreter: `lua5.4 deploy/argocd/health_test.lua`.
local dir = arg and arg[0] and arg[0]:match("(.*/)") or "./"
local source = assert(io.open(dir .. "health.lua")):read("a")

local function health(object)
  local env = setmetatable({ obj = object }, { __index = _G })
  local chunk = assert(load(source, "health.lua", "t", env))
  return chunk()
end

local function resource(generation, observed, conditions)
  return { metadata = { generation = generation }, status = conditions and { observedGeneration = observed, conditions = conditions } or nil }
end

local function ready(status, reason, message)
  return { { type = "Ready", status = status, reason = reason, message = message or "m" }, { type = "Synced", status = "True", reason = "InSync", message = "" } }
end

local cases = {
  { "no status yet", resource(1, nil, nil), "Progressing" },
  { "first visit", resource(1, 1, ready("Unknown", "Reconciling")), "Progressing" },
  { "ready", resource(2, 2, ready("True", "Ready", "endpoint e variant v can scale between 0 and 4 instances")), "Healthy" },
  { "stale generation hides an old Ready", resource(3, 2, ready("True", "Ready")), "Progressing" },
  { "quota blocks scaling", resource(1, 1, ready("False", "QuotaExceeded", "Failed to set desired instance count to 20.")), "Degraded" },
  { "conflict", resource(1, 1, ready("False", "Conflict")), "Degraded" },
  { "invalid spec", resource(1, 1, ready("False", "InvalidSpec")), "Degraded" },
  { "apply failed", resource(1, 1, ready("False", "ApplyFailed")), "Degraded" },
  { "AWS unreadable for now", resource(1, 1, ready("Unknown", "ObserveFailed")), "Progressing" },
  { "no Ready condition", resource(1, 1, { { type = "Synced", status = "True", reason = "InSync" } }), "Progressing" },
}

local failures = 0
for _, case in ipairs(cases) do
  local name, object, want = case[1], case[2], case[3]
  local got = health(object)
  if got.status ~= want then
    failures = failures + 1
    print(string.format("FAIL %s: want %s, got %s (%s)", name, want, got.status, tostring(got.message)))
  elseif type(got.message) ~= "string" then
    failures = failures + 1
    print(string.format("FAIL %s: message is not a string", name))
  end
end
local h = health(resource(1, 1, ready("False", "QuotaExceeded", "Failed to set desired instance count to 20.")))
if h.message ~= "QuotaExceeded: Failed to set desired instance count to 20." then
  failures = failures + 1
  print("FAIL degraded message names the reason: " .. h.message)
end
print(string.format("%d passed, %d failed", #cases + 1 - failures, failures))
os.exit(failures == 0 and 0 or 1)
