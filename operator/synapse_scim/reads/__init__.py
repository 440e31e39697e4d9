"""The read side that the operator's sync and `synapse-scim plan` share: the same reads, so the same plan."""
