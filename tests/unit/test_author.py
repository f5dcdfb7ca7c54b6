"""The From parser on ordinary and hostile input: one author domain or a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reputable.author import Author, AuthorProblem, author_domain


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        (b" alice@example.com", "example.com"),
        (b" Alice <alice@Example.COM>", "example.com"),
        (b' "Doe, Alice" <alice@example.com>', "example.com"),
        (b' "bob@evil.example" <alice@example.com>', "example.com"),
        (b" alice@example.com (Alice <x@evil.example>)", "example.com"),
        (b" =?utf-8?q?Al=C3=AFce?= <alice@example.com>", "example.com"),
        (b" \xc3\x85sa <asa@b\xc3\xbccher.example>", "xn--bcher-kva.example"),
        (b" \xff\xfe <alice@example.com>", "example.com"),
        (b" a@example.com, b@example.com", "example.com"),
        (b' "quoted local"@example.com', "example.com"),
        (b" Team: a@example.com, b@example.com;", "example.com"),
        (b" J. Doe\r\n <j@example.com>", "example.com"),
    ],
)
def test_single_author_domain(value: bytes, domain: str) -> None:
    assert author_domain([value]) == Author(domain)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([], AuthorProblem.NO_FROM),
        ([b" a@example.com", b" a@example.com"], AuthorProblem.MULTIPLE_FROM),
        ([b" a@example.com, b@example.net"], AuthorProblem.MULTIPLE_AUTHOR_DOMAINS),
        ([b" undisclosed-recipients:;"], AuthorProblem.FROM_NO_ADDRESS),
        ([b" "], AuthorProblem.FROM_NO_ADDRESS),
        ([b" alice"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@"], AuthorProblem.FROM_UNPARSABLE),
        ([b" <alice@example.com"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@example.com>"], AuthorProblem.FROM_UNPARSABLE),
        ([b' "unclosed <alice@example.com>'], AuthorProblem.FROM_UNPARSABLE),
        ([b" (unclosed alice@example.com"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@example.com <bob@evil.example>"], AuthorProblem.FROM_UNPARSABLE),
        ([b" <alice@example.com> <bob@evil.example>"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@[192.0.2.1]"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@exam ple.com"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@example.com@evil.example"], AuthorProblem.FROM_UNPARSABLE),
        ([b" <@route.example:alice@example.com>"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@exa\xffmple.com"], AuthorProblem.FROM_UNPARSABLE),
        ([b" alice@example.com\x00"], AuthorProblem.FROM_UNPARSABLE),
        ([b" a: b: c@example.com;;"], AuthorProblem.FROM_UNPARSABLE),
    ],
)
def test_doubtful_author_is_refused(values: list[bytes], problem: AuthorProblem) -> None:
    assert author_domain(values) == Author(None, problem)


@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    result = author_domain([value])
    assert (result.domain is None) == (result.problem is not None)


@given(
    st.lists(
        st.sampled_from(
            [
                b"a",
                b"@",
                b"<",
                b">",
                b'"',
                b"(",
                b")",
                b",",
                b":",
                b";",
                b" ",
                b"\\",
                b"example.com",
            ]
        ),
        max_size=40,
    )
)
def test_never_raises_on_special_soup(parts: list[bytes]) -> None:
    result = author_domain([b"".join(parts)])
    assert (result.domain is None) == (result.problem is not None)
