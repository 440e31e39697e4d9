"""The Microsoft Entra ID token endpoint ("login"): OpenID configuration and client credentials.

Paths (tenant = the tenant id or domain):
- `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the v1 `/{tenant}/.well-known/...`);
- `POST /{tenant}/oauth2/v2.0/token` (`scope=<resource>/.default`) and v1 `/{tenant}/oauth2/token`
  (`resource=`), grant_type=client_credentials with client_secret (body or HTTP Basic), or
  client_assertion (certificate-signed JWT, or a federated / workload identity token);
- `GET /{tenant}/discovery/v2.0/keys` (an empty key set: sandbox tokens are not signed);
- `GET /common/discovery/instance` (MSAL's instance-discovery answer, for completeness).
Errors are AADSTS-shaped: `{"error", "error_description", "error_codes", "timestamp", "trace_id",
"correlation_id", "error_uri"}`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
import uuid
from collections.abc import Mapping

from aiohttp import web

from .apps import RESOURCES, AssertionRejected
from .service import Call, Route, Service, ServiceError, json_response

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_IGNORED_SCOPES = {"openid", "profile", "offline_access"}


class TokenError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.aadsts, self.description = status, error, aadsts, description


class EntraService(Service):
    name = "login"

    async def route(self, request: web.Request, segments: list[str]) -> Route:
        s = [x.lower() for x in segments]
        if s == ["common", "discovery", "instance"]:
            return Route("instanceDiscovery", self.instance_discovery)
        if len(s) >= 2:
            tenant = segments[0]
            rest = s[1:]
            params = {"tenant": tenant}
            if rest in (["v2.0", ".well-known", "openid-configuration"], [".well-known", "openid-configuration"]):
                return Route("openidConfiguration", self.openid_configuration, params)
            if rest in (["oauth2", "v2.0", "token"], ["oauth2", "token"]):
                if request.method != "POST":
                    raise ServiceError(405, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
                body = await request.post()
                params |= {
                    "client_id": str(body.get("client_id", "")),
                    "resource": str(body.get("resource") or body.get("scope") or ""),
                }
                return Route("token", self.token, params, body)
            if rest in (["discovery", "v2.0", "keys"], ["discovery", "keys"]):
                return Route("keys", self.keys, params)
        raise ServiceError(404, "invalid_request", f"AADSTS90000: Unknown endpoint {request.path}.")

    def error(
        self, request: web.Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        number = message.split(":", 1)[0].removeprefix("AADSTS")
        codes = [int(number)] if number.isdigit() else []
        return json_response(
            {
                "error": code,
                "error_description": message,
                "error_codes": codes,
                "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": str(uuid.uuid4()),
                "correlation_id": request.headers.get("client-request-id", str(uuid.uuid4())),
                "error_uri": f"https://{request.host}/error?code={codes[0] if codes else 0}",
            },
            status=status,
            headers=headers,
        )

    def default_error_code(self, status: int) -> str:
        return "temporarily_unavailable" if status in (429, 503) else "server_error"

    def fault_message(self, status: int) -> str:
        if status == 429:
            return "AADSTS50196: The server terminated an operation because it encountered a client request loop."
        return f"AADSTS90033: A transient error has occurred (HTTP {status}). Please try again."

    # ---- handlers
    def _tenant_check(self, call: Call) -> None:
        tenant = call.params["tenant"]
        if not self.state.is_tenant(tenant):
            raise ServiceError(
                400,
                "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make "
                "sure you have the correct tenant ID and are signing into "
                "the correct cloud.",
            )

    async def openid_configuration(self, call: Call) -> web.Response:
        self._tenant_check(call)
        base, tenant = call.base_url, self.state.tenant_id
        v1 = "v2.0" not in call.request.path
        suffix = "" if v1 else "/v2.0"
        return json_response(
            {
                "token_endpoint": f"{base}/{tenant}/oauth2{suffix}/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant}/discovery{suffix}/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{tenant}{suffix}" if not v1 else f"https://sts.windows.net/{tenant}/",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/{tenant}/oauth2{suffix}/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2{suffix}/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{tenant}/oauth2{suffix}/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "sandbox.local",
            }
        )

    async def keys(self, call: Call) -> web.Response:
        self._tenant_check(call)
        return json_response({"keys": []})

    async def instance_discovery(self, call: Call) -> web.Response:
        host = call.request.host
        return json_response(
            {
                "tenant_discovery_endpoint": f"{call.base_url}/{self.state.tenant_id}/v2.0/.well-known/"
                "openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    async def token(self, call: Call) -> web.Response:
        try:
            return self._issue(call)
        except TokenError as e:
            return self.error(call.request, e.status, e.error, f"AADSTS{e.aadsts}: {e.description}")

    def _issue(self, call: Call) -> web.Response:
        form = call.body
        tenant = call.params["tenant"]
        if not self.state.is_tenant(tenant):
            raise TokenError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        client_id, secret = str(form.get("client_id") or ""), form.get("client_secret")
        basic = call.request.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except (ValueError, binascii.Error):
                raise TokenError(401, "invalid_client", 7000215, "Invalid client secret provided.") from None
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type "
                f"'{grant}'. The sandbox issues only "
                "client_credentials tokens.",
            )
        if not client_id:
            raise TokenError(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
            )
        app = self.state.app(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was "
                f"not found in the directory "
                f"'{self.state.tenant_domain}'.",
            )
        assertion = form.get("client_assertion")
        if secret is not None:
            if app.secret is None or not secrets.compare_digest(str(secret).encode(), app.secret.encode()):
                raise TokenError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is "
                    f"the client secret value, not the client secret ID, for a secret added to app "
                    f"'{app.client_id}'.",
                )
        elif assertion is not None:
            if form.get("client_assertion_type") != JWT_BEARER:
                raise TokenError(400, "invalid_request", 50027, f"client_assertion_type must be '{JWT_BEARER}'.")
            path = call.request.path.rstrip("/")
            try:
                app.check_assertion(str(assertion), self.state.clock.now(), path)
            except AssertionRejected as e:
                raise TokenError(401, "invalid_client", e.aadsts, str(e)) from None
        else:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        audience = self._audience(form, tenant)
        lifetime = self.state.settings.token_lifetime
        access_token, _ = self.state.tokens.issue(app, audience, self.state.tenant_id, self.state.clock.now(), lifetime)
        call.params["client_id"] = app.client_id
        expires_in = max(1, int(lifetime) - 1) if lifetime >= 2 else max(1, int(lifetime))
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": expires_in,
                "ext_expires_in": expires_in,
                "access_token": access_token,
            }
        )

    #: This sandbox's own service URLs -> audience, set by the Sandbox once its ports are known. Real
    #: Entra knows each national cloud's Graph by its own URL (https://graph.microsoft.us/.default),
    #: so a client that derives the scope from the Graph endpoint it is given must work here too.
    aliases: dict[str, str] = {}

    def _resource(self, resource: str) -> str | None:
        return RESOURCES.get(resource) or self.aliases.get(resource)

    def _audience(self, form: Mapping[str, object], tenant: str) -> str:
        resource = form.get("resource")
        if resource is not None:  # v1 endpoint
            audience = self._resource(str(resource).rstrip("/"))
            if audience is None:
                raise TokenError(
                    400,
                    "invalid_resource",
                    500011,
                    f"The resource principal named {resource} was not found in the tenant named {tenant}.",
                )
            return audience
        scopes = [s for s in str(form.get("scope") or "").split() if s not in _IGNORED_SCOPES]
        if len(scopes) != 1:
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope "
                f"'{form.get('scope')}' is not valid. Client credential "
                "flows must have one scope value with /.default "
                "suffixed to the resource identifier.",
            )
        scope = scopes[0]
        if not scope.endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. "
                "Client credential flows must have a scope value with "
                "/.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scope.removesuffix("/.default").rstrip("/")
        audience = self._resource(resource)
        if audience is None:
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant}.",
            )
        return audience
