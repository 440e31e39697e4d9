"""Local HTTPS emulators of the three Azure services the operator talks to: the Entra ID token
endpoint, Microsoft Graph v1.0 (directory reads) and the Synapse access-control data plane
(api-version 2020-12-01). The real SDKs work against them unchanged, pointed at other endpoints.

```python
from synapse_scim_sandbox import Sandbox, AdminClient
async with Sandbox(seed="examples/sandbox/org.yaml", cert_dir=tmp_path) as sb:
    cred = ClientSecretCredential(sb.tenant_id, client_id, secret, authority=sb.authority_host,
                                  connection_verify=str(sb.ca_path))
    AccessControlClient(cred, sb.workspace_endpoint("analytics"), connection_verify=str(sb.ca_path))
    await AdminClient(sb.admin_url, sb.ca_path).add_member("Analysts", "bob@contoso.com")
```
Modules: seed (seed format), state / directory / workspaces / apps (the in-memory world), entra,
graph, synapse (the services), faults (latency, fault rules, counters, log), admin (admin API and
clients), server (Sandbox, SandboxThread), cli (`synapse-scim sandbox`).
"""

from .admin import AdminClient, AdminError, SyncAdminClient
from .faults import OPERATIONS, FaultRuleError
from .seed import SeedError, load_seed, synthetic_org
from .server import Sandbox, SandboxThread
from .state import State, stable_id

__all__ = [
    "OPERATIONS",
    "AdminClient",
    "AdminError",
    "FaultRuleError",
    "Sandbox",
    "SandboxThread",
    "SeedError",
    "State",
    "SyncAdminClient",
    "load_seed",
    "stable_id",
    "synthetic_org",
]
