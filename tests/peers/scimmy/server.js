// SCIM 2.0 test peer built on SCIMMY 1.3.5 + scimmy-routers 1.3.2 (Express 4).
//
// Serves /scim/v2 on 127.0.0.1:$PORT (0 = any free port) with in-memory Users (core +
// Enterprise User extension + the custom extension
// urn:ietf:params:scim:schemas:extension:acme:2.0:User) and Groups. Every endpoint,
// discovery included, requires `Authorization: Bearer $SCIM_TOKEN`.
// Prints exactly one line `listening <port>` to stdout once it accepts connections.
//
// What this app adds on top of the library (which leaves storage to the app):
//   - ids are random UUIDs; meta.created / meta.lastModified are kept per resource;
//   - 409 scimType "uniqueness" for a userName already taken (compared case-insensitively);
//   - 404 for unknown ids on read / replace / patch / delete;
//   - User.groups is computed from the groups' members; deleting a user removes it from groups.
// Everything else (filter matching, sorting, pagination, PATCH semantics, schema
// coercion, error bodies) is the library's own behaviour, quirks included.

import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";
import {randomUUID} from "node:crypto";

const TOKEN = process.env.SCIM_TOKEN;
if (!TOKEN) {
    console.error("SCIM_TOKEN must be set to the bearer token clients will send");
    process.exit(2);
}
const PORT = Number.parseInt(process.env.PORT ?? "0", 10);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) {
    console.error(`PORT must be an integer in 0..65535, got ${JSON.stringify(process.env.PORT)}`);
    process.exit(2);
}

/** @type {Map<string, object>} id -> stored User (plain JSON, without groups) */
const users = new Map();
/** @type {Map<string, object>} id -> stored Group (plain JSON) */
const groups = new Map();

// Plain, deep copy of a schema instance or stored record.
const plain = (value) => JSON.parse(JSON.stringify(value));

const notFound = (id) => new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);

// Turn the coerced inbound instance into a stored record: new or replaced,
// keeping id and meta.created of the resource it replaces.
function record(instance, existing) {
    const now = new Date().toISOString();
    const {id: _id, meta: _meta, schemas: _schemas, groups: _groups, ...data} = plain(instance);
    return {
        ...data,
        id: existing?.id ?? randomUUID(),
        meta: {created: existing?.meta?.created ?? now, lastModified: now},
    };
}

// A stored user as served: with its (read-only) group memberships.
function userOut(user) {
    const memberOf = [...groups.values()]
        .filter((g) => (g.members ?? []).some((m) => m.value === user.id))
        .map((g) => ({value: g.id, display: g.displayName, type: "direct"}));
    return memberOf.length ? {...plain(user), groups: memberOf} : plain(user);
}

// A custom User extension, for the attribute-mapping tests. (SCIMMY only accepts schema
// URNs under urn:ietf:params:scim:schemas:, so it cannot be an urn:example: one.)
const AcmeUser = new SCIMMY.Types.SchemaDefinition(
    "AcmeUser", "urn:ietf:params:scim:schemas:extension:acme:2.0:User", "Acme test extension", [
        new SCIMMY.Types.Attribute("string", "badge"),
        new SCIMMY.Types.Attribute("dateTime", "memberSince"),
        new SCIMMY.Types.Attribute("boolean", "vip"),
        new SCIMMY.Types.Attribute("integer", "level"),
        new SCIMMY.Types.Attribute("string", "skills", {multiValued: true}),
    ]);

SCIMMY.Resources.declare(SCIMMY.Resources.User)
    .extend(SCIMMY.Schemas.EnterpriseUser, false)
    .extend(AcmeUser, false)
    .ingress((resource, instance) => {
        const existing = resource.id ? users.get(resource.id) : undefined;
        if (resource.id && !existing) throw notFound(resource.id);

        const userName = String(instance.userName ?? "").toLowerCase();
        for (const other of users.values()) {
            if (other.id !== resource.id && String(other.userName).toLowerCase() === userName)
                throw new SCIMMY.Types.Error(409, "uniqueness", `userName '${instance.userName}' is already in use`);
        }

        const user = record(instance, existing);
        users.set(user.id, user);
        return userOut(user);
    })
    .egress((resource) => {
        if (resource.id) {
            const user = users.get(resource.id);
            if (!user) throw notFound(resource.id);
            return userOut(user);
        }
        const all = [...users.values()].map(userOut);
        return resource.filter ? resource.filter.match(all) : all;
    })
    .degress((resource) => {
        if (!users.delete(resource.id)) throw notFound(resource.id);
        for (const group of groups.values()) {
            if (group.members?.some((m) => m.value === resource.id))
                group.members = group.members.filter((m) => m.value !== resource.id);
        }
    });

SCIMMY.Resources.declare(SCIMMY.Resources.Group)
    .ingress((resource, instance) => {
        const existing = resource.id ? groups.get(resource.id) : undefined;
        if (resource.id && !existing) throw notFound(resource.id);

        const group = record(instance, existing);
        groups.set(group.id, group);
        return plain(group);
    })
    .egress((resource) => {
        if (resource.id) {
            const group = groups.get(resource.id);
            if (!group) throw notFound(resource.id);
            return plain(group);
        }
        const all = [...groups.values()].map(plain);
        return resource.filter ? resource.filter.match(all) : all;
    })
    .degress((resource) => {
        if (!groups.delete(resource.id)) throw notFound(resource.id);
    });

const app = express();
// Express would otherwise add weak ETag headers (and answer If-None-Match with 304)
// although the ServiceProviderConfig says etag is unsupported.
app.set("etag", false);
app.disable("x-powered-by");

app.use("/scim/v2", new SCIMMYRouters({
    type: "bearer",
    handler: (request) => {
        if (request.header("Authorization") !== `Bearer ${TOKEN}`)
            throw new Error("Missing or invalid bearer token");
        return "scimmy-peer-client";
    },
}));

const server = app.listen(PORT, "127.0.0.1", () => {
    process.stdout.write(`listening ${server.address().port}\n`);
});
server.on("error", (error) => {
    console.error(`cannot listen on 127.0.0.1:${PORT}: ${error.message}`);
    process.exit(1);
});

for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
