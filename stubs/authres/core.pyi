class AuthenticationResultProperty:
    type: str
    name: str
    value: str | None
    comment: str | None

class AuthenticationResult:
    method: str
    result: str | None
    result_comment: str | None
    reason: str | None
    properties: list[AuthenticationResultProperty]

class AuthenticationResultsHeader:
    authserv_id: str
    results: list[AuthenticationResult]
