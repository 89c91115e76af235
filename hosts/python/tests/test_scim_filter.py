"""The Python port of the component's filter engine, on the Rust tests' own cases
(src/scim/filter/eval.rs, parse.rs, src/server/select.rs)."""

from __future__ import annotations

import pytest

from scim_provisioner_host import scim_filter as F

USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "BJensen",
    "userName": "bjensen@example.com",
    "name": {"familyName": "O'Malley", "givenName": "Barbara"},
    "title": "Tour Guide",
    "userType": "Employee",
    "active": True,
    "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True},
               {"value": "babs@jensen.org", "type": "home"}],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "groups": [],
    "loginCount": 7,
    "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z", "version": 'W/"3694e05e9dff591"'},
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
        "employeeNumber": "701984", "department": "Sales",
        "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
}

YES = [
    'userName eq "BJENSEN@example.com"', 'USERNAME eq "bjensen@example.com"', 'name.familyName co "o\'malley"',
    'userName sw "bj"', 'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B"', "title pr",
    'meta.lastModified gt "2011-05-13T04:42:33Z"', 'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2012-01-01T00:00:00Z"', 'meta.lastModified le "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"', 'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
    'emails eq "babs@jensen.org"', 'emails[type eq "home"]', 'emails[primary eq true and type eq "WORK"]',
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales"',
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr",
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d"',
    'id eq "2819c223-7f76-453a-919d-413861904646"', 'externalId eq "BJensen"', "active eq true",
    "active ne false", "loginCount gt 6 and loginCount le 7.0 and loginCount eq 7", "nickName eq null",
    'nickName ne "x"', "not (nickName pr)", "name pr", 'userName ew ".COM"', 'ims.value eq "SomeAimHandle"',
    'meta.version eq "W/\\"3694e05e9dff591\\""',
]
NO = [
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'externalId eq "bjensen"', 'id eq "2819C223-7F76-453A-919D-413861904646"',
    'meta.version eq "w/\\"3694e05e9dff591\\""', "groups pr", "nickName pr",
    'emails[type eq "home" and primary eq true]',
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "1"',
    'urn:example:params:scim:schemas:extension:acme:2.0:User:department eq "Sales"', 'department eq "Sales"',
    "active gt false", 'active eq "true"', "loginCount co 7", 'loginCount gt "6"', "title eq null",
    'userName gt "c"', 'name eq "Barbara"',
]


@pytest.mark.parametrize("text", YES)
def test_matches(text):
    assert F.matches(F.parse(text), USER), text


@pytest.mark.parametrize("text", NO)
def test_does_not_match(text):
    assert not F.matches(F.parse(text), USER), text


def test_non_objects_match_nothing():
    assert not F.matches(F.parse("title pr"), "x")


def test_precedence_and_literals():
    a = F.AttrName(None, "a")
    b = F.AttrName(None, "b")
    c = F.AttrName(None, "c")
    assert F.parse("a pr or b pr and c pr") == F.Or(F.Present(a), F.And(F.Present(b), F.Present(c)))
    assert F.parse("a pr AND b pr Or c pr") == F.Or(F.And(F.Present(a), F.Present(b)), F.Present(c))
    assert F.parse("NOT (a PR)") == F.Not(F.Present(a))
    for text, value in [("x eq 42", 42), ("x eq -1.5e3", -1500.0), ("x eq true", True), ("x eq False", False),
                        ("x eq null", None), ('x eq "a\\"b\\\\c\\u00e9\\n"', 'a"b\\cé\n')]:
        parsed = F.parse(text)
        assert isinstance(parsed, F.Compare) and parsed.value == value, text


@pytest.mark.parametrize("text", [
    "", "userName", "userName eq", 'userName xx "a"', "(a pr", "a pr)", "not a pr", 'a eq "open',
    "a pr and", "1abc pr", "urn:ietf:params:scim:schemas:core:2.0:User pr", 'name.givenName[value eq "x"]',
    "(" * 70 + "a pr" + ")" * 70, " or ".join(["a pr"] * 300),
])
def test_malformed_filters_are_refused(text):
    with pytest.raises(F.FilterError):
        F.parse(text)


def test_select_sorts_numbers_and_primary_values():
    views = [{"id": "a", "n": 10, "emails": [{"value": "z@x"}, {"value": "b@x", "primary": True}]},
             {"id": "b", "n": 9, "emails": [{"value": "a@x"}]},
             {"id": "c", "emails": [{"value": "c@x", "primary": True}]}]
    assert F.select(views, None, 1, 10, "n")[1] == [1, 0, 2]
    assert F.select(views, None, 1, 10, "emails")[1] == [1, 0, 2]
    assert F.select(views, None, 1, 10, "n", True)[1] == [2, 0, 1]


def test_select_filters_and_pages():
    views = [{"id": str(i), "userName": f"u{i}", "active": i % 2 == 0} for i in range(10)]
    assert F.select(views, F.parse("active eq true"), 2, 2) == (5, [2, 4])
    assert F.select(views, None, 1, 0) == (10, [])
    with pytest.raises(F.FilterError):
        F.select([], None, 1, 1, "a[b")
