"""Account writes: API tokens (tokens.py) and users with their roles (users.py)."""

from core.accounts.services.tokens import (
    DEFAULT_TOKEN_ROLES,
    TokenPolicy,
    may_mint,
    mint_refusal,
    token_create,
    token_lifetime,
    token_policy,
    token_revoke,
)
from core.accounts.services.users import (
    generate_password,
    user_create,
    user_deactivate,
    user_reactivate,
    user_reset_password,
    user_set_roles,
)

__all__ = [
    "DEFAULT_TOKEN_ROLES",
    "TokenPolicy",
    "generate_password",
    "may_mint",
    "mint_refusal",
    "token_create",
    "token_lifetime",
    "token_policy",
    "token_revoke",
    "user_create",
    "user_deactivate",
    "user_reactivate",
    "user_reset_password",
    "user_set_roles",
]
