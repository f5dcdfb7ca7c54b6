from typing import Any

class AuthResError(Exception): ...
class SyntaxError(AuthResError): ...

class AuthenticationResultProperty:
    type: str
    name: str
    value: str | None
    comment: str | None
    def __init__(
        self, type: str, name: str, value: str | None = ..., comment: str | None = ...
    ) -> None: ...

class BaseAuthenticationResult: ...

class AuthenticationResult(BaseAuthenticationResult):
    method: str
    result: str | None
    result_comment: str | None
    reason: str | None
    properties: list[AuthenticationResultProperty]
    def __init__(
        self,
        method: str,
        version: str | None = ...,
        result: str | None = ...,
        result_comment: str | None = ...,
        reason: str | None = ...,
        reason_comment: str | None = ...,
        properties: list[AuthenticationResultProperty] | None = ...,
    ) -> None: ...

class SPFAuthenticationResult(AuthenticationResult):
    smtp_mailfrom: str | None
    smtp_helo: str | None
    def __init__(
        self,
        version: str | None = ...,
        result: str | None = ...,
        result_comment: str | None = ...,
        reason: str | None = ...,
        reason_comment: str | None = ...,
        properties: list[AuthenticationResultProperty] | None = ...,
        smtp_helo: str | None = ...,
        smtp_helo_comment: str | None = ...,
        smtp_mailfrom: str | None = ...,
        smtp_mailfrom_comment: str | None = ...,
    ) -> None: ...

class AuthenticationResultsHeader:
    authserv_id: str
    results: list[AuthenticationResult]
    def __init__(
        self,
        feature_context: Any = ...,
        authserv_id: str | None = ...,
        authserv_id_comment: str | None = ...,
        version: str | None = ...,
        version_comment: str | None = ...,
        results: list[AuthenticationResult] | None = ...,
        strict: bool = ...,
    ) -> None: ...
    def header_value(self) -> str: ...
