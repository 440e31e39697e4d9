-- Argo CD health check for synapse-scim.io SynapseRoleBinding and SynapseWorkspace (one script for both kinds;
-- SynapseWorkspace/health.lua is a symlink to this file, argocd-cm-patch.yaml carries it under both keys).
-- Install: health/argocd/argocd-cm-patch.yaml. Argo runs this with gopher-lua (Lua 5.1) and only the
-- base, table, package and a reduced os library (util/lua of argo-cd: no string or math library), the
-- live object in the global `obj`; it must return {status = ..., message = ...}. Argo does not run it
-- for an object being deleted: that is Progressing "Pending deletion" whatever the script says.
--
-- The operator writes kstatus conditions (operator/synapse_scim/core/status.py): Ready, Reconciling,
-- Stalled, each with reason, message and observedGeneration. The mapping, first match wins
-- (docs/gitops.md has it for every reason, next to what Flux's kstatus computes):
--
--   no status / no Ready condition    -> Progressing "waiting for the operator"
--   status.observedGeneration, or Ready's observedGeneration, behind metadata.generation
--                                      -> Progressing "waiting for the operator to observe generation N"
--   Stalled=True                      -> Degraded (a person must act: unknown role, bad credentials,
--                                         removals held by the guard, ...), with the Stalled message
--   Ready's reason Suspended          -> Suspended (spec.suspend: the operator deliberately writes nothing)
--   Ready's reason WorkspaceSuspended -> Suspended (a binding whose SynapseWorkspace has spec.suspend: likewise)
--   Ready's reason DriftDetected      -> Suspended, NOT Healthy, NOT Degraded and NOT Progressing. This is a
--                                         binding with managementPolicy: Observe whose workspace differs from
--                                         the spec. The operator is doing exactly what it was asked (report,
--                                         never write), so Degraded would page people and trip
--                                         on-health-degraded notifications for an intended state; and
--                                         Progressing would claim the operator is converging when it never
--                                         will on its own. Healthy would hide the drift. Suspended is Argo's
--                                         state for "deliberately not acting until a person decides" (a
--                                         suspended CronJob): visible, not green, not an alarm. The message
--                                         carries the counts.
--                                         These three states have Ready=True (their reason says why), so
--                                         kstatus and Flux read them as Current. Argo CD has a state of its
--                                         own for them, kstatus has none: the one place where the two differ.
--   Ready=True                        -> Healthy
--   Reconciling=True, or any other Ready=False
--                                      -> Progressing (the operator retries on its own: Applying,
--                                         throttling, a transient Azure error, ...), with its message
hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function behind(observed, generation)
  return observed ~= nil and generation ~= nil and tonumber(observed) < tonumber(generation)
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
local ready = nil
local stalled = nil
local reconciling = nil
if status ~= nil then
  ready = condition(status.conditions, "Ready")
  stalled = condition(status.conditions, "Stalled")
  reconciling = condition(status.conditions, "Reconciling")
end

if status == nil or ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
elseif behind(status.observedGeneration, generation) or behind(ready.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, "stalled")
elseif ready.reason == "Suspended" or ready.reason == "WorkspaceSuspended" or ready.reason == "DriftDetected" then
  hs.status = "Suspended"
  hs.message = message(ready, ready.reason)
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "ready")
else
  hs.status = "Progressing"
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = message(reconciling, "reconciling")
  else
    hs.message = message(ready, "not ready")
  end
end
return hs
