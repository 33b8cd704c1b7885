// The Vercel AI SDK's MCP client (@ai-sdk/mcp), run against a hub by tests/test_ai_sdk_client.py. Its
// Streamable HTTP and SSE transports and its OAuth client are its own code, not the TypeScript SDK's.
//
//   node ai_sdk_client.mjs <hub base URL> <http|sse>
//
// It authorizes (discovery, dynamic registration, PKCE; the hub approves at once: oauthConsent "auto"),
// then does what an AI SDK app does: turns the hub's tools into AI SDK tools and runs them (text,
// structured content, an image, a tool error, an elicitation it answers), reads resources and prompts,
// and refreshes its token when the hub refuses the old one. It prints one JSON object: what it saw at
// each step (an error as its message) and the errors the client reported on its own (onUncaughtError).

const MCP = new URL('../npm/node_modules/@ai-sdk/mcp/dist/index.mjs', import.meta.url);
const { createMCPClient, auth, ElicitationRequestSchema } = await import(MCP);

const [base, type] = process.argv.slice(2);
const url = `${base}/${type === 'sse' ? 'sse' : 'mcp'}`;
const redirect = 'http://127.0.0.1:9/callback'; // never reached: the code is read off the redirect
const store = {};
const seen = { uncaught: [] };
let code;

const provider = {
  get redirectUrl() { return redirect; },
  get clientMetadata() {
    return { client_name: 'ai-sdk test', redirect_uris: [redirect], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  clientInformation: () => store.client,
  saveClientInformation: (info) => { store.client = info; },
  tokens: () => store.tokens,
  saveTokens: (tokens) => { store.tokens = tokens; },
  saveCodeVerifier: (verifier) => { store.verifier = verifier; },
  codeVerifier: () => store.verifier,
  async redirectToAuthorization(authorization) {
    seen.audience = authorization.searchParams.get('resource');
    const answer = await fetch(authorization, { redirect: 'manual' }); // the browser's part
    code = new URL(answer.headers.get('location')).searchParams.get('code');
  },
};

const connect = () => createMCPClient({
  transport: { type, url, authProvider: provider },
  capabilities: { elicitation: {} },
  onUncaughtError: (error) => seen.uncaught.push(String(error)),
});

const step = async (name, fn) => {
  try { seen[name] = await fn(); } catch (error) { seen[name] = `error: ${error?.message ?? error}`; }
};

let client;
try {
  client = await connect();
  seen.unauthorized = false;
} catch (error) {
  seen.unauthorized = error?.name ?? String(error);
  seen.authorized = await auth(provider, { serverUrl: url, authorizationCode: code });
  client = await connect();
}
seen.server = client.serverInfo?.name;
client.onElicitationRequest(ElicitationRequestSchema, async (request) => {
  seen.elicitationAsked = request.params.message;
  return { action: 'accept', content: { color: 'teal' } };
});

const tools = await client.tools();
seen.tools = Object.keys(tools);
const run = (name, args) => tools[name].execute(args, { toolCallId: name, messages: [] });
await step('echo', async () => (await run('every__echo', { message: 'hello' })).content[0].text);
await step('structured', async () => (await run('every__get-structured-content', { location: 'Chicago' })).structuredContent);
await step('image', async () => (await run('every__get-tiny-image', {})).content.map((c) => `${c.type}:${c.mimeType ?? ''}`));
await step('toolError', async () => { const r = await run('every__echo', {}); return { isError: r.isError, text: r.content[0].text }; });
await step('elicitation', async () => (await run('every__trigger-elicitation-request', {})).content.map((c) => c.text).join('\n'));
await step('resource', async () => {
  const first = (await client.listResources()).resources[0];
  const read = await client.readResource({ uri: first.uri });
  return { uri: read.contents[0].uri, text: (read.contents[0].text ?? '').length > 0 };
});
await step('templates', async () => (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate));
await step('prompt', async () => (await client.experimental_getPrompt({ name: 'every__args-prompt', arguments: { city: 'Oslo' } })).messages[0].content.text);
await step('missingResource', async () => client.readResource({ uri: 'every+demo://nowhere' }));
await client.close();

// the access token is refused (say it expired): the client refreshes it and goes on
const refreshToken = store.tokens.refresh_token;
store.tokens = { ...store.tokens, access_token: 'expired' };
await step('afterRefresh', async () => {
  const again = await connect();
  const listed = (await again.listTools()).tools.length;
  await again.close();
  return { listed, refreshed: store.tokens.access_token !== 'expired', sameRefresh: store.tokens.refresh_token === refreshToken };
});
console.log(JSON.stringify(seen));
