"""/api/users: the permission matrix for anonymous, user, other user and admin; pagination and search."""

from __future__ import annotations

import pytest

from tests.fixtures.accounts import bearer, login

SELF, OTHER, ADMIN = "+8613800138000", "+8613900139000", "+8613700137000"


@pytest.fixture
def app(make_app, accounts_settings):
    return make_app(accounts_settings)


@pytest.fixture
def people(app, client, make_user):
    """Ids and tokens of a user, another user and an admin."""
    ids = {"self": make_user(SELF), "other": make_user(OTHER), "admin": make_user(ADMIN, role="admin")}
    tokens = {name: login(client, phone)["token"] for name, phone in (("self", SELF), ("other", OTHER),
                                                                        ("admin", ADMIN))}
    return ids, tokens


NEW_USER = {"phone": "13600136000", "password": "a good password", "nickname": "new"}

# (method, path template, body, expected status for: anonymous, self, other, admin)
MATRIX = [
    ("get", "/api/users/me", None, (401, 200, 200, 200)),
    ("patch", "/api/users/me", {"nickname": "renamed"}, (401, 200, 200, 200)),
    ("get", "/api/users/", None, (401, 403, 403, 200)),
    ("post", "/api/users/", NEW_USER, (401, 403, 403, 201)),
    ("get", "/api/users/{self}", None, (401, 200, 403, 200)),
    ("patch", "/api/users/{self}", {"nickname": "by admin"}, (401, 403, 403, 200)),
    ("delete", "/api/users/{self}", None, (401, 403, 403, 204)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_permission_matrix(client, people, method, path, body, expected):
    ids, tokens = people
    url = path.format(self=ids["self"])
    answers = []
    for who in ("anonymous", "self", "other", "admin"):
        headers = bearer(tokens[who]) if who != "anonymous" else {}
        answers.append(getattr(client, method)(url, json=body, headers=headers).status_code)
    assert tuple(answers) == expected


@pytest.mark.parametrize("user_id", ["999999", "0", "84205762923628969984"])
def test_unknown_user_is_404_for_an_admin(client, people, user_id):
    _, tokens = people
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(f"/api/users/{user_id}", json={"nickname": "x"}, headers=bearer(tokens["admin"]))
        assert response.status_code == 404, method


def test_deactivating_a_user_ends_their_sessions_at_once(client, people):
    ids, tokens = people
    response = client.patch(f"/api/users/{ids['self']}", json={"is_active": False}, headers=bearer(tokens["admin"]))
    assert response.get_json()["data"]["is_active"] is False
    assert client.get("/api/users/me", headers=bearer(tokens["self"])).status_code == 401
    assert client.post("/api/auth/login", json={"account": SELF, "password": "correct horse battery"}).status_code == 403


def test_deleting_a_user_ends_their_sessions(client, people):
    ids, tokens = people
    assert client.delete(f"/api/users/{ids['self']}", headers=bearer(tokens["admin"])).status_code == 204
    assert client.get("/api/users/me", headers=bearer(tokens["self"])).status_code == 401
    assert client.get(f"/api/users/{ids['self']}", headers=bearer(tokens["admin"])).status_code == 404


def test_admin_can_change_role_and_email(client, people):
    ids, tokens = people
    response = client.patch(f"/api/users/{ids['other']}", json={"role": "admin", "email": "Other@Example.com"},
                            headers=bearer(tokens["admin"]))
    assert (response.get_json()["data"]["role"], response.get_json()["data"]["email"]) == ("admin", "other@example.com")


def test_email_taken_by_another_user_is_409(client, people):
    _, tokens = people
    client.patch("/api/users/me", json={"email": "mine@example.com"}, headers=bearer(tokens["other"]))
    response = client.patch("/api/users/me", json={"email": "mine@example.com"}, headers=bearer(tokens["self"]))
    assert (response.status_code, response.get_json()["field"]) == (409, "email")


def test_empty_email_removes_it(client, people):
    _, tokens = people
    client.patch("/api/users/me", json={"email": "mine@example.com"}, headers=bearer(tokens["self"]))
    response = client.patch("/api/users/me", json={"email": ""}, headers=bearer(tokens["self"]))
    assert response.get_json()["data"]["email"] is None


def test_admin_created_user_can_log_in(client, people):
    _, tokens = people
    assert client.post("/api/users/", json=NEW_USER, headers=bearer(tokens["admin"])).status_code == 201
    login(client, "13600136000", "a good password")
    again = client.post("/api/users/", json=NEW_USER, headers=bearer(tokens["admin"]))
    assert (again.status_code, again.get_json()["field"]) == (409, "phone")


# --- pagination and search -------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, people, make_user):
    for i in range(22):
        make_user(f"+86135001350{i:02d}", email=f"bulk{i}@example.com")
    return client, bearer(people[1]["admin"])


def page(client, headers, query=""):
    response = client.get(f"/api/users/{query}", headers=headers)
    return response.status_code, response.get_json()


def test_first_page_has_the_defaults(admin_client):
    status, body = page(*admin_client)
    data = body["data"]
    assert status == 200
    assert (data["page"], data["per_page"], data["total"], data["pages"]) == (1, 20, 25, 2)
    assert len(data["items"]) == 20


def test_last_page_and_past_the_end(admin_client):
    _, body = page(*admin_client, "?page=2&per_page=20")
    assert len(body["data"]["items"]) == 5
    _, body = page(*admin_client, "?page=9")
    assert body["data"]["items"] == [] and body["data"]["total"] == 25


@pytest.mark.parametrize("query", ["?per_page=0", "?per_page=101", "?page=0", "?page=x"])
def test_out_of_range_paging_is_400(admin_client, query):
    status, body = page(*admin_client, query)
    assert status == 400
    assert body["field"] in ("page", "per_page")


def test_per_page_of_100_is_allowed(admin_client):
    status, body = page(*admin_client, "?per_page=100")
    assert status == 200 and len(body["data"]["items"]) == 25


def test_q_matches_phone_email_or_nickname(admin_client):
    assert page(*admin_client, "?q=bulk1")[1]["data"]["total"] == 11  # bulk1, bulk10..19
    assert page(*admin_client, "?q=1350013501")[1]["data"]["total"] == 10  # +86135001350(10..19)
    assert page(*admin_client, "?q=USER%207000")[1]["data"]["total"] == 1  # nickname, case-insensitive


# --- admins: no self-deletion, never without an active admin ---------------------------------------


def test_an_admin_cannot_delete_themself(client, people):
    ids, tokens = people
    response = client.delete(f"/api/users/{ids['admin']}", headers=bearer(tokens["admin"]))
    assert (response.status_code, response.get_json()["status"]) == (403, "FORBIDDEN")
    assert client.get("/api/users/me", headers=bearer(tokens["admin"])).status_code == 200


@pytest.mark.parametrize("change", [{"role": "user"}, {"is_active": False}])
def test_the_only_active_admin_cannot_demote_or_deactivate_themself(client, people, change):
    ids, tokens = people
    response = client.patch(f"/api/users/{ids['admin']}", json=change, headers=bearer(tokens["admin"]))
    assert (response.status_code, response.get_json()["status"]) == (403, "FORBIDDEN")
    me = client.get("/api/users/me", headers=bearer(tokens["admin"])).get_json()["data"]
    assert (me["role"], me["is_active"]) == ("admin", True)


def test_an_admin_may_step_down_while_another_active_admin_remains(client, people):
    ids, tokens = people
    client.patch(f"/api/users/{ids['other']}", json={"role": "admin"}, headers=bearer(tokens["admin"]))
    response = client.patch(f"/api/users/{ids['admin']}", json={"role": "user"}, headers=bearer(tokens["admin"]))
    assert (response.status_code, response.get_json()["data"]["role"]) == (200, "user")
    # the other admin is now the last one
    response = client.patch(f"/api/users/{ids['other']}", json={"is_active": False}, headers=bearer(tokens["other"]))
    assert response.status_code == 403


def test_an_inactive_admin_does_not_count(client, people):
    ids, tokens = people
    client.patch(f"/api/users/{ids['other']}", json={"role": "admin", "is_active": False},
                 headers=bearer(tokens["admin"]))
    response = client.patch(f"/api/users/{ids['admin']}", json={"role": "user"}, headers=bearer(tokens["admin"]))
    assert response.status_code == 403


def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, client, people):
    """Row locks serialise the two checks (PostgreSQL, MariaDB); SQLite runs one writer at a time."""
    import threading

    ids, tokens = people
    client.patch(f"/api/users/{ids['other']}", json={"role": "admin"}, headers=bearer(tokens["admin"]))
    barrier, answers = threading.Barrier(2), []

    def demote(actor: str, target: str) -> None:
        own = app.test_client()
        barrier.wait()
        answers.append(own.patch(f"/api/users/{ids[target]}", json={"role": "user"},
                                 headers=bearer(tokens[actor])).status_code)

    threads = [threading.Thread(target=demote, args=pair) for pair in (("admin", "other"), ("other", "admin"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 200 in answers
    roles = {client.get(f"/api/users/{ids[who]}", headers=bearer(tokens[who])).get_json()["data"]["role"]
             for who in ("admin", "other")}
    assert roles == {"admin", "user"}, answers


# --- search and numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("wildcard", ["%25", "_", "%5C", "%2F"])
def test_like_wildcards_in_q_match_only_themselves(admin_client, make_user, wildcard):
    assert page(*admin_client, f"?q={wildcard}")[1]["data"]["total"] == 0


def test_a_literal_percent_in_q_finds_it(app, admin_client):
    from app.services.users import create_user

    with app.app_context():
        create_user("+8613300133000", "a good password", "100%_sure")
    assert page(*admin_client, "?q=0%25_s")[1]["data"]["total"] == 1


@pytest.mark.parametrize("query", ["?page=%D9%A1", "?per_page=%D9%A1%D9%A0", "?page=%EF%BC%91", "?page=+1"])
def test_a_page_number_in_other_digits_is_400(admin_client, query):
    status, body = page(*admin_client, query)
    assert (status, body["status"], body["field"]) == (400, "INVALID_FIELD", query[1:].split("=")[0])


@pytest.mark.parametrize("path", ["/api/users/%D9%A1", "/api/users/%EF%BC%91", "/api/files/%D9%A1"])
def test_an_id_in_other_digits_is_404(client, people, path):
    _, tokens = people
    response = client.get(path, headers=bearer(tokens["admin"]))
    assert (response.status_code, response.get_json()["status"]) == (404, "NOT_FOUND")


# --- the cursor form -----------------------------------------------------------------------------------


def cursor_walk(client, headers, per_page, q=""):
    """Every page of the cursor form from the first (empty cursor) on; the data of each."""
    pages, cursor = [], ""
    while cursor is not None:
        response = client.get("/api/users/", headers=headers,
                              query_string={"cursor": cursor, "per_page": per_page, **({"q": q} if q else {})})
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json()["data"])
        cursor = pages[-1]["next_cursor"]
        assert len(pages) < 50, "the walk does not end"
    return pages


@pytest.mark.parametrize("per_page", [1, 7, 25, 100])
def test_a_cursor_walk_gives_every_user_once_in_the_page_forms_order(admin_client, per_page):
    client, headers = admin_client
    everyone = [user["id"] for user in page(client, headers, "?per_page=100")[1]["data"]["items"]]
    pages = cursor_walk(client, headers, per_page)
    assert [user["id"] for data in pages for user in data["items"]] == everyone
    assert all(set(data) == {"items", "per_page", "next_cursor"} for data in pages)  # no page, total or pages
    assert all(len(data["items"]) == per_page for data in pages[:-1])
    assert pages[-1]["next_cursor"] is None and pages[-1]["items"]  # the last page is not an empty one
    assert len(pages) == -(-len(everyone) // per_page)


def test_the_page_form_has_no_next_cursor(admin_client):
    assert set(page(*admin_client)[1]["data"]) == {"items", "page", "per_page", "total", "pages"}


def test_a_cursor_walk_with_q_gives_the_matches_only(admin_client):
    client, headers = admin_client
    matches = [user["id"] for user in page(client, headers, "?q=bulk1&per_page=100")[1]["data"]["items"]]
    walked = [user["id"] for data in cursor_walk(client, headers, 3, q="bulk1") for user in data["items"]]
    assert walked == matches and len(walked) == 11


def tampered(cursor: str) -> str:
    """The cursor with one character changed (the first, which always carries 6 bits of the key)."""
    return ("B" if cursor[0] != "B" else "C") + cursor[1:]


def test_a_cursor_the_server_did_not_make_is_400_on_cursor(admin_client):
    client, headers = admin_client
    cursor = page(client, headers, "?cursor=&per_page=2")[1]["data"]["next_cursor"]
    assert page(client, headers, f"?cursor={cursor}")[0] == 200
    for bad in (tampered(cursor), cursor[:-1], cursor + "A", "x", "%00", "0" * 64, "0" * 65, cursor + "=",
                "AAAAAAAAAAAAAAAAAAAAAA"):
        status, body = page(client, headers, f"?cursor={bad}")
        assert (status, body["status"], body["field"]) == (400, "INVALID_FIELD", "cursor"), bad


def test_cursor_and_page_together_are_400(admin_client):
    client, headers = admin_client
    cursor = page(client, headers, "?cursor=&per_page=2")[1]["data"]["next_cursor"]
    for query in (f"?cursor={cursor}&page=1", "?cursor=&page=2"):
        status, body = page(client, headers, query)
        assert (status, body["status"], body["field"]) == (400, "INVALID_FIELD", "cursor"), query


def test_a_cursor_page_still_checks_per_page(admin_client):
    status, body = page(*admin_client, "?cursor=&per_page=101")
    assert (status, body["field"]) == (400, "per_page")
