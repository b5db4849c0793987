// The OpenID Provider of the sign-in tests (tests/tests/api/oidc.rs, tests/src/oidc.rs):
// panva's certified oidc-provider, as a real identity provider runs it, on loopback.
//
//   node provider.mjs CONFIG_JSON
//
// CONFIG_JSON: {"issuer": URL, "users": [{"id", "password", "email", "preferred_username",
// "name", "groups": [...]}]}. The issuer is where the app reaches the provider (the tests put
// a proxy there); the provider itself listens on 127.0.0.1, port 0, and prints
// "listening on http://127.0.0.1:PORT" once it takes requests. Endpoint URLs follow the Host
// header each request came with, so a proxy that keeps Host shows its own URLs.
//
// What it is configured with, as the sign-in docs (docs/OPERATIONS.md) ask of a real provider:
// authorization code flow only, PKCE (S256) required of every client, RS256 ID tokens with the
// `email` and `profile` claims, `groups` among them, in the ID token itself (as Keycloak,
// authentik and Entra ID put them), RP-initiated logout. Clients are registered after start, when the app's
// redirect URI is known: `POST /test/clients` with a client's metadata (the same memory store
// Dynamic Client Registration would write to). A person signs in on a plain form that checks
// the password; consent is given without asking (a first-party app); "Cancel" ends the
// sign-in with `access_denied`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const config = JSON.parse(process.argv[2] ?? '{}');
if (!config.issuer || !Array.isArray(config.users)) {
  console.error('usage: node provider.mjs \'{"issuer": URL, "users": [...]}\'');
  process.exit(2);
}
const users = new Map(config.users.map((user) => [user.id, user]));

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

const adapter = createMemoryAdapter();

const provider = new Provider(config.issuer, {
  adapter,
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  // `groups` comes with `profile`, as authentik sends it (Keycloak: a mapper on a default
  // scope, the same to the app).
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups'],
  },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users.get(id);
    if (!user) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: user.email,
          email_verified: true,
          name: user.name,
          preferred_username: user.preferred_username,
          groups: user.groups,
        };
      },
    };
  },
});

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`);
}

function loginForm(res, uid, error) {
  page(res, error ? 401 : 200, 'Test IdP sign-in', `
    ${error ? `<p id="error">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}/login">
      <label>Username <input id="login" name="login" autocomplete="username"></label>
      <label>Password <input id="password" name="password" type="password"></label>
      <button id="sign-in" type="submit">Sign in</button>
    </form>
    <form method="post" action="/interaction/${escape(uid)}/abort">
      <button id="cancel" type="submit">Cancel</button>
    </form>`);
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function jsonBody(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/// Consent for everything the client asked, as a first-party app gets it.
async function grantConsent(req, res, details) {
  const { prompt, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) {
    grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  }
  if (prompt.details.missingOIDCClaims) {
    grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  }
  const result = { consent: { grantId: await grant.save() } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !action) {
    if (details.prompt.name === 'login') {
      return loginForm(res, uid);
    }
    if (details.prompt.name === 'consent') {
      return grantConsent(req, res, details);
    }
    return page(res, 501, 'Not implemented', `<p>prompt ${escape(details.prompt.name)}</p>`);
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await formBody(req);
    const user = users.get(form.get('login') ?? '');
    if (!user || user.password !== form.get('password')) {
      return loginForm(res, uid, 'Unknown user or wrong password.');
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.id } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  return page(res, 405, 'Method not allowed', '');
}

const callback = provider.callback();

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://provider');
  const steps = url.pathname.split('/').filter(Boolean);
  try {
    if (steps[0] === 'interaction' && steps.length >= 2 && steps.length <= 3) {
      return await interaction(req, res, steps[1], steps[2]);
    }
    if (req.method === 'POST' && url.pathname === '/test/clients') {
      const metadata = await jsonBody(req);
      await adapter('Client').upsert(metadata.client_id, metadata);
      res.writeHead(204);
      return res.end();
    }
  } catch (error) {
    console.error(error);
    return page(res, 400, 'Sign-in failed', `<p id="error">${escape(error.message)}</p>`);
  }
  return callback(req, res);
});

server.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
