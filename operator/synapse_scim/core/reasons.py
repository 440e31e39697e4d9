"""Every reason the operator writes (status conditions, Events, errors) and every action it audits.

Reasons are CamelCase, as kstatus, Flux and Argo CD expect of a condition's reason; users match on
them (alerts, `kubectl wait`, docs/troubleshooting.md), so they are API: add, never rename.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # A subject, role or scope of a binding that does not resolve.
    SUBJECT_NOT_FOUND = "SubjectNotFound"
    SUBJECT_AMBIGUOUS = "SubjectAmbiguous"
    SUBJECT_KIND_UNKNOWN = "SubjectKindUnknown"
    SUBJECT_DISABLED = "SubjectDisabled"  # never shown: a disabled account simply gets nothing
    ROLE_NOT_FOUND = "RoleNotFound"
    ROLE_NOT_VALID_AT_SCOPE = "RoleNotValidAtScope"
    SCOPE_INVALID = "ScopeInvalid"
    # The workspace and how it is reached.
    WORKSPACE_NOT_FOUND = "WorkspaceNotFound"
    WORKSPACE_NAME_UNKNOWN = "WorkspaceNameUnknown"
    WORKSPACE_UNREACHABLE = "WorkspaceUnreachable"
    WORKSPACE_READ_FAILED = "WorkspaceReadFailed"
    ACCESS_DENIED = "AccessDenied"
    GRANT_REJECTED = "GrantRejected"
    THROTTLED = "Throttled"
    # Credentials and trust.
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    SECRET_KEY_EMPTY = "SecretKeyEmpty"
    CERTIFICATE_INVALID = "CertificateInvalid"
    CERTIFICATE_UNTRUSTED = "CertificateUntrusted"
    CREDENTIAL_INVALID = "CredentialInvalid"
    WORKLOAD_IDENTITY_UNAVAILABLE = "WorkloadIdentityUnavailable"
    # The directory (Microsoft Graph).
    DIRECTORY_ACCESS_DENIED = "DirectoryAccessDenied"
    DIRECTORY_READ_FAILED = "DirectoryReadFailed"
    DELTA_EXPIRED = "DeltaExpired"
    # What the planner held back, and the ordinary states of a resource.
    REMOVALS_HELD = "RemovalsHeld"
    READS_INCOMPLETE = "ReadsIncomplete"
    SUSPENDED = "Suspended"
    WORKSPACE_SUSPENDED = "WorkspaceSuspended"  # a binding whose SynapseWorkspace has spec.suspend
    SYNCED = "Synced"
    IN_SYNC = "InSync"
    APPLYING = "Applying"
    DRIFT_DETECTED = "DriftDetected"
    IDLE = "Idle"
    PROGRESSING = "Progressing"
    # A ScimProvider as the SCIM endpoint serves it (SecretNotFound above when its Secret is missing).
    SERVING = "Serving"
    SECRET_NOT_READABLE = "SecretNotReadable"
    NO_TOKENS = "NoTokens"
    # SCIM subjects of a binding (a group an identity provider pushed) and their members.
    SCIM_PROVIDER_NOT_FOUND = "ScimProviderNotFound"
    SCIM_GROUP_NOT_FOUND = "ScimGroupNotFound"
    PRINCIPAL_NOT_MATCHED = "PrincipalNotMatched"  # a pushed user no Entra principal matches: it gets nothing
    PRINCIPAL_AMBIGUOUS = "PrincipalAmbiguous"  # a pushed user several Entra principals match: it gets nothing
    # A SynapseWorkspace being deleted (controller/deletion.py): it waits for the bindings that name it.
    DELETING = "Deleting"  # revoking (Delete) or recording (Orphan) its deleted bindings' grants
    DELETION_BLOCKED = "DeletionBlocked"  # a sync of it failed, or it outlasted SYNAPSE_SCIM_DELETION_TIMEOUT
    # Kubernetes Events of a sync.
    GRANTED = "Granted"
    GRANT_FAILED = "GrantFailed"
    REVOKED = "Revoked"
    REVOKE_FAILED = "RevokeFailed"


# Problems a person must fix; everything else the operator retries on its own.
STALLING_REASONS = frozenset(
    {
        Reason.SUBJECT_NOT_FOUND,
        Reason.SUBJECT_AMBIGUOUS,
        Reason.SUBJECT_KIND_UNKNOWN,
        Reason.ROLE_NOT_FOUND,
        Reason.ROLE_NOT_VALID_AT_SCOPE,
        Reason.SCOPE_INVALID,
        Reason.WORKSPACE_NOT_FOUND,
        Reason.WORKSPACE_NAME_UNKNOWN,
        Reason.AUTHENTICATION_FAILED,
        Reason.ACCESS_DENIED,
        Reason.SECRET_NOT_FOUND,
        Reason.SECRET_KEY_MISSING,
        Reason.SECRET_KEY_EMPTY,
        Reason.SECRET_NOT_READABLE,
        Reason.NO_TOKENS,
        Reason.SCIM_PROVIDER_NOT_FOUND,
        Reason.SCIM_GROUP_NOT_FOUND,
        Reason.PRINCIPAL_NOT_MATCHED,
        Reason.PRINCIPAL_AMBIGUOUS,
        Reason.CERTIFICATE_INVALID,
        Reason.WORKLOAD_IDENTITY_UNAVAILABLE,
        Reason.DIRECTORY_ACCESS_DENIED,
        Reason.REMOVALS_HELD,
        Reason.CREDENTIAL_INVALID,
        Reason.GRANT_REJECTED,
        Reason.CERTIFICATE_UNTRUSTED,
        # The operator keeps retrying, but a namespace stuck Terminating needs a person to look.
        Reason.DELETION_BLOCKED,
    }
)


def is_transient(reason: Reason) -> bool:
    """Whether the operator retries a failure with this reason by itself, rather than wait for a person.

    The one classification of failures: a transient one makes status say Reconciling=True, a stalling
    one Stalled=True, and the loop retries a sync while any of its failures is transient. It is
    derived from STALLING_REASONS, not kept as a second set, so that a workspace that could not be
    read (controller/sync.py: workspace_failure), its bindings (status.py: binding_conditions) and the
    loop (SyncResult.transient) cannot disagree on a reason, and a new reason is transient unless
    someone decides a person must fix it. Reasons that are never a failure's (Synced, Granted, ...)
    come out transient too; nothing asks about them."""
    return reason not in STALLING_REASONS


# Deliberate states: the operator has done everything the spec asks (report the drift, write nothing)
# and will do nothing more until a person changes a spec. Ready is True with one of these reasons,
# so that kstatus (Flux) reads them as Current and a GitOps rollout finishes; the reason, not the
# status, says that the access is not what the binding lists. docs/gitops.md says why.
SETTLED_REASONS = frozenset({Reason.SUSPENDED, Reason.WORKSPACE_SUSPENDED, Reason.DRIFT_DETECTED})

# Azure refused the credential's token: it is dropped, so that the next sync asks for a fresh one.
TOKEN_REFUSED_REASONS = frozenset({Reason.AUTHENTICATION_FAILED, Reason.DIRECTORY_ACCESS_DENIED})


class Action(StrEnum):
    """What the operator did or would do to one role assignment (audit log, `plan`, `explain`)."""

    GRANT = "grant"
    ADOPT = "adopt"  # the grant already existed (409): nothing written; a manual one stays manual
    REVOKE = "revoke"
    HELD = "held"  # a revocation the removal guard holds for a person's approval
    ORPHAN = "orphan"  # a grant of a deleted binding with deletionPolicy Orphan: left, treated as manual


class Outcome(StrEnum):
    """How an audited write ended (a failure is "failed: <Reason>")."""

    DONE = "done"
    ALREADY = "already"
    FAILED = "failed"
