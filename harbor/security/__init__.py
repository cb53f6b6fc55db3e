"""Security for remote use: API keys, JWT bearer tokens, the WebUI session cookie, roles, tenant
isolation, rate limits and the audit log. ``docs/security.md`` is the user's guide."""

from harbor.security.audit import AuditLog, AuditRecord
from harbor.security.authz import AccessControl
from harbor.security.principal import LOCAL, ROLE_RANK, ROLES, Principal, Unauthenticated

__all__ = ["LOCAL", "ROLES", "ROLE_RANK", "AccessControl", "AuditLog", "AuditRecord", "Principal",
           "Unauthenticated"]
