"""Read-only review tools (`synapse-scim plan`, `synapse-scim explain`): the operator's reads and planner, no writes."""
