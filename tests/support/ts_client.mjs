// A client built on the official TypeScript MCP SDK (the one most real clients use: Claude Desktop,
// Cursor, VS Code, the Inspector), run against a hub by tests/test_ts_sdk_client.py.
//
//   node ts_client.mjs <hub base URL> <http|sse>
//
// It authorizes with the SDK's own OAuth client machinery (discovery, dynamic registration, PKCE; the
// hub approves at once: oauthConsent "auto"), then does what a client does: lists, calls, answers
// sampling and roots, follows progress, cancels a call through an AbortSignal, and, over Streamable
// HTTP, ends its session. It prints one JSON object: what it saw at each step (an error as its
// message), and exits 0 unless the script itself broke. The SDK is the one in tests/npm/node_modules
// (a dependency of server-everything, its version fixed by tests/npm/package-lock.json).

const SDK = new URL('../npm/node_modules/@modelcontextprotocol/sdk/dist/esm/', import.meta.url);
const { Client } = await import(new URL('client/index.js', SDK));
const { StreamableHTTPClientTransport } = await import(new URL('client/streamableHttp.js', SDK));
const { SSEClientTransport } = await import(new URL('client/sse.js', SDK));
const { UnauthorizedError } = await import(new URL('client/auth.js', SDK));
const types = await import(new URL('types.js', SDK));

const [base, entry] = process.argv.slice(2);
const out = { entry };
const REDIRECT = 'http://127.0.0.1:9/callback'; // never reached: the "browser" below reads the redirect

async function record(name, fn) {
  try {
    out[name] = await fn();
  } catch (error) {
    out[name] = { error: String(error && error.message ? error.message : error) };
  }
}

const provider = {
  tokensSaved: 0,
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return { client_name: 'ts-sdk test', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none' };
  },
  clientInformation() { return this.info; },
  saveClientInformation(info) { this.info = info; },
  tokens() { return this.saved; },
  saveTokens(tokens) { this.saved = tokens; this.tokensSaved += 1; },
  redirectToAuthorization(url) { this.authorizeUrl = url; },
  saveCodeVerifier(verifier) { this.verifier = verifier; },
  codeVerifier() { return this.verifier; },
};

function transport() {
  return entry === 'sse'
    ? new SSEClientTransport(new URL(`${base}/sse`), { authProvider: provider })
    : new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { authProvider: provider });
}

function client() {
  const c = new Client({ name: 'ts-sdk-test', version: '1.0.0' }, { capabilities: { sampling: {}, roots: {} } });
  c.setRequestHandler(types.CreateMessageRequestSchema, async () => ({
    model: 'stub', role: 'assistant', content: { type: 'text', text: 'sampled by the ts client' },
  }));
  c.setRequestHandler(types.ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///ts-root', name: 'ts' }] }));
  return c;
}

const text = (result) => result.content.map((item) => item.text ?? '').join('');

// 1. unauthorized: the SDK discovers the hub's metadata, registers and sends the "browser" to authorize
let first = transport();
await record('unauthorized', async () => {
  try {
    await client().connect(first);
    return 'connected without a token';
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    const resource = provider.authorizeUrl.searchParams.get('resource');
    const answer = await fetch(provider.authorizeUrl, { redirect: 'manual' });
    const code = new URL(answer.headers.get('location')).searchParams.get('code');
    await first.finishAuth(code);
    return { resource, tokens: provider.tokensSaved };
  }
});

// 2. authorized: a client's everyday work
const t = transport();
const c = client();
await record('connect', async () => {
  await c.connect(t);
  return { server: c.getServerVersion().name, protocolVersion: t.protocolVersion ?? null };
});
await record('tools', async () => (await c.listTools()).tools.map((tool) => tool.name).sort());
await record('echo', async () => text(await c.callTool({ name: 'fx__echo', arguments: { message: 'hello' } })));
await record('progress', async () => {
  let seen = 0;
  await c.callTool({ name: 'fx__progress', arguments: { steps: 3 } }, undefined, { onprogress: () => { seen += 1; } });
  return seen;
});
await record('sampling', async () => text(await c.callTool({ name: 'fx__sample', arguments: { prompt: 'hi' } })));
await record('roots', async () => text(await c.callTool({ name: 'fx__roots', arguments: {} })));
await record('cancel', async () => {
  // a long call, given up once it is surely running (its first progress came)
  const abort = new AbortController();
  const args = { steps: 600, pause: 0.1 };
  const options = { signal: abort.signal, onprogress: () => abort.abort('the user gave up') };
  try {
    await c.callTool({ name: 'fx__progress', arguments: args }, undefined, options);
    return 'answered';
  } catch (error) {
    return abort.signal.aborted ? 'aborted' : String(error.message);
  }
});
await record('afterCancel', async () => text(await c.callTool({ name: 'fx__echo', arguments: { message: 'again' } })));
if (entry !== 'sse') {
  await record('terminate', async () => {
    await t.terminateSession();
    return t.sessionId ?? null;
  });
}
await c.close();
process.stdout.write(JSON.stringify(out) + '\n');
