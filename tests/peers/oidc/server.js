// A real OAuth 2.0 authorization server (oidc-provider 9) for the client credentials tests:
// the client_credentials grant, token introspection (RFC 7662), revocation (RFC 7009), and
// dynamic client registration with management (RFC 7591/7592), so a test can register a
// client and delete (revoke) it. Tokens are opaque and kept in memory.
//
//   node server.js --access-token-ttl SECS
//
// Environment: OIDC_PEER_INTROSPECTOR=id:secret (the resource server's client, allowed to
// introspect any token), OIDC_PEER_CLIENT=id:secret (a static client_credentials client),
// OIDC_PEER_REGISTRATION_TOKEN (the initial access token for registration).
// It listens on a free loopback port and prints one JSON line with its endpoints.
//
// Two routes exist for the tests only, beside the provider's own: GET /test/stats (how many
// tokens each client was issued, and the token endpoint's errors by code) and
// POST /test/revoke-tokens?client_id=ID (what an administrator's "revoke all tokens of this
// client" does: every access token issued to it is destroyed, so introspection calls it
// inactive).

import http from 'node:http';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function pair(value, what) {
  const at = (value || '').indexOf(':');
  if (at <= 0) {
    console.error(`${what} must be id:secret`);
    process.exit(2);
  }
  return [value.slice(0, at), value.slice(at + 1)];
}

const ttl = Number(arg('--access-token-ttl', '600'));
const [introspectorId, introspectorSecret] = pair(process.env.OIDC_PEER_INTROSPECTOR, 'OIDC_PEER_INTROSPECTOR');
const [clientId, clientSecret] = pair(process.env.OIDC_PEER_CLIENT, 'OIDC_PEER_CLIENT');
const registrationToken = process.env.OIDC_PEER_REGISTRATION_TOKEN || '';

let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const issued = new Map(); // client id -> live ClientCredentials tokens
const counts = { issued: {}, errors: {} };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'scim',
    },
    {
      client_id: introspectorId,
      client_secret: introspectorSecret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  scopes: ['scim'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The SCIM server (our introspector) may ask about any client's token.
      allowedPolicy: async (ctx, client, token) => client.clientId === introspectorId || client.clientId === token.clientId,
    },
    revocation: { enabled: true },
    registration: {
      enabled: registrationToken !== '',
      initialAccessToken: registrationToken || false,
    },
    registrationManagement: { enabled: registrationToken !== '' },
  },
  ttl: { ClientCredentials: () => ttl },
});

provider.on('client_credentials.saved', (token) => {
  if (!issued.has(token.clientId)) issued.set(token.clientId, []);
  issued.get(token.clientId).push(token);
  counts.issued[token.clientId] = (counts.issued[token.clientId] || 0) + 1;
});
provider.on('grant.error', (ctx, error) => {
  counts.errors[error.error] = (counts.errors[error.error] || 0) + 1;
});

const callback = provider.callback();
handler = async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/test/stats' && req.method === 'GET') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(counts));
    return;
  }
  if (url.pathname === '/test/revoke-tokens' && req.method === 'POST') {
    const id = url.searchParams.get('client_id');
    const tokens = issued.get(id) || [];
    issued.set(id, []);
    await Promise.all(tokens.map((t) => t.destroy()));
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ revoked: tokens.length }));
    return;
  }
  callback(req, res);
};

console.log(JSON.stringify({
  issuer,
  token_endpoint: `${issuer}/token`,
  introspection_endpoint: `${issuer}/token/introspection`,
  registration_endpoint: `${issuer}/reg`,
}));
