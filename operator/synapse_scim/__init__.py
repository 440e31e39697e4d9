"""synapse-scim: Azure Synapse workspace RBAC kept in step with Microsoft Entra ID groups."""

__version__ = "0.1.0"
