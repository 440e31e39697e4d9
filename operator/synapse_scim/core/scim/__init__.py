"""The SCIM 2.0 service provider's pure core (docs/scim.md): resources, filters, PATCH, paging, errors, the
storage interface with its in-memory store, and one SCIM operation against a store. No I/O; scim2-models
(pinned exactly) provides the models, the filter grammar and PATCH of attributes."""
