from authres.core import AuthenticationResult, AuthenticationResultProperty

class ARCAuthenticationResult(AuthenticationResult):
    def __init__(
        self,
        version: str | None = ...,
        result: str | None = ...,
        result_comment: str | None = ...,
        reason: str | None = ...,
        reason_comment: str | None = ...,
        properties: list[AuthenticationResultProperty] | None = ...,
    ) -> None: ...
