"""The SCIM 2.0 endpoint's edges (docs/scim.md): the aiohttp server, and the store in the Kubernetes API."""
