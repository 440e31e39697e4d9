"""The discovery resources (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas, from the models."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Meta,
    Patch,
    ResourceType,
    ServiceProviderConfig,
    Sort,
)

from synapse_scim.core.scim.paging import MAX_PAGE_SIZE, list_response
from synapse_scim.core.scim.resources import GroupResource, UserResource


def _query(model: Any) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return body


def service_provider_config(base_url: str) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_PAGE_SIZE),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A token from the ScimProvider's Secret, in the Authorization header",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base_url}/ServiceProviderConfig"),
    )
    return _query(config)


def resource_types(base_url: str) -> list[dict[str, Any]]:
    out = []
    for model in (UserResource, GroupResource):
        body = _query(ResourceType.from_resource(model))
        body["meta"] = {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/{body['id']}"}
        out.append(body)
    return out


def schemas(base_url: str) -> list[dict[str, Any]]:
    out = []
    for model in (UserResource, GroupResource, EnterpriseUser):
        body = _query(model.to_schema())
        body["meta"] = {"resourceType": "Schema", "location": f"{base_url}/Schemas/{body['id']}"}
        out.append(body)
    return out


def listed(items: list[dict[str, Any]]) -> dict[str, Any]:
    return list_response(len(items), 1, items)
