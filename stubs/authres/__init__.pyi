from types import ModuleType

from authres.core import AuthenticationResult as AuthenticationResult
from authres.core import AuthenticationResultProperty as AuthenticationResultProperty
from authres.core import AuthenticationResultsHeader as AuthenticationResultsHeader

class FeatureContext:
    def __init__(self, *modules: ModuleType) -> None: ...
    def parse(self, string: str) -> AuthenticationResultsHeader: ...
    def parse_value(self, string: str) -> AuthenticationResultsHeader: ...
