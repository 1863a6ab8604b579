-- Argo CD health check for asyncscale.io/AsyncEndpointScaling.
-- Healthy: Ready=True for the current generation. Degraded: Ready=False for a reason a person must
-- fix. Progressing: not yet reconciled, a stale observedGeneration, or a passing state.
local hs = { status = "Progressing", message = "Waiting for asyncscale to reconcile" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "asyncscale has not yet reconciled generation " .. tostring(generation)
  return hs
end
local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end
hs.message = ready.message or ""
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  local passing = { Reconciling = true, ChangesPending = true, ObserveFailed = true, WaitingForQuota = true, EndpointNotFound = true }
  if passing[ready.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = (ready.reason or "") .. ": " .. hs.message
end
return hs
