from authres.core import AuthenticationResult, AuthenticationResultProperty

class DMARCAuthenticationResult(AuthenticationResult):
    header_from: str | None
    def __init__(
        self,
        version: str | None = ...,
        result: str | None = ...,
        result_comment: str | None = ...,
        reason: str | None = ...,
        reason_comment: str | None = ...,
        properties: list[AuthenticationResultProperty] | None = ...,
        header_from: str | None = ...,
        header_from_comment: str | None = ...,
        policy: str | None = ...,
        policy_comment: str | None = ...,
    ) -> None: ...
