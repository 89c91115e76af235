#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: RFC 7643/7644 examples and
vendor-like payloads (Entra ID, Okta, authentik shapes). Rerun after editing; the files are
small and committed."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BULKRESP = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"

def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

filters = [
    'userName eq "bjensen"',
    'name.familyName co "O\'Malley"',
    'userName sw "J"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"',
    'title pr',
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"',
    'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
    'externalId eq "00u1" and active eq true',
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"',
    'members[value eq "2819c223"]',
    'x eq null or y eq 1.5e3 or z eq false',
    'displayName eq "Tour \\"Guides\\" \\u00e9"',
]
for i, f in enumerate(filters):
    write("filter", f"rfc{i:02}", f)

paths = [
    "userName", "name.familyName", "emails", 'emails[type eq "work"].value',
    'members[value eq "2819c223-7f76-453a-919d-413861904646"]',
    'addresses[type eq "work"].streetAddress',
    f"{ENT}:manager.value", f"{ENT}:employeeNumber", ENT, f"{USER}:name.givenName",
    'emails[type eq "work" and value ew "example.com"]', "meta.lastModified",
]
for i, p in enumerate(paths):
    write("attr_path", f"rfc{i:02}", p)

user = {"schemas": [USER, ENT], "id": "2819c223", "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        "members": [{"value": "1"}], ENT: {"employeeNumber": "701984"}}
patches = [
    {"Operations": [{"op": "add", "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickname": "Babs"}}]},
    {"Operations": [{"op": "add", "path": "members", "value": [{"display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223", "value": "2819c223"}]}]},
    {"Operations": [{"op": "remove", "path": 'members[value eq "2819c223-7f76-453a-919d-413861904646"]'}]},
    {"Operations": [{"op": "remove", "path": "members"}, {"op": "add", "path": "members", "value": [{"value": "9"}]}]},
    {"Operations": [{"op": "replace", "path": 'addresses[type eq "work"]', "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "primary": True}}]},
    {"Operations": [{"op": "replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1010 Broadway Ave"}]},
    {"Operations": [{"op": "replace", "value": {"emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}], "nickname": "Babs"}}]},
    # Entra ID style: capitalised ops, string booleans, extension paths
    {"Operations": [{"op": "Replace", "path": "active", "value": "False"},
                    {"op": "Add", "path": f"{ENT}:manager", "value": [{"value": "26118915"}]},
                    {"op": "Remove", "path": f"{ENT}:department"}]},
    # Okta style
    {"Operations": [{"op": "replace", "value": {"active": False, "name.givenName": "B"}}]},
    {"Operations": [{"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"}]},
]
for i, p in enumerate(patches):
    body = dict({"schemas": [PATCHOP]}, **p)
    write("patch", f"rfc{i:02}", json.dumps(user) + "\n" + json.dumps(body))

def req(method, path, query="", headers="", body=""):
    return f"{method}\n{path}\n{query}\n{headers}\n{body}"
ct = "Content-Type: application/scim+json"
new_user = json.dumps({"schemas": [USER], "userName": "ada", "name": {"givenName": "Ada"},
                       "emails": [{"value": "ada@example.com", "type": "work"}], "active": True})
bulk = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "failOnErrors": 1,
    "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "qwerty", "data": {"schemas": [USER], "userName": "Alice"}},
        {"method": "POST", "path": "/Groups", "bulkId": "ytrewq", "data": {"schemas": [GROUP], "displayName": "Tour Guides", "members": [{"type": "User", "value": "bulkId:qwerty"}]}},
        {"method": "PATCH", "path": "/Groups/bulkId:ytrewq", "data": {"schemas": [PATCHOP], "Operations": [{"op": "remove", "path": "members"}]}},
        {"method": "DELETE", "path": "/Users/bulkId:qwerty"}]})
search = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
    "attributes": ["displayName", "userName"], "filter": 'displayName sw "smith"', "startIndex": 1, "count": 10})
server = [
    req("GET", "/Users", 'filter=userName%20eq%20%22bjensen%22&startIndex=1&count=10&sortBy=userName&sortOrder=descending'),
    req("GET", "/Users", 'attributes=userName,emails&excludedAttributes=name'),
    req("GET", "/Groups", 'filter=displayName+eq+%22Tour+Guides%22'),
    req("POST", "/Users", "", ct, new_user),
    req("PUT", "/Users/x", "", ct + "\rIf-Match: W/\"1\"", new_user),
    req("PATCH", "/Users/x", "", ct, json.dumps({"schemas": [PATCHOP], "Operations": [{"op": "replace", "path": "active", "value": False}]})),
    req("DELETE", "/Users/%2e%2e"),
    req("POST", "/Bulk", "", ct, bulk),
    req("POST", "/Users/.search", "", ct, search),
    req("GET", "/ServiceProviderConfig"),
    req("GET", "/Schemas/" + USER),
    req("GET", "/ResourceTypes/User"),
    req("GET", "/Me"),
]
for i, r in enumerate(server):
    write("server_handle", f"rfc{i:02}", r)

def resp(status, headers, body):
    return struct.pack(">H", status) + ("\n".join(headers) + "\n\n" + body).encode()
ctj = "Content-Type: application/scim+json"
responses = [
    resp(200, [ctj, 'ETag: W/"e180ee84f0671b1"'], json.dumps(dict(user, meta={"location": "https://example.com/v2/Users/2819c223", "version": 'W/"e180ee84f0671b1"'}))),
    resp(200, [ctj], json.dumps({"schemas": [LIST], "totalResults": 2, "itemsPerPage": 2, "startIndex": 1, "Resources": [user, {"id": "c75ad752", "userName": "jsmith"}]})),
    resp(200, ["Content-Type: application/json"], json.dumps({"totalResults": "1", "Resources": [user]})),
    resp(409, [ctj], json.dumps({"schemas": [ERROR], "scimType": "uniqueness", "detail": "userName taken", "status": "409"})),
    resp(400, [ctj], json.dumps({"schemas": [ERROR], "scimType": "invalidFilter", "status": 400})),
    resp(429, ["Retry-After: 120"], ""),
    resp(503, ["Retry-After: Sun, 06 Nov 1994 08:49:37 GMT", "Content-Type: text/html"], "<html><body><h1>503 Service Unavailable</h1></body></html>"),
    resp(502, ["Content-Type: text/html"], "<html>\n<body><h1>502 Bad Gateway</h1></body></html>"),
    resp(200, [ctj], json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True}, "bulk": {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1048576},
        "filter": {"supported": True, "maxResults": 200}, "changePassword": {"supported": False},
        "sort": {"supported": True}, "etag": {"supported": True},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token"}]})),
    resp(401, ["WWW-Authenticate: Bearer"], "Unauthorized"),
    resp(204, [], ""),
]
for i, r in enumerate(responses):
    write("scim_response", f"rfc{i:02}", r)

bulk_responses = [
    {"schemas": [BULKRESP], "Operations": [
        {"location": "https://example.com/v2/Users/92b725cd", "method": "POST", "bulkId": "qwerty", "version": 'W/"oY4m4wn58tkVjJxK"', "status": "201"},
        {"location": "https://example.com/v2/Groups/e9e30dba", "method": "PUT", "version": 'W/"huJj29dMNgu3WXPD"', "status": "200"},
        {"location": "https://example.com/v2/Groups/e9e30dba", "method": "PATCH", "status": "200"},
        {"location": "https://example.com/v2/Users/b7c14771", "method": "DELETE", "status": "204"}]},
    {"schemas": [BULKRESP], "Operations": [
        {"method": "POST", "bulkId": "qwerty", "status": "400",
         "response": {"schemas": [ERROR], "scimType": "invalidSyntax", "detail": "Request is unparsable", "status": "400"}}]},
    {"schemas": [BULKRESP], "Operations": [{"method": "POST", "bulkId": "a", "status": 201, "location": "/Users/1", "response": {"id": "1"}}]},
    {"Operations": []},
]
for i, b in enumerate(bulk_responses):
    write("bulk_response", f"rfc{i:02}", json.dumps(b))

for i, d in enumerate(["Sun, 06 Nov 1994 08:49:37 GMT", "120", "0", "Fri, 31 Dec 9999 23:59:59 GMT",
                       "2024-02-29", "2024-01-05 13:04:05", "2024-01-05T13:04:05.123+02:00", "1700000000",
                       "Thu, 01 Jan 1970 00:00:00 GMT"]):
    write("dates", f"rfc{i:02}", d)

policies = [
    {},
    {"operations": {"delete": True}, "deprovision": "delete", "matching": ["externalId", "userName"]},
    {"mapping": [{"target": "userName", "source": "name"},
                 {"target": 'emails[type eq "work"].value', "source": "mail", "transform": ["lower", "trim"]},
                 {"target": f"{ENT}:employeeNumber", "source": "x", "transform": [{"regex_replace": {"pattern": "^B-(\\d+)", "replacement": "$1"}}]},
                 {"target": "active", "source": "flag", "transform": ["bool"]},
                 {"target": "urn:example:params:scim:schemas:extension:acme:2.0:User:since", "source": "created", "transform": ["date"]},
                 {"target": "nickName", "template": "{name} <{mail}>"},
                 {"target": "userType", "value": "Employee", "apply": "create"}],
     "extensions": ["urn:example:params:scim:schemas:extension:acme:2.0:User"],
     "scope": {"field": "roles", "any_of": ["editor"]}},
    {"groups_from": "roles", "preserve_unmapped": False, "on_remote_missing": "recreate",
     "mapping": [{"target": "userName", "source": "mail", "required": True},
                 {"target": "name.givenName", "source": "name", "default": "n/a"},
                 {"target": "title", "source": "roles", "transform": [{"join": ","}]}]},
]
for i, p in enumerate(policies):
    write("policy", f"seed{i:02}", json.dumps(p))

for i, (p, t, r) in enumerate([("^B-(\\d+)$", "B-0042", "$1"), ("(\\w+)@(\\w+)", "ann@example", "$2/$1"),
                               ("a*", "baab", "-"), ("^\\s+|\\s+$", "  hi  ", ""), ("(a+?)", "aaa", "<${1}>"),
                               ("[^a-z0-9._-]", "Jöhn Smith", "_"), ("(?:ab){2,3}x?", "abababx", "$0$$"),
                               ("^(cat|dog)s?$", "dogs", "pet")]):
    write("regex", f"seed{i:02}", f"{p}\0{t}\0{r}")
