"""The first session a user has: sign up, create a lab, list it."""

from __future__ import annotations

from tests.conftest import Api, error_codes


async def test_sign_up_create_and_list(api: Api) -> None:
    user = await api.sign_up()
    created = await api.ok(
        'mutation { createLab(input: {title: " Dune ", author: "Frank Herbert"}) { id title } }',
        token=user.token,
    )
    assert created["createLab"]["title"] == "Dune"
    listed = await api.ok("{ labs { totalCount nodes { id title } } }", token=user.token)
    assert listed["labs"] == {
        "totalCount": 1,
        "nodes": [{"id": created["createLab"]["id"], "title": "Dune"}],
    }


async def test_labs_without_a_token_is_unauthenticated(api: Api) -> None:
    result = await api.gql("{ labs { totalCount } }")
    assert error_codes(result) == ["UNAUTHENTICATED"]
